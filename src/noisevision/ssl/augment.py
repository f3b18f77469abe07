"""Two-view augmentation, batched on the training device with per-sample random parameters.

The reference augments each image on CPU loader workers with torchvision transforms (reference
Sec. 8.1 and 8.3); here a whole batch is augmented at once on its device, so no CPU loader limits
the GPU. Every random parameter is drawn per sample, a fixed number per call, from one seeded
``torch.Generator`` on the CPU (so the draws are identical on CPU and GPU, and its state is
saved in checkpoints for exact resume), then moved to the device.

Pipeline (each view drawn independently), following torchvision's definitions:

1. optional resize of the whole image to ``pre_resize`` (the paper's "downsample to 96"),
2. RandomResizedCrop: torchvision's rule (10 tries of area in ``scale`` and log-uniform aspect in
   ``ratio``, else a centre crop), resampled with ``roi_align`` whose adaptive sampling averages
   several points per output pixel (an antialiased box-bilinear resize),
3. horizontal flip with probability ``flip_p`` (done here rather than last: it commutes with the
   per-pixel colour operations and with the symmetric blur),
4. colour jitter (brightness, contrast, saturation, hue) with probability ``jitter_p``, the four
   operations in a random order drawn per sample (torchvision draws one order per call, i.e.
   per image, too),
5. grayscale with probability ``grayscale_p`` (ITU-R 601 luma, as torchvision),
6. Gaussian blur with probability ``blur_p``, sigma uniform in ``blur_sigma`` (MoCo v2 aug-plus),
7. normalisation by ``mean`` / ``std``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from noisevision.errors import check

STL10_MEAN = (0.4409, 0.4279, 0.3868)  # reference Sec. 8.1 normalisation (STL-10 statistics)
STL10_STD = (0.2683, 0.2610, 0.2687)
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # MoCo v2 normalisation (ImageNet statistics)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)
_CROP_TRIES = 10


@dataclass(frozen=True)
class AugmentConfig:
    crop: int = 64                              # output side, px (small 64, MoCo 224)
    scale: tuple[float, float] = (0.08, 1.0)    # RandomResizedCrop area fraction (MoCo: 0.2-1)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # RandomResizedCrop aspect range (torchvision)
    pre_resize: int | None = None               # px; the paper's 96 px downsample (ref. skips it)
    flip_p: float = 0.5                         # horizontal flip probability
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.4)  # b, c, s, hue strengths
    jitter_p: float = 1.0                       # small: always; MoCo aug-plus: 0.8
    grayscale_p: float = 0.2                    # both recipes
    blur_p: float = 0.0                         # MoCo aug-plus: 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # px at the crop resolution (MoCo v2)
    mean: tuple[float, float, float] = STL10_MEAN
    std: tuple[float, float, float] = STL10_STD

    def __post_init__(self) -> None:
        for name in ("scale", "ratio", "jitter", "blur_sigma", "mean", "std"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        check(isinstance(self.crop, int) and self.crop >= 8,
              f"crop must be an integer >= 8 px, got {self.crop!r}")
        check(self.pre_resize is None or (isinstance(self.pre_resize, int)
                                          and self.pre_resize >= self.crop),
              f"pre_resize must be None or an integer >= crop ({self.crop}), "
              f"got {self.pre_resize!r}")
        check(0 < self.scale[0] <= self.scale[1] <= 1,
              f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        check(0 < self.ratio[0] <= self.ratio[1], f"ratio must be 0 < min <= max, got {self.ratio}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p"):
            v = getattr(self, name)
            check(0.0 <= v <= 1.0, f"{name} must be a probability in [0, 1], got {v!r}")
        check(len(self.jitter) == 4 and min(self.jitter) >= 0 and self.jitter[3] <= 0.5,
              f"jitter must be 4 values >= 0 (hue <= 0.5), got {self.jitter}")
        check(0 < self.blur_sigma[0] <= self.blur_sigma[1],
              f"blur_sigma must satisfy 0 < min <= max, got {self.blur_sigma}")
        check(len(self.mean) == 3 and len(self.std) == 3 and min(self.std) > 0,
              "mean and std must hold 3 values, std > 0")


def small_augment(crop: int = 64, pre_resize: int | None = None) -> AugmentConfig:
    """Reference Sec. 8.1 (Alignment + Uniformity)."""
    return AugmentConfig(crop=crop, pre_resize=pre_resize)


def moco_augment(crop: int = 224) -> AugmentConfig:
    """MoCo v2 "aug-plus" (reference Sec. 8.3)."""
    return AugmentConfig(crop=crop, scale=(0.2, 1.0), jitter=(0.4, 0.4, 0.4, 0.1),
                         jitter_p=0.8, blur_p=0.5, mean=IMAGENET_MEAN, std=IMAGENET_STD)


# ---------------------------------------------------------------- parameters (small CPU tensors)

def sample_crop_boxes(n: int, size: int, scale: tuple[float, float], ratio: tuple[float, float],
                      gen: torch.Generator) -> torch.Tensor:
    """torchvision's RandomResizedCrop rule for n crops of a size x size image, vectorised.

    Returns (n, 4) float boxes (x1, y1, x2, y2) in pixel edges (the crop covers pixels x1..x2-1).
    """
    area = float(size * size)
    u_area, u_ratio, u_i, u_j = torch.rand(4, n, _CROP_TRIES, generator=gen, dtype=torch.float64)
    target = area * (scale[0] + (scale[1] - scale[0]) * u_area)
    log_r0, log_r1 = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_r0 + (log_r1 - log_r0) * u_ratio)
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    ok = (w > 0) & (w <= size) & (h > 0) & (h <= size)           # (n, tries)
    first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)  # first valid try
    found = ok.any(dim=1)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    y = torch.floor(u_i.gather(1, first)[:, 0] * (size - h + 1))
    x = torch.floor(u_j.gather(1, first)[:, 0] * (size - w + 1))
    # Fallback (no try fits): the largest centre crop whose aspect lies within `ratio`.
    fw = float(size) if ratio[0] <= 1.0 <= ratio[1] else (
        float(size) if ratio[0] > 1 else float(round(size * ratio[1])))
    fh = float(size) if ratio[0] <= 1.0 <= ratio[1] else (
        float(round(size / ratio[0])) if ratio[0] > 1 else float(size))
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    x = torch.where(found, x, torch.full_like(x, (size - fw) // 2))
    y = torch.where(found, y, torch.full_like(y, (size - fh) // 2))
    return torch.stack([x, y, x + w, y + h], dim=1).float()


def sample_params(n: int, image_size: int, cfg: AugmentConfig,
                  gen: torch.Generator) -> dict[str, torch.Tensor]:
    """All random parameters of n augmented views; the same number of draws whatever they are."""
    size = cfg.pre_resize or image_size
    boxes = sample_crop_boxes(n, size, cfg.scale, cfg.ratio, gen)
    u = torch.rand(n, 9, generator=gen)
    b, c, s, h = cfg.jitter
    lo = torch.tensor([max(0.0, 1 - b), max(0.0, 1 - c), max(0.0, 1 - s), -h])
    hi = torch.tensor([1 + b, 1 + c, 1 + s, h])
    factors = lo + (hi - lo) * u[:, 3:7]                         # (n, 4)
    order = torch.argsort(torch.rand(n, 4, generator=gen), dim=1)  # per-sample jitter order
    s0, s1 = cfg.blur_sigma
    return {
        "boxes": boxes,                                   # (n, 4) x1 y1 x2 y2
        "flip": u[:, 0] < cfg.flip_p,                     # (n,)
        "jitter": u[:, 1] < cfg.jitter_p,                 # (n,)
        "gray": u[:, 2] < cfg.grayscale_p,                # (n,)
        "factors": factors,                               # brightness, contrast, saturation, hue
        "order": order,                                   # (n, 4) permutation of 0..3
        "blur": u[:, 7] < cfg.blur_p,                     # (n,)
        "sigma": s0 + (s1 - s0) * u[:, 8],                # (n,)
    }


# ---------------------------------------------------------------- colour operations (B, 3, H, W)

def _gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(dim=1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)  # (B, 1, H, W)


def _blend(x: torch.Tensor, other: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    f = f.view(-1, 1, 1, 1)
    return (f * x + (1 - f) * other).clamp_(0.0, 1.0)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV with hue in [0, 1)."""
    r, g, b = x.unbind(dim=1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    chroma = maxc - minc
    s = chroma / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(chroma > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], dim=1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x.unbind(dim=1)
    h6 = h * 6.0
    sector = torch.floor(h6)
    f = h6 - sector
    sector = sector.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # RGB for each of the six hue sectors, (6, 3, B, H, W), then pick per pixel.
    table = torch.stack([torch.stack(c) for c in ((v, t, p), (q, v, p), (p, v, t),
                                                  (p, q, v), (t, p, v), (v, p, q))])
    idx = sector.unsqueeze(0).unsqueeze(0).expand(1, 3, *sector.shape)
    return table.gather(0, idx)[0].permute(1, 0, 2, 3)


def _jitter_op(k: int, x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    if k == 0:  # brightness: blend with black
        return (x * f.view(-1, 1, 1, 1)).clamp_(0.0, 1.0)
    if k == 1:  # contrast: blend with the image's mean luma
        return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), f)
    if k == 2:  # saturation: blend with the grayscale image
        return _blend(x, _gray(x), f)
    hsv = rgb_to_hsv(x)  # hue: rotate the hue circle
    hue = (hsv[:, 0] + f.view(-1, 1, 1)) % 1.0
    return hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1))


