"""Textured dead leaves (Baradad et al., NeurIPS 2021, sec. 3.2; reference study sec. 2.2).

Dead leaves whose every leaf is filled with a Spectrum + Color + WMM statistical texture. The
reference code read 10,000 images of the already generated stat-spectrum_color_wmm dataset from a
folder and replaced each distinct leaf colour by the pixels of a randomly chosen one, at the same
positions (masked, not shifted or scaled). Here no folder is needed: the textures form a pool of
`texture_pool` images rendered by the same seeded statistical pipeline (`statistical.py`), texture
j being a pure function of (seed, j) on its own random stream, rendered lazily when a batch first
needs it and cached per (seed, device) as 8-bit values (what the reference's JPEG textures held).
Each leaf draws its texture index uniformly from the pool, so image i stays a pure function of
(config, seed, i). Leaves come from the dead-leaves renderer (`DeadLeaves.leaf_ids`); like the
reference, the default shapes are the six "mixed" kinds (the paper's text says squares).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from noisevision.errors import check
from noisevision.generators.base import Generator, register_generator
from noisevision.generators.dead_leaves import SHAPE_KINDS, DeadLeaves, DeadLeavesConfig
from noisevision.generators.statistical import StatisticalConfig, StatisticalModel
from noisevision.rng import ImageRandom

TEXTURE_STREAM = "dead_leaves_textured/texture"


@dataclass(frozen=True)
class TexturedDeadLeavesConfig(DeadLeavesConfig):
    shapes: tuple[str, ...] = SHAPE_KINDS  # reference --textured runs on the "mixed" shapes
    texture_pool: int = 1000  # statistical textures the leaves draw from (reference: 10,000
    #   files sampled from the dataset; 1000 keeps the one-off pool cost to about a minute of
    #   CPU at 128 px and the cache to 49 MB, while leaves of one image still rarely share one)
    texture_iterations: int = 10  # rounds of the texture's statistical model (reference 10)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(isinstance(self.texture_pool, int) and not isinstance(self.texture_pool, bool)
              and 1 <= self.texture_pool <= 1_000_000,
              f"texture_pool must be an integer in [1, 1000000], got {self.texture_pool!r}")
        self.texture_config()  # the texture model must accept the resolution and iterations

    def texture_config(self) -> StatisticalConfig:
        """The Spectrum + Color + WMM model that renders the textures."""
        return StatisticalConfig(resolution=self.resolution, impose_spectrum=True,
                                 impose_wmm=True, impose_color=True,
                                 iterations=self.texture_iterations)

    def leaves_config(self) -> DeadLeavesConfig:
        names = {f.name for f in dataclasses.fields(DeadLeavesConfig)}
        return DeadLeavesConfig(**{k: getattr(self, k) for k in names})


class TexturedDeadLeaves(Generator):
    """Dead leaves filled with statistical textures from a seeded, lazily rendered pool."""

    thread_sensitive = True  # its textures are stat_spectrum_color_wmm images
    config_cls = TexturedDeadLeavesConfig
    # small pool for the contract test (32 px): every property is the same, only cheaper
    cheap_settings = {"texture_pool": 16}  # contact sheets, tests: a 16-texture pool

    def __init__(self, config: TexturedDeadLeavesConfig, name: str | None = None) -> None:
        super().__init__(config, name)
        self.leaves = DeadLeaves(config.leaves_config())
        self.textures = StatisticalModel(config.texture_config())
        self._pool: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor]] = {}

    def default_batch_size(self, device: torch.device) -> int:
        return self.leaves.default_batch_size(device)

    def texture_pool(self, needed: torch.Tensor, seed: int, device: torch.device) -> torch.Tensor:
        """The (P, 3, H, W) uint8 pool with at least the textures `needed` rendered."""
        cfg, res = self.config, self.config.resolution
        key = (seed, str(device))
        if key not in self._pool:
            self._pool.clear()  # keep one pool (the latest seed and device) in memory
            pool = torch.zeros(cfg.texture_pool, 3, res, res, dtype=torch.uint8, device=device)
            done = torch.zeros(cfg.texture_pool, dtype=torch.bool, device=device)
            self._pool[key] = (pool, done)
        pool, done = self._pool[key]
        todo = needed[~done[needed]]
        bs = self.textures.default_batch_size(device)
        for start in range(0, todo.numel(), bs):
            j = todo[start:start + bs]
            tex = self.textures.render_stream(j, seed, TEXTURE_STREAM)
            pool[j] = (tex * 255.0).round_().to(torch.uint8)
            done[j] = True
        return pool

    def render(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        cfg, res = self.config, self.config.resolution
        B, dev = indices.numel(), indices.device
        ids, _ = self.leaves.leaf_ids(indices, seed)  # (B, H, W) int, -1 = uncovered
        # one texture index per leaf slot (a fixed count per image: batch-independent draws)
        choice = ImageRandom(seed, indices, "dead_leaves_textured/choice").integers(
            0, cfg.texture_pool, cfg.max_leaves)  # (B, max_leaves)
        leaf = ids.view(B, -1).long()
        covered = leaf >= 0
        tex = choice.gather(1, leaf.clamp(min=0))  # (B, HW) texture index per pixel
        pool = self.texture_pool(torch.unique(tex[covered]), seed, dev)
        hw = res * res
        # out[b, c, p] = pool[tex[b, p], c, p]: flat index tex * 3 hw + c hw + p
        base = tex * (3 * hw) + torch.arange(hw, device=dev)[None, :]  # (B, HW)
        index = base[:, None, :] + torch.arange(3, device=dev)[None, :, None] * hw  # (B, 3, HW)
        out = pool.view(-1)[index].float() * (1.0 / 255.0)
        out = torch.where(covered[:, None, :], out, torch.zeros_like(out))  # uncovered: black
        return out.view(B, 3, res, res)


register_generator("dead_leaves_textured", TexturedDeadLeaves,
                   "dead leaves (six shape kinds) filled with Spectrum+Color+WMM textures "
                   "from a seeded pool (paper: Dead leaves - Textured)")
