"""fractal_ifs: the FractalDB-style IFS family (generators/fractal.py).

Accepted systems are contractions (every map, every jitter) with a filling rate inside the band,
recomputed here from a naive per-point chaos game and a naive rasterisation; the batched chaos
game gives the points of a per-point loop; the map choice follows |det A|; painting matches a
per-hit stamping loop; categories and instances are i // n and i % n.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from noisevision import create_generator
from noisevision.errors import ConfigError
from noisevision.generators import fractal
from noisevision.generators.fractal import (
    FractalConfig,
    chaos_game,
    choose_maps,
    draw_candidates,
    map_thresholds,
    paint,
    pixel_index,
    search_systems,
    worst_contraction,
)

SEED = 3
CHEAP = FractalConfig(resolution=32, search_resolution=64, search_points=1600, chains=64)


@pytest.fixture(scope="module")
def searched():
    cats = torch.tensor([0, 1, 2, 7, 41, 1000, 123456])
    return cats, search_systems(CHEAP, cats, SEED)


def naive_walk(params: np.ndarray, choice: np.ndarray, burn_in: int) -> np.ndarray:
    """One system, one point at a time: params (M, 6), choice (T, K) -> points (T - b, K, 2)."""
    a, b, c, d, e, f = (float(v) for v in params[0])
    det = (1 - a) * (1 - d) - b * c
    start = (((1 - d) * e + b * f) / det, (c * e + (1 - a) * f) / det)
    T, K = choice.shape
    out = np.zeros((T - burn_in, K, 2))
    for k in range(K):
        x, y = start
        for t in range(T):
            a, b, c, d, e, f = (float(v) for v in params[choice[t, k]])
            x, y = a * x + b * y + e, c * x + d * y + f
            if t >= burn_in:
                out[t - burn_in, k] = (x, y)
    return out


def naive_filling_rate(points: np.ndarray, size: int) -> float:
    """FractalDB's rule on a list of points: scale each axis to [pad, size - pad], floor,
    count the distinct pixels."""
    pad = max(1.0, round(size * 6 / 512))
    pix = set()
    lo, hi = points.min(axis=0), points.max(axis=0)
    for x, y in points:
        qx = math.floor((x - lo[0]) * ((size - 2 * pad) / (hi[0] - lo[0])) + pad)
        qy = math.floor((y - lo[1]) * ((size - 2 * pad) / (hi[1] - lo[1])) + pad)
        pix.add((qx, qy))
    return len(pix) / size**2


def naive_pixel(v: np.float32, values: np.ndarray, size: int, pad: int) -> int:
    """floor((v - min) * (size - 2 pad) / (max - min) + pad), each step rounded to float32."""
    lo, hi = values.min(), values.max()
    scale = np.float32(size - 2.0 * pad) / np.float32(hi - lo)
    return math.floor(np.float32(np.float32(v - lo) * scale) + np.float32(pad))


def test_every_map_of_every_accepted_system_is_a_contraction(searched):
    cats, (params, n_maps, attempt) = searched
    assert (attempt >= 0).all()
    assert ((n_maps >= CHEAP.maps_min) & (n_maps <= CHEAP.maps_max)).all()
    for p, n in zip(params, n_maps.tolist(), strict=True):
        worst = worst_contraction(p[:n].double(), CHEAP.jitter_weights)  # every jitter variant
        assert (worst < 1.0).all(), worst
        assert (p[n:] == 0).all()  # unused map slots
        # sigma_max by SVD, against the closed form
        for m in p[:n]:
            A = m[:4].double().view(2, 2)
            assert float(torch.linalg.svdvals(A)[0]) < 1.0


def test_filling_rate_of_accepted_systems_lies_in_the_band(searched):
    """The accepted attempt's points, walked one at a time and rasterised naively, fill the
    canvas within [fill_min, fill_max]; every earlier attempt of the category was rejected."""
    cats, (params, n_maps, attempt) = searched
    size = CHEAP.search_resolution
    for c, p, a in zip(cats.tolist()[:4], params[:4], attempt.tolist()[:4], strict=True):
        cand = draw_candidates(CHEAP, torch.tensor([c]), SEED, a)
        assert torch.equal(cand.params[0], p)
        pts = naive_walk(cand.params[0].double().numpy(), cand.choice[:, 0].numpy(),
                         CHEAP.burn_in).reshape(-1, 2)
        rate = naive_filling_rate(pts, size)
        assert CHEAP.fill_min <= rate <= CHEAP.fill_max, (c, rate)
        for earlier in range(a):
            e = draw_candidates(CHEAP, torch.tensor([c]), SEED, earlier)
            if bool(e.ok[0]):
                pts = naive_walk(e.params[0].double().numpy(), e.choice[:, 0].numpy(),
                                 CHEAP.burn_in).reshape(-1, 2)
                r = naive_filling_rate(pts, size)
                assert not CHEAP.fill_min <= r <= CHEAP.fill_max, (c, earlier, r)


def test_chaos_game_gives_the_points_of_a_per_point_loop():
    g = torch.Generator().manual_seed(0)  # test data only
    B, M, T, K, burn = 3, 5, 12, 7, 4
    params = (torch.rand(B, M, 6, generator=g) - 0.5) * 1.2
    choice = torch.randint(0, M, (T, B, K), generator=g)
    xs, ys = chaos_game(params, choice, burn)
    assert xs.shape == (B, T - burn, K)
    for b in range(B):
        want = naive_walk(params[b].double().numpy(), choice[:, b].numpy(), burn)
        got = torch.stack([xs[b], ys[b]], -1).double().numpy()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_the_contraction_test_agrees_with_the_singular_values():
    g = torch.Generator().manual_seed(5)
    params = torch.rand(20000, 6, generator=g, dtype=torch.float64) * 2 - 1
    for weights in ((0.8, 0.9, 1.1, 1.2), (), (1.3,)):
        want = fractal.worst_contraction(params, weights) < 1.0
        assert torch.equal(fractal.contractive(params, weights), want)


def test_map_choice_follows_the_determinants():
    """Over all 65,536 16-bit draws, map j is chosen exactly threshold_j+1 - threshold_j
    times, |det A_j| / sum |det A| of them within 1/65536; maps past n_maps never."""
    params = torch.tensor([[[0.5, 0.1, 0.0, 0.4, 0, 0], [0.2, 0.0, 0.1, 0.3, 0, 0],
                            [-0.6, 0.2, 0.3, 0.5, 0, 0], [0.9, 0.0, 0.0, 0.9, 0, 0]]])
    n_maps = torch.tensor([3])
    thr = map_thresholds(params, n_maps)
    u = torch.arange(65536)[None, :]
    counts = torch.bincount(choose_maps(u, thr)[0], minlength=4).double() / 65536
    det = (params[0, :3, 0] * params[0, :3, 3] - params[0, :3, 1] * params[0, :3, 2]).abs()
    want = det.double() / det.sum()
    assert counts[3] == 0
    assert torch.allclose(counts[:3], want, atol=1.0 / 65536)


def test_pixel_index_and_painting_match_naive_loops():
    g = torch.Generator().manual_seed(1)
    size, B = 12, 2
    xs = torch.rand(B, 4, 3, generator=g) * 3 - 1
    ys = torch.rand(B, 4, 3, generator=g) * 5
    index = pixel_index(xs, ys, size)
    w = size + 2
    levels = torch.randint(0, 256, (B, 2, 9), generator=g, dtype=torch.int64).to(torch.uint8)
    levels[:, :, 0] = 0
    hits = torch.zeros(B * w * w, dtype=torch.uint8)
    hits[index.reshape(-1)] = 1
    got = paint(hits.view(B, -1), levels, size).view(B, 2, w, w)
    pad = max(1, round(size * 6 / 512))
    for b in range(B):
        want = np.zeros((2, w, w), dtype=np.int64)
        for x, y in zip(xs[b].reshape(-1).numpy(), ys[b].reshape(-1).numpy(), strict=True):
            qx, qy = (naive_pixel(v, vals[b].reshape(-1).numpy(), size, pad)
                      for v, vals in ((x, xs), (y, ys)))
            assert 0 <= qx < size and 0 <= qy < size
            for k in range(9):  # the stamp of one hit: cell k paints q + (k // 3 - 1, k % 3 - 1)
                yy, xx = qy + 1 + k // 3 - 1, qx + 1 + k % 3 - 1
                want[:, yy, xx] = np.maximum(want[:, yy, xx], levels[b, :, k].numpy())
        np.testing.assert_array_equal(got[b].numpy(), want)


def test_categories_instances_and_shared_systems():
    gen = create_generator("fractal_ifs", resolution=32, instances_per_category=10,
                           search_resolution=64, search_points=1600)
    assert gen.category(25) == 2 and gen.instance(25) == 5
    assert gen.category(torch.tensor([0, 9, 10, 99])).tolist() == [0, 0, 1, 9]
    idx = torch.tensor([20, 21, 22, 23, 24, 29])
    params, thr, flip = gen.instance_systems(idx, SEED)
    assert flip.tolist() == [0, 1, 2, 3, 0, 1]  # none, horizontal, vertical, both
    base = gen.systems(torch.tensor([2]), SEED)[0][0]
    assert torch.equal(params[0], base)
    signs = torch.tensor([1.0, -1, -1, 1, -1, 1])  # horizontal mirror: b, c, e change sign
    assert torch.equal(params[1], base * signs)
    assert torch.equal(params[3], base * torch.tensor([1.0, 1, 1, 1, -1, -1]))  # both
    assert torch.equal(params[4][:, 0], base[:, 0] * 0.8)  # variant 1: a times 0.8
    assert torch.equal(params[4][:, 1:], base[:, 1:])
    assert (thr == thr[0]).all()  # probabilities of the category's system


def test_a_mirrored_system_walks_the_mirrored_points_exactly():
    g = torch.Generator().manual_seed(2)
    params = (torch.rand(1, 4, 6, generator=g) - 0.5) * 1.2
    choice = torch.randint(0, 4, (20, 1, 9), generator=g)
    xs, ys = chaos_game(params, choice, 3)
    flip = torch.tensor([1, 2, 3])
    mx, my = chaos_game(params * fractal.mirror(flip)[:, None, :], choice.expand(-1, 3, -1), 3)
    assert torch.equal(mx[0], -xs[0]) and torch.equal(my[0], ys[0])
    assert torch.equal(mx[1], xs[0]) and torch.equal(my[1], -ys[0])
    assert torch.equal(mx[2], -xs[0]) and torch.equal(my[2], -ys[0])


def test_the_search_is_the_same_for_a_category_alone_or_with_others(searched):
    cats, (params, n_maps, attempt) = searched
    alone = search_systems(CHEAP, cats[3:4], SEED)
    assert torch.equal(alone[0][0], params[3]) and int(alone[2][0]) == int(attempt[3])
    other = search_systems(CHEAP, cats[3:4], SEED + 1)
    assert not torch.equal(other[0][0], params[3])


def test_an_impossible_band_is_a_config_error(monkeypatch):
    monkeypatch.setattr(fractal, "MAX_ATTEMPTS", 32)
    cfg = FractalConfig(resolution=32, search_resolution=32, search_points=200,
                        fill_min=0.98, fill_max=1.0)
    with pytest.raises(ConfigError, match="fill_min..fill_max"):
        search_systems(cfg, torch.tensor([0]), 0)


@pytest.mark.parametrize("opts, field", [
    ({"fill_min": 0.6, "fill_max": 0.5}, "fill_min"),
    ({"maps_min": 5, "maps_max": 3}, "maps_min"),
    ({"maps_max": 40}, "maps_max"),
    ({"render": "splat"}, "render"),
    ({"supersample": 0}, "supersample"),
    ({"jitter_weights": [0.8, -1.0]}, "jitter_weights"),
    ({"point_density": 50.0, "supersample": 8}, "point_density"),
])
def test_bad_options_name_the_field(opts, field):
    with pytest.raises(ConfigError, match=field):
        create_generator("fractal_ifs", **opts)


@pytest.mark.parametrize("mode", [{"render": "point"}, {"render": "point", "color": True},
                                  {"color": True}, {}])
def test_every_rendering_mode_is_batch_invariant_and_in_range(mode):
    gen = create_generator("fractal_ifs", resolution=32, search_resolution=64,
                           search_points=1600, **mode)
    x = gen.generate([0, 1, 2, 5000], seed=SEED, batch_size=4)
    y = torch.cat([gen.generate([i], seed=SEED) for i in (0, 1, 2, 5000)])
    assert torch.equal(x, y)
    assert float(x.min()) == 0.0 and 0.0 < float(x.max()) <= 1.0
    grey = torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    assert grey == (not mode.get("color", False))
    if mode.get("render") == "point" and not mode.get("color"):  # coverage of 2 x 2 boxes
        assert set((x * 4).round().unique().tolist()) <= {0.0, 1.0, 2.0, 3.0, 4.0}
