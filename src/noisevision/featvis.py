"""Feature visualisation: optimise an image so that chosen units of a network fire strongly.

Baradad et al. 2021 section 3.5 and Figure 5, after Olah et al. 2017 ("Feature visualization",
Distill; the lucid library) and reference-implementation.md section 6. Written here from those
descriptions; no lucid / lucent code is used.

* Parameterisation (lucid's ``fft_image`` + ``to_valid_rgb``): an image is a complex half
  spectrum per colour channel, scaled by 1 / max(|f|, 1 / max(H, W)) (f in cycles per pixel), so
  white noise in the parameters is 1/f noise in the image; an orthonormal inverse real FFT,
  divided by 4 ("magic" constant of lucid); colours decorrelated by the square root of the
  ImageNet colour covariance (``COLOR_SQRT_COV``); a sigmoid maps to [0, 1].
* Transformations each step (lucid's standard set, the sizes scaled from 256 px to the image
  side): constant padding 12 px with 0.5, jitter by up to 8 px, scale in {0.90, 0.92, ..., 1.10},
  rotation in -10..10 degrees (0 five times more likely), jitter by up to 4 px, resize back to
  the image side. They compose into one affine map, so each step is one ``F.affine_grid`` +
  ``F.grid_sample`` per image (bilinear; 0.5 outside the image).
* Objective: the mean over space of one channel (a "unit"), or the mean of two channels, at a
  named layer (a forward hook; the rest of the network is skipped). Each image of a batch has its
  own unit(s); the batch loss is the SUM of per-image losses, so an image's gradient does not
  depend on its batch. Adam, lr 0.05 (reference).

Determinism: the initial spectrum and every transformation are drawn with
:class:`noisevision.rng.ImageRandom` keyed by the image's index. On CPU images are optimised
one at a time (BLAS and oneDNN choose kernels by batch size, which changes float rounding), so
an image is the same bytes whatever its batch; on CUDA a batch is optimised together in bf16,
with deterministic cuDNN algorithms and a fixed-order gradient of the views (:class:`_Warp`;
grid_sample's own backward adds with atomics), padded to the batch size by `render_batch`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from noisevision.errors import UsageError
from noisevision.rng import ImageRandom

# lucid's `color_correlation_svd_sqrt` (published in lucid/optvis/param/color.py): the square
# root U diag(sqrt(s)) of the covariance of ImageNet pixel colours, rows R, G, B; its columns
# are the principal colour axes (luminance, red-blue, green-magenta) scaled by their std.
LUCID_COLOR_SQRT_COV = ((0.26, 0.09, 0.02),
                        (0.27, 0.00, -0.05),
                        (0.27, -0.09, 0.03))


def _color_matrix() -> np.ndarray:
    """The published matrix with exactly orthogonal columns (its two-decimal rounding removed):
    M = U diag(s) from the SVD U diag(s) V^T of lucid's table, signs fixed so that M matches the
    table (V is the identity up to rounding); divided by its largest column norm, as lucid."""
    m0 = np.asarray(LUCID_COLOR_SQRT_COV, dtype=np.float64)
    u, s, vt = np.linalg.svd(m0)
    m = u * s * np.sign(np.diag(vt))[None, :]
    return m / np.linalg.norm(m, axis=0).max()


COLOR_SQRT_COV = _color_matrix()  # (3, 3) float64, columns orthogonal, largest column norm 1
FFT_MAGIC = 4.0                    # lucid divides the inverse FFT by 4
INIT_SD = 0.01                     # lucid's `sd` of the initial spectrum (reference: 0.01)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# ---- the parameterisation -------------------------------------------------------------------

def spectrum_scale(h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(h, w // 2 + 1) float32: 1 / max(|f|, 1 / max(h, w)), |f| in cycles per pixel."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    f = torch.sqrt(fx * fx + fy * fy)
    return (1.0 / torch.clamp(f, min=1.0 / max(h, w))).float().to(device)


def _color(x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Mix colour channels: (B, 3, H, W) -> M x per pixel (or M^-1 x)."""
    m = torch.as_tensor(COLOR_SQRT_COV, dtype=torch.float32, device=x.device)
    if inverse:
        m = torch.linalg.inv(m.double()).float()
    return torch.einsum("ij,bjhw->bihw", m, x)


