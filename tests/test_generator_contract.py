"""The generator contract, checked on every registered generator (now and future).

Each generator runs at a small resolution (32 px) on CPU. A family that needs other small values
declares ``cheap_settings`` (part of the generator contract: a dict of config fields, e.g.
``{"resolution": 64, "width": 0.25}``) that this test applies on top of ``resolution=32``.
"""

from __future__ import annotations

import json

import pytest
import torch

from noisevision import create_generator, list_generators
from noisevision.generators.base import GENERATORS, generator_from_description

N_IMAGES = 6
SEED = 7


def contract_overrides(name: str) -> dict:
    generator_cls, _ = GENERATORS.get(name).factory
    return {"resolution": 32, **generator_cls.cheap_settings}


_cache: dict[str, tuple] = {}


def reference(name: str):
    """The generator and its images 0..5 rendered in one batch (computed once per name)."""
    if name not in _cache:
        gen = create_generator(name, **contract_overrides(name))
        _cache[name] = (gen, gen.generate(range(N_IMAGES), seed=SEED, batch_size=N_IMAGES))
    return _cache[name]


NAMES = list_generators()


PAPER_FAMILIES = {  # every family of the paper's Table 1 that the toolkit has built so far
    "dead_leaves_squares", "dead_leaves_oriented", "dead_leaves_shapes", "dead_leaves_textured",
    "stat_spectrum", "stat_wmm", "stat_spectrum_color", "stat_spectrum_color_wmm",
    "stylegan_random", "stylegan_highfreq", "stylegan_sparse", "stylegan_oriented"}


def test_the_papers_families_are_registered_with_descriptions():
    from noisevision.generators.base import describe_generator

    assert PAPER_FAMILIES <= set(NAMES), PAPER_FAMILIES - set(NAMES)
    for name in NAMES:
        assert len(describe_generator(name).split()) >= 3, name


@pytest.mark.parametrize("name", NAMES)
def test_output_shape_dtype_range(name):
    gen, x = reference(name)
    r = gen.resolution
    assert x.shape == (N_IMAGES, 3, r, r)
    assert x.dtype == torch.float32
    assert x.device.type == "cpu"
    assert torch.isfinite(x).all()
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert float(x.std()) > 0.0  # not a constant image set


@pytest.mark.parametrize("name", NAMES)
def test_render_itself_obeys_the_range(name):
    """render() (used directly by on-the-fly sources) already returns float32 in [0, 1]."""
    gen, _ = reference(name)
    y = gen.render(torch.arange(2), SEED)
    assert y.dtype == torch.float32 and y.shape[0] == 2
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_deterministic(name):
    gen, x = reference(name)
    again = create_generator(name, **contract_overrides(name))
    y = again.generate(range(N_IMAGES), seed=SEED, batch_size=N_IMAGES)
    assert torch.equal(x, y)


@pytest.mark.parametrize("name", NAMES)
def test_batch_invariance(name):
    """Image i is the same bytes whatever the batch size, order or other batch members."""
    gen, x = reference(name)
    assert torch.equal(gen.generate(range(N_IMAGES), seed=SEED, batch_size=1), x)
    # reordered, among other indices, in batches of 4, 4 and 1 (the last one alone)
    mixed = [1000, 4, 1, 123456, 5, 0, 77, 3, 2]
    z = gen.generate(mixed, seed=SEED, batch_size=4)
    for pos, i in enumerate(mixed):
        if i < N_IMAGES:
            assert torch.equal(z[pos], x[i]), f"image {i} changed at batch position {pos}"


@pytest.mark.parametrize("name", NAMES)
def test_thread_count_invariance(name):
    """Image i is the same bytes whatever torch's intra-op thread count (another machine has
    other cores): a family whose CPU kernels round with it declares `thread_sensitive`."""
    gen, x = reference(name)
    old = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            y = gen.generate(range(N_IMAGES), seed=SEED, batch_size=N_IMAGES)
            assert torch.equal(y, x), f"{threads} threads changed the images"
            assert torch.get_num_threads() == threads  # restored after rendering
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("name", NAMES)
def test_seeds_and_indices_differ(name):
    gen, x = reference(name)
    other = gen.generate(range(3), seed=SEED + 1, batch_size=3)
    for i in range(3):
        assert not torch.equal(x[i], other[i]), f"seed change left image {i} unchanged"
    for i in range(N_IMAGES):
        for j in range(i):
            assert not torch.equal(x[i], x[j]), f"images {i} and {j} are identical"


@pytest.mark.parametrize("name", NAMES)
def test_description_round_trips_through_json(name):
    """Manifests store describe(); rebuilding from its JSON gives the same images."""
    gen, x = reference(name)
    desc = json.loads(json.dumps(gen.describe()))
    rebuilt = generator_from_description(desc)
    assert rebuilt.config == gen.config
    assert torch.equal(rebuilt.generate(range(2), seed=SEED), x[:2])


@pytest.mark.parametrize("name", NAMES)
def test_default_batch_size_renders_the_same_images(name):
    """The default CPU batch (split into batches of it, and of 1) gives the reference images;
    the CUDA default is a usable batch size too."""
    gen, x = reference(name)
    for dev in ("cpu", "cuda"):
        bs = gen.default_batch_size(torch.device(dev))
        assert isinstance(bs, int) and not isinstance(bs, bool) and 1 <= bs <= 65536, (dev, bs)
    bs = gen.default_batch_size(torch.device("cpu"))
    assert torch.equal(gen.generate(range(N_IMAGES), seed=SEED), x)  # default batch size
    small = max(1, min(bs, N_IMAGES) // 2)  # a batch that splits the six images unevenly
    assert torch.equal(gen.generate(range(N_IMAGES), seed=SEED, batch_size=small), x)


@pytest.mark.parametrize("name", ["dead_leaves_squares", "stat_spectrum", "stylegan_random"])
def test_fixed_shape_rendering_pads_short_batches(name, monkeypatch):
    """On CUDA every batch renders in its batch-size shape (GPU libraries pick kernels by size).
    Forced on CPU: a short batch is padded with its last index, every render call sees the full
    shape (also StyleGAN-Random's per-network split), and the images are unchanged."""
    from noisevision.generators import base
    from noisevision.generators.stylegan import generator as stylegan

    gen, x = reference(name)
    idx = [0, 1, 2] if name != "stylegan_random" else [0, 1, 2, 400, 401]  # two networks
    want = torch.cat([x[:3], gen.generate([400, 401], seed=SEED, batch_size=2)]) \
        if name == "stylegan_random" else x[:3]
    shapes = []
    render = type(gen).render

    def spy(self, indices, seed):
        shapes.append(indices.numel())
        return render(self, indices, seed)

    for mod in (base, stylegan):
        monkeypatch.setattr(mod, "fixed_shapes", lambda device: True)
    monkeypatch.setattr(type(gen), "render", spy)
    got = gen.generate(idx, seed=SEED, batch_size=8)
    assert torch.allclose(got, want, atol=1e-6)
    assert shapes and all(n == 8 for n in shapes), shapes