def color_jitter(x: torch.Tensor, factors: torch.Tensor, order: torch.Tensor,
                 apply: torch.Tensor) -> torch.Tensor:
    """Per-sample jitter in a per-sample order; samples with apply False are untouched."""
    x = x.clone()
    for pos in range(4):
        for k in range(4):
            sel = torch.nonzero(apply & (order[:, pos] == k)).flatten()
            if sel.numel():
                x[sel] = _jitter_op(k, x[sel], factors[sel, k])
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per sample, reflect padding; radius ceil(3 sigma_max)."""
    n, c, hgt, wid = x.shape
    radius = max(1, min(int(math.ceil(3 * float(sigma.max()))), min(hgt, wid) - 1))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma.view(-1, 1)) ** 2)
    k = (k / k.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n*c, 2r+1)
    y = x.reshape(1, n * c, hgt, wid)
    y = F.pad(y, (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(y, k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, hgt, wid)


# ---------------------------------------------------------------- the whole pipeline

def apply_views(images: torch.Tensor, params: dict[str, torch.Tensor], cfg: AugmentConfig,
                source_index: torch.Tensor) -> torch.Tensor:
    """Augment views of `images` ((B, 3, S, S) uint8 or float in [0, 1]); view v is cut from
    image source_index[v]. Returns normalised float32 (V, 3, crop, crop)."""
    dev = images.device
    x = images.float()
    if images.dtype == torch.uint8:
        x = x / 255.0
    if cfg.pre_resize is not None and cfg.pre_resize != x.shape[-1]:
        x = F.interpolate(x, size=(cfg.pre_resize, cfg.pre_resize), mode="bilinear",
                          antialias=True, align_corners=False).clamp_(0.0, 1.0)
    p = {k: v.to(dev, non_blocking=True) for k, v in params.items()}
    rois = torch.cat([source_index.to(dev, torch.float32).unsqueeze(1), p["boxes"]], dim=1)
    out = roi_align(x, rois, output_size=cfg.crop, spatial_scale=1.0, sampling_ratio=-1,
                    aligned=True)                                  # (V, 3, crop, crop)
    out = torch.where(p["flip"].view(-1, 1, 1, 1), out.flip(-1), out)
    if cfg.jitter_p > 0 and any(v > 0 for v in cfg.jitter):
        out = color_jitter(out, p["factors"], p["order"], p["jitter"])
    if cfg.grayscale_p > 0:
        out = torch.where(p["gray"].view(-1, 1, 1, 1), _gray(out).expand_as(out), out)
    if cfg.blur_p > 0:
        sel = torch.nonzero(p["blur"]).flatten()
        if sel.numel():
            out[sel] = gaussian_blur(out[sel], p["sigma"][sel])
    mean = torch.tensor(cfg.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=dev).view(1, 3, 1, 1)
    return (out - mean) / std


class TwoViewAugment:
    """Draws two independent views of every image of a batch, on the batch's device."""

    def __init__(self, config: AugmentConfig, seed: int = 0) -> None:
        self.config = config
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) images -> two (B, 3, crop, crop) normalised views."""
        b = images.shape[0]
        params = sample_params(2 * b, images.shape[-1], self.config, self.generator)
        src = torch.arange(b).repeat(2)
        views = apply_views(images, params, self.config, src)
        return views[:b], views[b:]

    def reseed(self, seed: int) -> None:
        """Restart the draws from `seed` (the trainer reseeds every step from (seed, rank,
        epoch, step), which makes the draws a pure function of the data position)."""
        self.generator.manual_seed(int(seed))

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state(),
                "config": dataclasses.asdict(self.config)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