def image_of(spectrum: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Parameters (B, 3, h, w // 2 + 1, 2) (real, imaginary) -> images (B, 3, h, w) in (0, 1)."""
    spec = torch.view_as_complex(spectrum) * spectrum_scale(h, w, spectrum.device)
    x = torch.fft.irfft2(spec, s=(h, w), norm="ortho") / FFT_MAGIC  # (B, 3, h, w)
    return torch.sigmoid(_color(x))


def spectrum_of(images: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`image_of`: images (B, 3, H, W) in (0, 1) -> parameters."""
    h, w = images.shape[-2:]
    x = _color(torch.logit(images.double()).float(), inverse=True) * FFT_MAGIC
    spec = torch.fft.rfft2(x, norm="ortho") / spectrum_scale(h, w, images.device)
    return torch.view_as_real(spec).contiguous()


# ---- the random transformations -------------------------------------------------------------

N_TRANSFORM_DRAWS = 6  # integer draws per image per step: two jitters (x, y), scale, angle
_SCALES = tuple(0.90 + 0.02 * k for k in range(11))
_ANGLES = tuple(range(-10, 11)) + (0,) * 5   # degrees; 0 is six times as likely as others


def draw_transforms(rnd: ImageRandom, steps: int) -> torch.Tensor:
    """(B, steps, 4) float32: jitter x, y (px at 256, the two jitters summed), scale, angle
    (radians); a fixed number of draws per image."""
    d = rnd.integers(0, 2**16, steps, N_TRANSFORM_DRAWS)  # (B, steps, 6)
    j1 = d[..., 0:2] % 17 - 8            # -8..8 px
    j2 = d[..., 2:4] % 9 - 4             # -4..4 px
    scale = torch.tensor(_SCALES, device=d.device)[d[..., 4] % len(_SCALES)]
    angle = torch.tensor(_ANGLES, device=d.device, dtype=torch.float32)[d[..., 5] % len(_ANGLES)]
    return torch.stack([(j1 + j2)[..., 0].float(), (j1 + j2)[..., 1].float(), scale,
                        angle * (math.pi / 180.0)], dim=-1)


def affine_of(tf: torch.Tensor) -> torch.Tensor:
    """(B, 4) transforms of one step -> (B, 2, 3) affine maps for ``F.affine_grid``.

    Output coordinate u (normalised, [-1, 1] = the network's view) samples the image at
    R(angle) u k / scale + t: the view spans k = (256 + 2 * 12 - 8 - 4) / 256 image widths
    (padding minus the two jitter crops, resized back to the image side), and t is the jitter
    (pixels at 256 px, scaled to the image side)."""
    k = (256.0 + 24.0 - 12.0) / 256.0
    c, s = torch.cos(tf[:, 3]), torch.sin(tf[:, 3])
    z = k / tf[:, 2]
    t = tf[:, :2] * (2.0 / 256.0)  # pixels at 256 px -> normalised units (any side)
    row0 = torch.stack([c * z, -s * z, t[:, 0]], dim=1)
    row1 = torch.stack([s * z, c * z, t[:, 1]], dim=1)
    return torch.stack([row0, row1], dim=1)  # (B, 2, 3)


def transform(images: torch.Tensor, tf: torch.Tensor, deterministic: bool | None = None
              ) -> torch.Tensor:
    """Images (B, 3, H, W) seen through one step's random view (0.5 outside the image).

    `deterministic` (default: on CUDA) takes the gradient through :class:`_Warp` instead of
    grid_sample's backward, which adds with atomics on CUDA (an order that varies run to run).
    """
    b, _, h, w = images.shape
    grid = F.affine_grid(affine_of(tf), [b, 3, h, w], align_corners=False)
    if deterministic if deterministic is not None else images.device.type == "cuda":
        return _Warp.apply(images - 0.5, grid) + 0.5
    return F.grid_sample(images - 0.5, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False) + 0.5


class _Warp(torch.autograd.Function):
    """Bilinear grid_sample (zeros outside, align_corners=False) whose input gradient is summed
    in a fixed order: each output pixel's four weighted contributions are sorted by the input
    pixel they land on (a stable sort) and summed by a float64 prefix sum per input pixel."""

    @staticmethod
    def forward(ctx, images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(grid)
        ctx.shape = images.shape
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (grid,) = ctx.saved_tensors
        return splat(grad, grid, ctx.shape), None


def splat(grad: torch.Tensor, grid: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The adjoint of bilinear grid_sample: grad (B, C, Ho, Wo) -> (B, C, H, W), in a fixed
    summation order (deterministic on any device)."""
    b, c, h, w = shape
    ix = ((grid[..., 0] + 1) * w - 1) / 2  # (B, Ho, Wo) source x in pixels
    iy = ((grid[..., 1] + 1) * h - 1) / 2
    x0, y0 = ix.floor(), iy.floor()
    fx, fy = ix - x0, iy - y0
    base = torch.arange(b, device=grad.device).view(b, 1, 1) * (h * w)
    keys, weights = [], []
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                       (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        x, y = x0 + dx, y0 + dy
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        keys.append(torch.where(inside, base + (y * w + x).long(), b * h * w))  # out: dropped
        weights.append(wt * inside)
    key = torch.stack(keys, dim=-1).reshape(-1)  # (B * Ho * Wo * 4,)
    wts = torch.stack(weights, dim=-1).reshape(-1)
    g = grad.permute(0, 2, 3, 1).reshape(-1, 1, c)  # (B * Ho * Wo, 1, C)
    contrib = (g * wts.view(-1, 4, 1)).reshape(-1, c)  # (B * Ho * Wo * 4, C)
    order = torch.sort(key, stable=True).indices
    key, contrib = key[order], contrib[order].double()
    uniq, counts = torch.unique_consecutive(key, return_counts=True)
    csum = torch.cat([contrib.new_zeros(1, c), contrib.cumsum(dim=0)])
    end = counts.cumsum(0)
    sums = (csum[end] - csum[end - counts]).to(grad.dtype)  # (K, C) per input pixel
    out = grad.new_zeros(b * h * w + 1, c)
    out[uniq] = sums
    return out[:-1].view(b, h, w, c).permute(0, 3, 1, 2).contiguous()


# ---- layers and units -----------------------------------------------------------------------

# layer name -> (module path for the forward hook, channel count at width 1 or None: read off)
LAYERS = {
    "small_alexnet": ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"),
    "resnet50": ("conv1", "layer1", "layer2", "layer3", "layer4", "avgpool"),
}
FEATURE_LAYER = {"small_alexnet": "fc6", "resnet50": "avgpool"}  # the probed representation
_RESNET_CHANNELS = {"conv1": 64, "layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048,
                    "avgpool": 2048}
_RESNET_MODULE = {"conv1": "maxpool", "avgpool": "layer4"}


def arch_name(model: nn.Module) -> str:
    from noisevision.ssl.encoders import ResNet50Encoder, SmallAlexNet

    if isinstance(model, SmallAlexNet):
        return "small_alexnet"
    if isinstance(model, ResNet50Encoder):
        return "resnet50"
    raise UsageError(f"cannot visualise a {type(model).__name__} (allowed: small_alexnet, "
                     "resnet50 encoders)")


def resolve_layer(model: nn.Module, layer: str,
                  pre_relu: bool = False) -> tuple[str, nn.Module, int]:
    """(layer name, module to hook, channel count); "features" = the probed layer; an unknown
    name is a one-line UsageError listing the valid ones. `pre_relu` (SmallAlexNet): hook the
    batch norm before the layer's ReLU (lucid's "_pre_relu" objectives), so a unit that is off
    on the initial noise still has a gradient; not conv1, whose pre-ReLU spatial mean is linear
    in the image (its optimum a flat colour); ResNet-50 blocks end in a ReLU after their sum,
    so their post-ReLU output is hooked either way."""
    arch = arch_name(model)
    name = FEATURE_LAYER[arch] if layer == "features" else layer
    if name not in LAYERS[arch]:
        raise UsageError(f"{arch} has no layer {layer!r} (allowed: features, "
                         f"{', '.join(LAYERS[arch])})")
    if arch == "small_alexnet":
        k = LAYERS[arch].index(name)
        block = model.blocks[k]
        relu = [j for j, m in enumerate(block) if isinstance(m, nn.ReLU)]
        module = block[relu[0] - 1] if pre_relu and relu and k > 0 else block
        return name, module, int(model.block_dims[k])
    return name, getattr(model, _RESNET_MODULE.get(name, name)), _RESNET_CHANNELS[name]


def check_units(units: torch.Tensor, channels: int, layer: str) -> None:
    """Units (B, 2) (-1 = none) must name channels of the layer."""
    bad = units[(units >= channels) | (units < -1)]
    if bad.numel():
        raise UsageError(f"layer {layer} has no unit {int(bad[0])} (allowed: 0..{channels - 1})")


class _Stop(Exception):
    """Raised by the hook once the layer's output is captured (the rest is not computed)."""


@dataclass
class Objective:
    """The mean activation of each image's unit(s) at one layer of `model`."""

    model: nn.Module
    module: nn.Module
    units: torch.Tensor  # (B, 2) int64, -1 = no second unit

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image objective (B,) float32 for network inputs x (B, 3, H, W)."""
        captured: list[torch.Tensor] = []

        def hook(_module, _inputs, output):
            captured.append(output)
            raise _Stop

        handle = self.module.register_forward_hook(hook)
        try:
            self.model(x)
        except _Stop:
            pass
        finally:
            handle.remove()
        act = captured[0].float()
        if act.dim() == 4:
            act = act.mean(dim=(2, 3))  # (B, C): a channel's mean over space
        mask = self.units >= 0
        picked = act.gather(1, self.units.clamp(min=0)) * mask  # (B, 2)
        return picked.sum(dim=1) / mask.sum(dim=1)


# ---- the optimisation -----------------------------------------------------------------------

def normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


def initial_spectrum(rnd: ImageRandom, side: int) -> torch.Tensor:
    """(B, 3, side, side // 2 + 1, 2) N(0, 0.01) parameters (reference: lucid's sd=0.01)."""
    return rnd.normal(3, side, side // 2 + 1, 2) * INIT_SD


def optimise(objective: Objective, spectrum: torch.Tensor, transforms: torch.Tensor, *,
             lr: float = 0.05, autocast: bool = False,
             record: list | None = None) -> torch.Tensor:
    """Run Adam on `spectrum` (B, 3, S, S // 2 + 1, 2) for transforms.shape[1] steps, each step
    seen through its own random view (`transforms` (B, steps, 4)); returns the final images
    (B, 3, S, S) (no transformation). `record`, when given, receives each step's per-image
    objective (B,) (of that step's transformed view)."""
    side = spectrum.shape[2]
    param = spectrum.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=lr)
    dev = param.device
    for step in range(transforms.shape[1]):
        opt.zero_grad(set_to_none=True)
        # cuDNN: deterministic algorithms (some backward-data algorithms add with atomics)
        with torch.backends.cudnn.flags(enabled=True, benchmark=False, deterministic=True):
            x = transform(image_of(param, side, side), transforms[:, step])
            if autocast:  # CUDA: channels-last bf16 convolutions (cuDNN's native layout)
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                value = objective(normalise(x))
            if record is not None:
                record.append(value.detach().float().cpu())
            (-value.float()).sum().backward()  # per-image losses summed: no batch coupling
        opt.step()
    with torch.no_grad():
        return image_of(param, side, side)


def stretch(images: torch.Tensor) -> torch.Tensor:
    """Per-image min-max stretch to [0, 1] (the reference writes images this way)."""
    lo = images.amin(dim=(1, 2, 3), keepdim=True)
    hi = images.amax(dim=(1, 2, 3), keepdim=True)
    return (images - lo) / (hi - lo).clamp(min=1e-8)


def objective_value(objective: Objective, images: torch.Tensor) -> torch.Tensor:
    """Per-image objective of untransformed images (B,), no gradient."""
    with torch.no_grad():
        return objective(normalise(images)).float()


def prepare(model: nn.Module) -> nn.Module:
    """Eval mode (batch norm uses its running statistics: no coupling between images) and no
    weight gradients (only the image is optimised)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ---- Figure 5: a sheet of unit visualisations of an encoder ---------------------------------

def visualize(encoder: str, layers: list[str], units: list[int] | None = None, *,
              n_units: int = 8, resolution: int | None = None, steps: int = 128,
              lr: float = 0.05, seed: int = 0, pre_relu: bool = True,
              device: str | torch.device = "cpu") -> tuple[torch.Tensor, list[str], dict]:
    """Visualise `units` (default 0..n_units-1) of each layer of an encoder (a pretraining run,
    its encoder.pt or a released file): images (len(layers) * len(units), 3, S, S) in [0, 1],
    one label per image and a summary (arch, resolution). Unit u of a layer starts from the
    noise ImageRandom(seed, u) and sees the same random views, so sheets of two encoders
    differ only by what their units respond to. `pre_relu`: see `resolve_layer` (default on:
    a post-ReLU unit that never fires on noise would stay a flat grey tile)."""
    from noisevision.device import resolve_device
    from noisevision.probe.load import load_probe_encoder

    dev = resolve_device(device)
    model, meta = load_probe_encoder(encoder, device=dev)
    model = prepare(model)
    arch = arch_name(model)
    if not pre_relu and arch != "small_alexnet":
        raise UsageError(f"--post-relu applies to SmallAlexNet encoders only (this one is "
                         f"{arch}, whose units are optimised as they are): drop --post-relu")
    size = getattr(model, "arch_kwargs", {}).get("input_size")
    side = resolution or size or 128
    units = list(range(n_units)) if units is None else list(units)
    resolved = [resolve_layer(model, layer, pre_relu) for layer in layers]  # bad names: 1 line
    for name, _, channels in resolved:
        check_units(torch.tensor([[u, -1] for u in units]), channels, name)
        if size is not None and name.startswith("fc") and side != size:
            raise UsageError(f"layer {name} of this SmallAlexNet needs --resolution {size} "
                             f"(its input size), got {side}")
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    images, labels = [], []
    for name, module, _ in resolved:
        idx = torch.tensor(units, dtype=torch.int64, device=dev)
        rnd = ImageRandom(seed, idx, "featvis/visualize")
        spectrum = initial_spectrum(rnd.child("init"), side)
        views = draw_transforms(rnd.child("views"), steps)
        pairs = torch.stack([idx, torch.full_like(idx, -1)], dim=1)
        chunk = len(units) if dev.type == "cuda" else 1
        with torch.enable_grad():
            for i in range(0, len(units), chunk):
                objective = Objective(model, module, pairs[i:i + chunk])
                images.append(optimise(objective, spectrum[i:i + chunk], views[i:i + chunk],
                                       lr=lr, autocast=dev.type == "cuda").cpu())
        labels += [f"{name} #{u}" for u in units]
    summary = {"arch": arch, "resolution": side, "steps": steps, "source": meta.get("source",
                                                                                  encoder),
               "pre_relu": bool(pre_relu and arch == "small_alexnet")}
    return torch.cat(images), labels, summary
