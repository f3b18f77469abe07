"""FractalDB-style fractals: 2-D iterated function systems (Kataoka et al., ACCV 2020).

The paper compares its noise against FractalDB-1k (Table 1: 23.86% ImageNet-1k); this family
renders such data in the same contract as every other family. A category is an IFS of N affine
maps w_j(x, y) = (a x + b y + e, c x + d y + f), N uniform in [maps_min, maps_max] (FractalDB: 2 to
8), every parameter uniform in [-1, 1], map j chosen with probability |det A_j| / sum |det A|
(FractalDB's rule). The category search keeps a system when its point rendering fills a fraction
of the canvas inside [fill_min, fill_max] (FractalDB's filling rate: rendered pixels / all pixels
with 100,000 points on a 512 px canvas, threshold 0.2; FractalDB has no upper bound, 0.5 here only
turns away solid blobs, which that canvas hardly produces). Unlike FractalDB, every map must be a
contraction (largest singular value < 1, also under every parameter jitter below), so that every
instance has an attractor: each map slot takes the first contractive one of `MAP_TRIES` draws.

Image i belongs to category c = i // instances_per_category (`category(i)`), instance
j = i % instances_per_category. As FractalDB's instances, j picks one of FractalDB's parameter
jitters (the system itself, or one of a..f multiplied by one of `jitter_weights`, in every map; 25
variants with the default weights) and, with `flips`, one of four flips (none, horizontal,
vertical, both), made by mirroring the IFS (exact in floating point) rather than the picture; the
chaos game's draws and the patch pattern are image i's own.

Rendering is the chaos game, batched: `chains` parallel walks per image, all started at the
fixed point of map 0 (a point of the attractor, so every recorded point lies on it), each taking
`burn_in` unrecorded steps and then ceil(points / chains) recorded ones; one Python step moves
every walk of every image. Points are scaled to the canvas box with a 6/512 margin on each axis
independently (as FractalDB) on a canvas `supersample` times the resolution holding
`point_density` points per canvas pixel (FractalDB: 100,000 on 512 x 512). "patch" rendering
paints a random 3 x 3 pattern (grey levels, or colours with `color`) around every hit canvas
pixel, FractalDB's patch rendering; "point" paints the hit pixel white (or, with `color`, in
the colour of the map that moved the point there). Where paint overlaps, the brighter grey (the
colour of higher priority) shows, an order-free rule where FractalDB paints in turn; the canvas
is then box-filtered to the resolution.

Where this differs from FractalDB: counter-based draws (noisevision.rng), not NumPy's global
RNG, so the categories are not the released ones; many walks instead of one, started on the
attractor (FractalDB starts one walk at the origin); contraction is required; overlapping
paint keeps the brightest, not the last.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from noisevision.errors import ConfigError, check
from noisevision.generators.base import Generator, check_resolution, register_generator
from noisevision.rng import ImageRandom, as_index_tensor

RENDER_MODES = ("patch", "point")
MAP_TRIES = 32  # draws per map slot; a slot with no contractive draw rejects the attempt
#   (a uniform map with the default jitters is contractive with probability 0.24: a slot fails
#   with probability 0.76**32 = 1.5e-4)
MAX_ATTEMPTS = 4096  # candidate systems per category before the search gives up
SEARCH_BLOCKS = {"cpu": (4, 12), "cuda": (16, 16)}  # candidates rendered per category in the
#   first round, then in each later one (speed only: about 1 in 4 passes at FractalDB's settings;
#   a GPU's round costs its steps' launches more than its size)
SEARCH_BATCH = 64  # candidate systems rendered at once by the search (memory only)
PARAMS = 6  # a, b, c, d, e, f
PAD_FRACTION = 6.0 / 512.0  # FractalDB's 6 px margin on its 512 px canvas
_CACHE_SIZE = 100_000  # category systems kept in memory (each 0.3 KB)


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class FractalConfig:
    resolution: int = 128  # px, square images (FractalDB renders 512 px, trains at 224)
    instances_per_category: int = 1000  # images per IFS category (FractalDB-1k: 1,000)
    maps_min: int = 2  # fewest affine maps of a system (FractalDB: 2)
    maps_max: int = 8  # most affine maps of a system (FractalDB paper: 8)
    fill_min: float = 0.2  # lowest filling rate kept by the search (FractalDB: 0.2)
    fill_max: float = 0.5  # highest filling rate kept (FractalDB: none; see the module doc)
    search_resolution: int = 512  # px, canvas of the filling rate (FractalDB: 512)
    search_points: int = 100_000  # points of the filling-rate rendering (FractalDB: 100,000)
    render: str = "patch"  # "patch" (FractalDB's default patch_gray) or "point"
    color: bool = False  # colour patches (patch_color) or map colours (point_color)
    supersample: int = 2  # canvas = supersample * resolution, box-filtered down (4 at 128 px
    #   is FractalDB's own 512 px canvas; 2 keeps 128 px above 100 img/s on 2 CPU cores)
    point_density: float = 100_000 / 512**2  # chaos-game points per canvas pixel (FractalDB:
    #   100,000 points on 512 x 512)
    chains: int = 512  # parallel chaos-game walks per image (changes the images, not the law)
    burn_in: int = 8  # unrecorded steps of each walk (decorrelates the walks' common start)
    jitter_weights: tuple[float, ...] = (0.8, 0.9, 1.1, 1.2)  # FractalDB's parameter weights
    #   (weights_0.1.csv): instance variants multiply one of a..f of every map by one of these
    flips: bool = True  # instances also flip: none, horizontal, vertical, both

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        for name, low, high in (("instances_per_category", 1, 2**30), ("maps_min", 2, 16),
                                ("maps_max", 2, 16), ("search_resolution", 16, 4000),
                                ("search_points", 100, 10_000_000), ("supersample", 1, 8),
                                ("chains", 1, 65_536), ("burn_in", 0, 1000)):
            value = getattr(self, name)
            check(_is_int(value) and low <= value <= high,
                  f"{name} must be an integer in [{low}, {high}], got {value!r}")
        check(self.maps_min <= self.maps_max,
              f"maps_min must be <= maps_max, got {self.maps_min} > {self.maps_max}")
        for name in ("fill_min", "fill_max"):
            value = getattr(self, name)
            check(_is_number(value) and 0.0 <= value <= 1.0,
                  f"{name} must be a number in [0, 1], got {value!r}")
        check(self.fill_min < self.fill_max,
              f"fill_min must be < fill_max, got {self.fill_min} >= {self.fill_max}")
        check(self.render in RENDER_MODES,
              f"render must be one of {', '.join(RENDER_MODES)}, got {self.render!r}")
        check(isinstance(self.color, bool), f"color must be true or false, got {self.color!r}")
        check(isinstance(self.flips, bool), f"flips must be true or false, got {self.flips!r}")
        check(_is_number(self.point_density) and 0.001 <= self.point_density <= 100.0,
              f"point_density must be a number in [0.001, 100], got {self.point_density!r}")
        if isinstance(self.jitter_weights, str):  # "0.8,1.2" from a command line
            object.__setattr__(self, "jitter_weights", tuple(
                float(w) for w in self.jitter_weights.split(",") if w.strip()))
        check(isinstance(self.jitter_weights, (tuple, list)) and len(self.jitter_weights) <= 16
              and all(_is_number(w) and 0.0 < w <= 2.0 for w in self.jitter_weights),
              f"jitter_weights must be a list of at most 16 numbers in (0, 2], "
              f"got {self.jitter_weights!r}")
        object.__setattr__(self, "jitter_weights", tuple(float(w) for w in self.jitter_weights))
        check(self.canvas <= 4000,
              f"resolution * supersample must be at most 4000, got {self.canvas}")
        check(self.points <= 4_000_000,
              f"point_density {self.point_density} gives {self.points} points at "
              f"{self.canvas} px (at most 4000000)")

    @property
    def canvas(self) -> int:
        return self.resolution * self.supersample

    @property
    def points(self) -> int:
        """Chaos-game points per image (before rounding up to whole steps of every walk)."""
        return max(1, round(self.point_density * self.canvas**2))

    @property
    def variants(self) -> int:
        """Parameter variants per category: the system itself and each jitter of a..f."""
        return 1 + PARAMS * len(self.jitter_weights)


# ---- the IFS: contraction, probabilities, the chaos game -------------------------------------


def largest_singular_value(a, b, c, d) -> torch.Tensor:
    """sigma_max of [[a, b], [c, d]] (closed form), elementwise over tensors."""
    s = a * a + b * b + c * c + d * d
    det = a * d - b * c
    return torch.sqrt(0.5 * (s + torch.sqrt((s * s - 4.0 * det * det).clamp(min=0.0))))


def jitter_table(weights: tuple[float, ...], device: torch.device | None = None) -> torch.Tensor:
    """(V, 6) multipliers of a..f: row 0 the system itself, row 1 + 6 k + w parameter k times
    weights[w] (FractalDB's weights file: one parameter of every map re-weighted)."""
    rows = torch.ones(1 + PARAMS * len(weights), PARAMS, dtype=torch.float64)
    for k in range(PARAMS):
        for w, value in enumerate(weights):
            rows[1 + k * len(weights) + w, k] = value
    return rows.to(device=device, dtype=torch.float32)


def worst_contraction(params: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """Largest singular value over every jitter variant: params (..., 6) -> (...)."""
    table = jitter_table(weights, params.device)  # (V, 6)
    jittered = params[..., None, :] * table  # (..., V, 6)
    a, b, c, d = jittered[..., :4].unbind(-1)
    return largest_singular_value(a, b, c, d).amax(-1)


def contractive(params: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """Whether every jitter variant of each map is a contraction: params (..., 6) -> (...) bool.

    sigma_max < 1 for [[a, b], [c, d]] iff S = a^2 + b^2 + c^2 + d^2 < 2 and 1 - S + det^2 > 0
    (both singular values below 1: (1 - s1^2)(1 - s2^2) > 0 with s1^2 + s2^2 = S < 2). The
    largest singular value is convex in each entry, so over a jitter of one entry it peaks at
    the smallest or largest weight: those two (and the unjittered map) are checked.
    """
    ends = sorted({1.0, min(weights, default=1.0), max(weights, default=1.0)})
    ok = torch.ones(params.shape[:-1], dtype=torch.bool, device=params.device)
    for k in range(4):
        for w in ends:
            if w == 1.0 and k > 0:
                continue
            m = params[..., :4] * torch.tensor([w if j == k else 1.0 for j in range(4)],
                                               device=params.device, dtype=params.dtype)
            a, b, c, d = m.unbind(-1)
            s = a * a + b * b + c * c + d * d
            det = a * d - b * c
            ok &= (s < 2.0) & (1.0 - s + det * det > 0.0)
    return ok


def map_thresholds(params: torch.Tensor, n_maps: torch.Tensor) -> torch.Tensor:
    """16-bit thresholds of the map choice: params (B, M, 6), n_maps (B,) -> (B, M - 1) int64.

    Map j has probability |det A_j| / sum |det A| (FractalDB); a 16-bit uniform u picks map
    #{j : u >= threshold_j}. Maps beyond n_maps have probability 0 (threshold 65536).
    """
    p = params.double()
    det = (p[..., 0] * p[..., 3] - p[..., 1] * p[..., 2]).abs()  # (B, M)
    live = torch.arange(p.shape[1], device=p.device)[None, :] < n_maps[:, None]
    det = torch.where(live, det, torch.zeros_like(det))
    cum = det.cumsum(1) / det.sum(1, keepdim=True).clamp(min=1e-300)
    thr = torch.round(cum[:, :-1] * 65536.0).long()
    return torch.where(live[:, 1:], thr, torch.full_like(thr, 65536))


def fixed_point(params: torch.Tensor) -> torch.Tensor:
    """The fixed point (I - A)^-1 b of each map: params (..., 6) -> (..., 2)."""
    a, b, c, d, e, f = params.unbind(-1)
    det = (1.0 - a) * (1.0 - d) - b * c
    return torch.stack([((1.0 - d) * e + b * f) / det, (c * e + (1.0 - a) * f) / det], -1)


def uniform16_words(rnd: ImageRandom, n: int) -> torch.Tensor:
    """(B, n) int64 16-bit uniforms: value j < m is the high half of word j, m + j its low half
    (m = ceil(n / 2)); the same values on every device."""
    m = (n + 1) // 2
    if rnd.device.type == "cpu":
        words = rnd.words(m)  # (B, m) uint32
        halves = np.concatenate([words >> np.uint32(16), words & np.uint32(0xFFFF)], axis=1)
        return torch.from_numpy(halves[:, :n].astype(np.int64))
    words = rnd.bits(m)
    return torch.cat([words >> 16, words & 0xFFFF], dim=1)[:, :n]


def choose_maps(u16: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Map indices #{j : u >= threshold_j}: u16 (B, n), thresholds (B, M - 1) -> (B, n)."""
    return torch.searchsorted(thresholds.contiguous(), u16.contiguous(), right=True)


def chaos_game(params: torch.Tensor, choice: torch.Tensor,
               burn_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The chaos game of B systems, K walks each, from the fixed point of map 0.

    params (B, M, 6); choice (T, B, K) map indices of every step. Walk k of system b moves from
    p to w_j(p) = (a x + b y + e, c x + d y + f), j = choice[t, b, k]; the positions after steps
    burn_in..T-1 come back as xs, ys (B, T - burn_in, K). Each step is a few elementwise
    operations on all walks of all systems (no fused multiply-add: the same rounding on every
    device and in every batch).
    """
    T, B, K = choice.shape
    M = params.shape[1]
    start = fixed_point(params[:, 0])  # (B, 2)
    x = start[:, 0:1].expand(B, K).contiguous()  # (B, K)
    y = start[:, 1:2].expand(B, K).contiguous()
    flat = choice + (torch.arange(B, device=choice.device) * M)[None, :, None]  # (T, B, K)
    coef = params.permute(2, 0, 1).reshape(PARAMS, B * M)[:, flat]  # (6, T, B, K)
    xs = torch.empty(B, T - burn_in, K, dtype=params.dtype, device=params.device)
    ys = torch.empty_like(xs)
    for t in range(T):
        a, b, c, d, e, f = coef[:, t]
        xn = a * x
        xn += b * y
        xn += e
        yn = c * x
        yn += d * y
        yn += f
        x, y = xn, yn
        if t >= burn_in:
            xs[:, t - burn_in] = x
            ys[:, t - burn_in] = y
    return xs, ys


def pixel_index(xs: torch.Tensor, ys: torch.Tensor, size: int) -> torch.Tensor:
    """Flat canvas index of every point: xs, ys (B, ...) -> (B, N) int64 into the
    (B, size + 2, size + 2) canvas of `canvas_hits`.

    Each image's points are scaled to its box, each axis on its own (FractalDB), into
    [pad, size - pad] with pad = size * 6 / 512 (at least 1); pixel = floor of the scaled
    coordinate (never outside the canvas: the scaled values lie in [pad, size - pad] up to
    rounding); canvas pixel q sits at q + 1 (a 1 px border where patches may spill). The
    index within an image is formed in float32, exact below 2**24 (canvases up to 4000 px).
    """
    B = xs.shape[0]
    pad = max(1.0, float(round(size * PAD_FRACTION)))
    span = size - 2.0 * pad
    w = size + 2
    index = None
    for coord, stride in ((xs, 1.0), (ys, float(w))):
        coord = coord.reshape(B, -1)
        lo, hi = torch.aminmax(coord, dim=1)  # (B,)
        scale = span / (hi - lo).clamp(min=1e-20)
        q = coord - lo[:, None]
        q *= scale[:, None]
        q += pad
        q.floor_()  # q >= pad > 0
        if stride != 1.0:
            q *= stride
        index = q if index is None else index.add_(q)
    base = torch.arange(B, device=xs.device) * (w * w) + (w + 1)  # (B,)
    return index.long() + base[:, None]


def canvas_hits(index: torch.Tensor, batch: int, size: int) -> torch.Tensor:
    """(B, (size + 2)**2) uint8: 1 where a point of `pixel_index` lands, else 0."""
    w = size + 2
    hits = torch.zeros(batch * w * w, dtype=torch.uint8, device=index.device)
    hits.index_fill_(0, index.reshape(-1), 1)
    return hits.view(batch, w * w)


def filling_rate(hits: torch.Tensor, size: int) -> torch.Tensor:
    """Fraction of canvas pixels hit (FractalDB's filling rate): (B, (size + 2)**2) -> (B,)."""
    return hits.sum(dim=1, dtype=torch.int64).double().div(size * size).float()


def canvas_maps(index: torch.Tensor, maps: torch.Tensor, batch: int, size: int) -> torch.Tensor:
    """(B, (size + 2)**2) int64: 1 + the largest map index of the points landing on each
    pixel (0: none); an order-free reduction, so the same on every device and batch."""
    w = size + 2
    canvas = torch.zeros(batch * w * w, dtype=torch.int64, device=index.device)
    canvas.scatter_reduce_(0, index.reshape(-1), maps.reshape(-1) + 1, "amax")
    return canvas.view(batch, w * w)


def paint(hits: torch.Tensor, levels: torch.Tensor, size: int) -> torch.Tensor:
    """Every hit pixel q paints q + (dy - 1, dx - 1) with levels[..., 3 dy + dx]; a pixel keeps
    the largest level painted on it (an order-free rule: FractalDB paints patches in turn).

    hits (B, W*W) uint8 0/1, levels (B, C, 9) uint8 -> (B, C, W*W) uint8, W = size + 2. The
    shifts run on the flat canvas: its 1 px border is never hit, so no shift wraps a row.
    """
    w = size + 2
    n = w * w
    out = torch.zeros(levels.shape[0], levels.shape[1], n, dtype=torch.uint8,
                      device=hits.device)
    for k in range(9):
        level = levels[:, :, k:k + 1]  # (B, C, 1)
        if not bool(level.any()):  # a cell off in every image paints nothing
            continue
        off = (k // 3 - 1) * w + (k % 3 - 1)
        lo, hi = max(0, off), min(n, n + off)
        torch.maximum(out[:, :, lo:hi], hits[:, None, lo - off:hi - off] * level,
                      out=out[:, :, lo:hi])
    return out


def downsample(canvas: torch.Tensor, size: int, supersample: int) -> torch.Tensor:
    """(B, C, W*W) uint8 canvas -> (B, C, size / s, size / s) float32 in [0, 1]: the interior
    box-filtered by `supersample` (the canvas 'resized' to the resolution)."""
    B, C = canvas.shape[:2]
    w = size + 2
    inner = canvas.view(B, C, w, w)[:, :, 1:-1, 1:-1].float()
    if supersample > 1:
        inner = torch.nn.functional.avg_pool2d(inner, supersample)
    return inner.mul_(1.0 / 255.0)


def mirror(flip: torch.Tensor) -> torch.Tensor:
    """(B, 6) signs that mirror an IFS: flip bit 0 mirrors x (S A S, S b with S = diag(-1, 1):
    b, c, e change sign), bit 1 mirrors y (b, c, f). Sign changes are exact in floating point,
    so the attractor's points mirror exactly: the image flips without touching its pixels
    (only where pixel boundaries fall can differ from flipping the picture)."""
    sx = 1.0 - 2.0 * (flip & 1).float()  # (B,)
    sy = 1.0 - 2.0 * ((flip >> 1) & 1).float()
    one = torch.ones_like(sx)
    return torch.stack([one, sx * sy, sx * sy, one, sx, sy], dim=1)


# ---- the category search ---------------------------------------------------------------------


@dataclass(frozen=True)
class Candidates:
    """Candidate systems of a search round: params (N, M, 6), n_maps (N,), ok (N,) when every
    map slot found a contraction, and the walks' map choices (T, N, K) of its filling rate."""

    params: torch.Tensor
    n_maps: torch.Tensor
    ok: torch.Tensor
    choice: torch.Tensor


def draw_candidates(config: FractalConfig, categories: torch.Tensor, seed: int,
                    attempt: int) -> Candidates:
    """Attempt `attempt` of every category: a pure function of (config, seed, category,
    attempt), drawn from the category's own stream for that attempt."""
    M = config.maps_max
    rnd = ImageRandom(seed, categories, f"fractal_ifs/system/{attempt}")
    n_maps = rnd.integers(config.maps_min, config.maps_max + 1, 1)[:, 0]  # (N,)
    draws = rnd.uniform(M, MAP_TRIES, PARAMS) * 2.0 - 1.0  # (N, M, tries, 6) in (-1, 1)
    good = contractive(draws, config.jitter_weights)  # (N, M, tries)
    first = good.to(torch.uint8).argmax(dim=2)  # first contractive draw of each slot
    params = draws.gather(2, first[:, :, None, None].expand(-1, -1, 1, PARAMS))[:, :, 0]
    live = torch.arange(M, device=categories.device)[None, :] < n_maps[:, None]
    params = torch.where(live[:, :, None], params, torch.zeros_like(params))  # unused: zero
    ok = (good.any(dim=2) | ~live).all(dim=1)
    k = config.chains
    steps = config.burn_in + -(-config.search_points // k)
    thresholds = map_thresholds(params, n_maps)
    choice = choose_maps(uniform16_words(rnd, steps * k), thresholds)  # (N, steps * k)
    choice = choice.view(-1, steps, k).permute(1, 0, 2).contiguous()  # (T, N, K)
    return Candidates(params, n_maps, ok, choice)


def search_filling_rates(config: FractalConfig, cand: Candidates) -> torch.Tensor:
    """Filling rate of every candidate (-1 where a map slot failed), rendered in chunks."""
    rates = torch.full((cand.params.shape[0],), -1.0, device=cand.params.device)
    todo = torch.nonzero(cand.ok).flatten()
    for start in range(0, todo.numel(), SEARCH_BATCH):
        rows = todo[start:start + SEARCH_BATCH]
        xs, ys = chaos_game(cand.params[rows], cand.choice[:, rows], config.burn_in)
        index = pixel_index(xs, ys, config.search_resolution)
        hits = canvas_hits(index, rows.numel(), config.search_resolution)
        rates[rows] = filling_rate(hits, config.search_resolution)
    return rates


def search_systems(config: FractalConfig, categories: torch.Tensor,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The IFS of each category: its first attempt (0, 1, 2, ...) whose maps are all
    contractions and whose filling rate lies in [fill_min, fill_max].

    categories (N,) int64 -> params (N, M, 6), n_maps (N,), attempt (N,) on its device.
    """
    n, M, dev = categories.numel(), config.maps_max, categories.device
    params = torch.zeros(n, M, PARAMS, device=dev)
    n_maps = torch.zeros(n, dtype=torch.int64, device=dev)
    attempt = torch.full((n,), -1, dtype=torch.int64, device=dev)
    first = 0
    while first < MAX_ATTEMPTS:
        pending = torch.nonzero(attempt < 0).flatten()
        if pending.numel() == 0:
            break
        blocks = SEARCH_BLOCKS.get(dev.type, SEARCH_BLOCKS["cpu"])
        block = min(blocks[first > 0], MAX_ATTEMPTS - first)
        cands = [draw_candidates(config, categories[pending], seed, first + j)
                 for j in range(block)]
        merged = Candidates(torch.cat([c.params for c in cands]),
                            torch.cat([c.n_maps for c in cands]),
                            torch.cat([c.ok for c in cands]),
                            torch.cat([c.choice for c in cands], dim=1))
        rate = search_filling_rates(config, merged).view(block, -1)  # (block, pending)
        accept = (rate >= config.fill_min) & (rate <= config.fill_max)
        found = accept.any(dim=0)
        j = accept.to(torch.uint8).argmax(dim=0)  # the first accepted attempt of the block
        pick = j * pending.numel() + torch.arange(pending.numel(), device=dev)
        rows = pending[found]
        params[rows] = merged.params[pick[found]]
        n_maps[rows] = merged.n_maps[pick[found]]
        attempt[rows] = first + j[found]
        first += block
    if bool((attempt < 0).any()):
        raise ConfigError(
            f"no IFS with a filling rate in [{config.fill_min}, {config.fill_max}] found in "
            f"{MAX_ATTEMPTS} attempts (widen fill_min..fill_max; FractalDB keeps rates >= 0.2)")
    return params, n_maps, attempt


# ---- the generator ---------------------------------------------------------------------------


class FractalIFS(Generator):
    """FractalDB-style IFS fractals: categories of i // instances_per_category."""

    config_cls = FractalConfig
    # the search on a 128 px canvas at FractalDB's point density (16x cheaper; other systems)
    cheap_settings = {"search_resolution": 128, "search_points": 6250}

    def __init__(self, config: FractalConfig, name: str | None = None) -> None:
        super().__init__(config, name)
        self._systems: OrderedDict[tuple[int, int], tuple[torch.Tensor, int]] = OrderedDict()

    def default_batch_size(self, device: torch.device) -> int:
        return 512 if device.type == "cuda" else 32  # CPU: 16-32 are fastest at 128 px

    def category(self, indices):
        """Category of image i: i // instances_per_category (an int, or a tensor of them)."""
        if isinstance(indices, int):
            return indices // self.config.instances_per_category
        return as_index_tensor(indices) // self.config.instances_per_category

    def instance(self, indices):
        """Instance of image i within its category: i % instances_per_category."""
        if isinstance(indices, int):
            return indices % self.config.instances_per_category
        return as_index_tensor(indices) % self.config.instances_per_category

    def systems(self, categories: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The IFS of each category: params (N, maps_max, 6) float32 (unused maps zero) and
        n_maps (N,), on the device of `categories`; searched once per (seed, category) and
        kept (the latest 100,000 in memory)."""
        dev = categories.device
        wanted = categories.tolist()
        missing = sorted({c for c in wanted if (seed, c) not in self._systems})
        if missing:
            found, n_maps, _ = search_systems(
                self.config, torch.tensor(missing, dtype=torch.int64, device=dev), seed)
            for c, p, n in zip(missing, found.cpu(), n_maps.tolist(), strict=True):
                self._systems[(seed, c)] = (p, n)
        for c in wanted:
            self._systems.move_to_end((seed, c))
        while len(self._systems) > _CACHE_SIZE:
            self._systems.popitem(last=False)
        params = torch.stack([self._systems[(seed, c)][0] for c in wanted]).to(dev)
        n_maps = torch.tensor([self._systems[(seed, c)][1] for c in wanted], device=dev)
        return params, n_maps

    def instance_systems(self, indices: torch.Tensor, seed: int
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each image's IFS: its category's system with the instance's parameter jitter and
        flip -> params (B, M, 6), map thresholds (B, M - 1) of the category's system (FractalDB
        keeps the searched probabilities), flip code (B,) (bit 0 horizontal, bit 1 vertical)."""
        cfg = self.config
        params, n_maps = self.systems(indices // cfg.instances_per_category, seed)
        thresholds = map_thresholds(params, n_maps)
        inst = indices % cfg.instances_per_category
        n_flips = 4 if cfg.flips else 1
        variant = (inst // n_flips) % cfg.variants
        table = jitter_table(cfg.jitter_weights, indices.device)  # (V, 6)
        flip = inst % n_flips
        return params * table[variant][:, None, :] * mirror(flip)[:, None, :], thresholds, flip

    def render(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        cfg = self.config
        B, dev, size = indices.numel(), indices.device, cfg.canvas
        params, thresholds, _ = self.instance_systems(indices, seed)
        k = cfg.chains
        steps = cfg.burn_in + -(-cfg.points // k)
        walk = ImageRandom(seed, indices, "fractal_ifs/walk")
        choice = choose_maps(uniform16_words(walk, steps * k), thresholds)  # (B, T * K)
        choice = choice.view(B, steps, k).permute(1, 0, 2).contiguous()  # (T, B, K)
        xs, ys = chaos_game(params, choice, cfg.burn_in)  # (B, T', K)
        index = pixel_index(xs, ys, size)
        look = ImageRandom(seed, indices, "fractal_ifs/look")
        if cfg.render == "point" and cfg.color:  # each point in the colour of its map
            palette = look.uniform(cfg.maps_max, 3)  # (B, M, 3)
            maps = choice[cfg.burn_in:].transpose(0, 1)  # (B, T', K): the map of each point
            canvas = lookup(palette, canvas_maps(index, maps, B, size))
        elif cfg.color:  # colour patches: the cell of highest priority shows its colour
            rank, palette = self.colour_patch(look)
            canvas = lookup(palette, paint(canvas_hits(index, B, size), rank[:, None], size)[:, 0])
        else:
            canvas = paint(canvas_hits(index, B, size), self.grey_levels(look, B, dev), size)
        out = downsample(canvas, size, cfg.supersample)  # (B, 1 or 3, R, R)
        return out.expand(B, 3, cfg.resolution, cfg.resolution).contiguous()

    def grey_levels(self, look: ImageRandom, batch: int, device: torch.device) -> torch.Tensor:
        """What a hit paints on the 3 x 3 cells around it: (B, 1, 9) uint8 grey levels.

        "point": its own pixel white. "patch": FractalDB's 3 x 3 patch, each cell on with
        probability 1/2 (the centre always) in a grey level uniform in [0.25, 1]; where patches
        overlap the brighter level shows.
        """
        if self.config.render == "point":
            levels = torch.zeros(batch, 1, 9, dtype=torch.uint8, device=device)
            levels[:, :, 4] = 255
            return levels
        on = patch_cells(look)
        value = 0.25 + 0.75 * look.uniform(9)  # (B, 9)
        return (value * on * 255.0).round_().to(torch.uint8)[:, None, :]

    def colour_patch(self, look: ImageRandom) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour 3 x 3 patch: each cell on with probability 1/2 (the centre always), a uniform
        RGB colour and a random priority (where patches overlap, the highest priority shows;
        per-channel maxima would wash the colours out). -> priority (B, 9) uint8 (0: off,
        1..9), palette (B, 9, 3): the colour of priority r + 1 at row r."""
        on = patch_cells(look)
        colour = look.uniform(9, 3)  # (B, 9, 3)
        order = look.uniform(9).argsort(dim=1)  # cells by priority, lowest first
        priority = torch.empty_like(order)
        priority.scatter_(1, order, torch.arange(1, 10, device=order.device).expand_as(order))
        palette = torch.empty_like(colour).scatter_(1, (priority - 1)[:, :, None].expand(-1, -1, 3),
                                                    colour)
        return (priority * on).to(torch.uint8), palette


def patch_cells(look: ImageRandom) -> torch.Tensor:
    """(B, 9) bool: the cells of a 3 x 3 patch that paint (each with probability 1/2, the
    centre always)."""
    on = look.uniform(9) < 0.5
    on[:, 4] = True
    return on


def lookup(palette: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Colour canvas: palette (B, P, 3) float in [0, 1], codes (B, N) int (0: black, c: row
    c - 1) -> (B, 3, N) uint8."""
    table = (palette * 255.0).round_().to(torch.uint8)
    table = torch.cat([torch.zeros_like(table[:, :1]), table], dim=1)  # (B, P + 1, 3)
    return table.gather(1, codes.long()[:, :, None].expand(-1, -1, 3)).permute(0, 2, 1)


register_generator("fractal_ifs", FractalIFS,
                   "FractalDB-style IFS fractals (2-8 affine maps, filling-rate search, "
                   "grey 3x3 patch rendering, 1,000 jittered and flipped instances per "
                   "category; paper: FractalDB-1k)")
register_generator("fractal_ifs_color", FractalIFS,
                   "FractalDB-style IFS fractals rendered with colour 3x3 patches "
                   "(FractalDB's patch_color)", color=True)
