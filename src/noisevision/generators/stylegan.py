"""Untrained StyleGAN generators: StyleGAN-Random, -High-freq, -Sparse and -Oriented.

Baradad et al. 2021 section 3.4 and reference-implementation.md sections 5 and 13. An untrained
StyleGAN2-style synthesis network (stylegan_net.py) with random weights drawn per network
(a new network every `images_per_network` = 400 images, as the reference) and, for the three
randomized variants, wavelet filters, amplitudes, biases and pink-noise maps drawn per image.

Reproducibility (what the reference lacks): network weights (constant input, affine weights,
dense conv and ToRGB weights of StyleGAN-Random, the per-layer pink-noise dictionaries) used for
image i come from ImageRandom(seed, i // 400, "stylegan/net..."); every per-image draw (latents,
filter subset and choices, amplitudes, biases, noise maps and strengths, ToRGB weights of the
randomized variants, colour targets) from ImageRandom(seed, i, "stylegan/image...").

Deliberate deviation: in the reference, per-forward draws (filters, amplitudes, biases, ToRGB
weights, the shared noise map) are shared by the images of one forward batch (batch size 1 in the
current code, 4 in the first release); here they are drawn per image, so image i does not depend
on its batch and the set is a little more diverse. Where paper and code differ (section 13) the
code is the default and the paper an option: noise_alpha=(0.5, 2.0), noise_envelope="bicubic",
filter_choice="pair" (High-freq per-filter wavelets), amplitude="pair" (a_{k,l} of Oriented).
Those two "pair" options have no fast path and use the dense reference path.

Determinism: on CPU an image is bit-identical in any batch (tested; per-image work uses the same
calls whatever the batch: styles are one matrix-vector product per image, batched matmuls have
per-image shapes, and a batch of one is rendered as two). Changing the number of torch threads
may change images by float rounding (parallel reductions split differently, and with one thread
the bias+noise layers are reduced per image in chunks). On CUDA, cuBLAS/cuDNN pick kernels by
problem size, so every batch renders in its batch-size shape (`Generator.render_batch` pads a
short one, and a Random batch spanning two networks renders each part at the full shape): an
image is then bit-identical at any position of a batch of that size (checked on an H200).
Bulk draws (network weights, latents, noise phases, filter choices) take two 16-bit uniforms per
hashed word (`uniform16`) and normals by inverse CDF (`normal16`, |z| <= 4.3); on CPU the hash
runs in uint32 numpy (`hash_words`, bit-identical to `ImageRandom.bits`), on CUDA as one Triton
kernel per draw (rng_triton).

Speed (BENCHMARKS.md): on a shared, loaded CPU one torch thread is often several times faster
than two (parallel regions wait for descheduled threads): `torch.set_num_threads(1)`.
StyleGAN-Random's dense 3x3 convolutions run on CPU as Winograd F(4, 3) (stylegan_winograd.py,
`conv_algorithm="auto"`), their weights transformed once per network; on CUDA as cuDNN
convolutions in channels-last, the upsampling layers as one 3x3 convolution to 4x the channels
with the blur folded in, then a pixel shuffle. `compute_dtype="auto"` (the default) computes
Random in bfloat16 on CUDA and on CPUs with native bfloat16 (about 2x faster on CPU, 1.25x on
an H200), float32 elsewhere; float32 images agree with the reference path to ~1e-6, bfloat16
ones differ from float32 by a mean |diff| of 0.001-0.006 (CUDA direct / CPU Winograd) with the
spectrum slope unchanged (tested). The wavelet variants stay float32: their CUDA channel sums
run as one fused Triton kernel (stylegan_triton.py), with no dense convolution at all.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from noisevision.errors import check
from noisevision.generators.base import (
    Generator,
    check_resolution,
    fixed_shapes,
    register_generator,
)
from noisevision.generators.stylegan_filters import (
    BANK_SIZE,
    laplacian_envelope,
    parity_kernels,
    pink_noise,
    wavelet_bank,
)
from noisevision.generators.stylegan_net import (
    Layer,
    LayerParams,
    build_layers,
    conv_reference,
    conv_shared,
    fold_weight,
    num_ws,
    synthesize,
    synthesize_shared,
    synthesize_tied,
)
from noisevision.generators.stylegan_winograd import (
    WINOGRAD_TILE,
    transform_up_weight,
    transform_weight,
    up_tile,
)
from noisevision.generators.stylegan_winograd import plan as winograd_plan
from noisevision.rng import _GOLDEN32, MASK32, ImageRandom

RESOLUTIONS = (64, 128, 256, 512)
# per-image colour targets (mean, std) per channel, N(mu, sigma) each (reference section 5.1)
_COLOR_TARGETS = ((0.483, 0.145, 0.219, 0.063), (0.455, 0.142, 0.213, 0.062),
                  (0.401, 0.161, 0.213, 0.069))


def _mix32_np(x: np.ndarray, tmp: np.ndarray) -> None:
    """rng.mix32 (lowbias32) in place on uint32 arrays, whose products wrap modulo 2**32."""
    for shift, mul in ((16, 0x7FEB352D), (15, 0x846CA68B), (16, None)):
        np.right_shift(x, np.uint32(shift), out=tmp)
        np.bitwise_xor(x, tmp, out=x)
        if mul is not None:
            np.multiply(x, np.uint32(mul), out=x)


def hash_words(rnd: ImageRandom, n: int) -> torch.Tensor:
    """`rnd.bits(n)` (B, n), bit for bit; on CPU computed in uint32 numpy arithmetic.

    ImageRandom hashes in int64 with split multiplications (portable to any GPU); in uint32,
    where products wrap by definition, the same lowbias32 hash takes a fraction of the passes.
    The counter advances exactly as `bits` does (tested against it).
    """
    if rnd.device.type != "cpu":
        return rnd.bits(n)
    return torch.from_numpy(_hash_np(rnd, n).astype(np.int64))


def _hash_np(rnd: ImageRandom, n: int) -> np.ndarray:
    """`rnd.bits(n)` on CPU as a (B, n) uint32 array (see `hash_words`)."""
    start = rnd._counter
    rnd._counter += n
    ka = rnd._key_a.numpy().astype(np.uint32)  # (B, 1)
    kb = rnd._key_b.numpy().astype(np.uint32)
    ctr = (np.arange(start, start + n, dtype=np.uint64) & np.uint64(MASK32)).astype(np.uint32)
    ctr *= np.uint32(_GOLDEN32)
    x = ctr[None, :] + ka  # (B, n), wraps modulo 2**32
    tmp = np.empty_like(x)
    _mix32_np(x, tmp)
    x ^= kb
    _mix32_np(x, tmp)
    return x


def uniform16(rnd: ImageRandom, *shape: int) -> torch.Tensor:
    """(B, *shape) uniforms in (0, 1) with 16-bit resolution, two per 32-bit draw.

    Bulk draws (noise phases, network weights) dominate the cost of the counter-based generator,
    so each hashed word gives two values; 16 bits are plenty for phases and random weights.
    """
    n = math.prod(shape)
    m = (n + 1) // 2
    if rnd.device.type == "cpu":  # the same values without int64 temporaries
        words = _hash_np(rnd, m)
        halves = np.empty((rnd.batch, 2 * m), dtype=np.float32)
        halves[:, :m] = words >> np.uint32(16)
        halves[:, m:] = words & np.uint32(0xFFFF)
        u = torch.from_numpy(halves[:, :n])
        return ((u + 0.5) * (1.0 / 65536.0)).reshape(rnd.batch, *shape)
    words = rnd.bits(m)  # (B, ceil(n / 2))
    halves = torch.cat([words >> 16, words & 0xFFFF], dim=1)[:, :n]
    return ((halves.to(torch.float32) + 0.5) * (1.0 / 65536.0)).reshape(rnd.batch, *shape)


def normal16(rnd: ImageRandom, *shape: int) -> torch.Tensor:
    """(B, *shape) standard normals by inverse CDF of `uniform16` (|z| <= 4.3)."""
    return torch.special.ndtri(uniform16(rnd, *shape))


def _pair(name: str, value, lo: float, hi: float, integer: bool = False) -> tuple:
    ok = (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
          and lo <= value[0] <= value[1] <= hi)
    if integer:
        ok = ok and all(float(v).is_integer() for v in value)
    check(ok, f"{name} must be a pair (low, high) with {lo} <= low <= high <= {hi}, got {value!r}")
    return tuple(int(v) for v in value) if integer else tuple(float(v) for v in value)


def _choice(name: str, value, allowed: tuple[str, ...]) -> None:
    check(value in allowed, f"{name} must be one of {', '.join(allowed)}, got {value!r}")


@dataclass(frozen=True)
class StyleGANConfig:
    resolution: int = 256  # output side, px: 64/128/256/512 (reference: 256 at both scales, s1)
    width: float = 1.0  # channel multiplier on min(32768/res, 512) (reference s5.1: 1.0)
    w_dim: int = 512  # per-layer latent size (StyleGAN2: 512)
    images_per_network: int = 400  # a new random network every N images (reference s5.1: 400)
    conv_weights: str = "wavelet"  # "gaussian": dense N(0,1) per network (Random); "wavelet"
    filter_bank: str = "real"  # "sign": 40 ternary (High-freq, Sparse); "real": 40 (Oriented)
    filter_subset: tuple = (5, 40)  # bank subset size ~ U{low..high} per layer, image (Oriented)
    filter_choice: str = "input"  # "input": tied per input channel (code); "pair": paper
    amplitude: str = "output"  # "output": N(0,1) per output channel (code); "pair": a_{k,l}
    noise_maps: str = "shared"  # "none" | "dictionary" (per-layer maps) | "shared" (one map)
    noise_dictionary_size: int = 100  # maps per layer and network (reference: 100)
    shared_noise_size: int = 512  # side of the shared map, area-downsampled (reference: 512)
    noise_alpha: tuple = (0.5, 1.5)  # 1/f^alpha exponent range (code 0.5-1.5; paper 0.5-2)
    noise_strength: tuple = (0.0, 0.3)  # per layer and image, U(low, high) (reference: 0-0.3)
    noise_envelope: str = "lanczos"  # 4x4 Laplace envelope: "none" | "lanczos" (code) | "bicubic"
    bias_range: tuple = (-0.2, 0.2)  # per output channel U(low, high) (Sparse/Oriented: +-0.2)
    color_norm: str = "imagenet"  # "imagenet": random per-channel mean/std (s5.1) | "old"
    path: str = "fast"  # "fast" (structured) | "reference" (dense per-image convs, slow)
    # fast-path arithmetic: "float32", "bfloat16", or "auto" (StyleGAN.compute_dtype: bfloat16
    # for Random's dense convolutions on CUDA and on a CPU with native bfloat16, else float32)
    compute_dtype: str = "auto"
    # Random's 3x3 convs: "auto" (CPU: Winograd F(4,3) where it measured faster, see
    # StyleGAN._use_winograd; CUDA: "fold" in channels-last), "winograd" (every conv layer),
    # "direct" (library convolutions; up layers as transposed conv + blur), "fold" (up layers
    # as one 3x3 conv to 4 x the channels with the blur folded in, then a pixel shuffle)
    conv_algorithm: str = "auto"

    def __post_init__(self) -> None:
        check_resolution(self.resolution, RESOLUTIONS)
        check(isinstance(self.width, (int, float)) and 0 < self.width <= 4,
              f"width must be a number in (0, 4], got {self.width!r}")
        for name in ("w_dim", "images_per_network", "noise_dictionary_size"):
            v = getattr(self, name)
            check(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 2**20,
                  f"{name} must be an integer in [1, 2**20], got {v!r}")
        _choice("conv_weights", self.conv_weights, ("gaussian", "wavelet"))
        _choice("filter_bank", self.filter_bank, ("sign", "real"))
        _choice("filter_choice", self.filter_choice, ("input", "pair"))
        _choice("amplitude", self.amplitude, ("output", "pair"))
        _choice("noise_maps", self.noise_maps, ("none", "dictionary", "shared"))
        _choice("noise_envelope", self.noise_envelope, ("none", "lanczos", "bicubic"))
        _choice("color_norm", self.color_norm, ("imagenet", "old"))
        _choice("path", self.path, ("fast", "reference"))
        _choice("compute_dtype", self.compute_dtype, ("auto", "float32", "bfloat16"))
        _choice("conv_algorithm", self.conv_algorithm, ("auto", "winograd", "direct", "fold"))
        s = self.shared_noise_size
        check(isinstance(s, int) and s >= self.resolution and s <= 4096 and s & (s - 1) == 0,
              f"shared_noise_size must be a power of two in [resolution, 4096], got {s!r}")
        object.__setattr__(self, "filter_subset",
                           _pair("filter_subset", self.filter_subset, 1, BANK_SIZE, True))
        object.__setattr__(self, "noise_alpha", _pair("noise_alpha", self.noise_alpha, 0, 4))
        object.__setattr__(self, "noise_strength",
                           _pair("noise_strength", self.noise_strength, 0, 10))
        object.__setattr__(self, "bias_range", _pair("bias_range", self.bias_range, -10, 10))

    @property
    def tied_fast(self) -> bool:
        """Whether the wavelet fast path applies (filter per input, amplitude per output)."""
        return self.filter_choice == "input" and self.amplitude == "output"


class StyleGAN(Generator):
    """Untrained StyleGAN2-style synthesis network with random or wavelet weights."""

    config_cls = StyleGANConfig
    contract_overrides = {"resolution": 64, "width": 0.125}  # cheap settings for contract tests

    def __init__(self, config: StyleGANConfig, name: str | None = None) -> None:
        super().__init__(config, name)
        self.layers: list[Layer] = build_layers(config.resolution, config.width)
        self.num_ws = num_ws(config.resolution)
        self._bank = wavelet_bank(config.filter_bank)
        self._nets: OrderedDict = OrderedDict()  # (seed, group, device) -> weights, LRU
        self._maps: OrderedDict = OrderedDict()  # (seed, layer, group, device) -> (D, r, r)
        self._work = threading.local()  # activation workspace of the fast wavelet path

    def default_batch_size(self, device: torch.device) -> int:
        r = self.config.resolution
        if device.type == "cuda":
            if self.config.conv_weights == "gaussian":
                # whole networks per batch: a batch spanning two networks renders twice
                ipn, cap = self.config.images_per_network, (512 if r <= 256 else 100)
                return max(d for d in range(1, min(ipn, cap) + 1) if ipn % d == 0)
            # wavelet variants: 1,024 at 256 px measured 1.4-1.9x the images/s of 256 on an
            # H200 (launch overhead amortized) in 9.8 GiB; 512 px: the same memory at 256
            return 1024 if r <= 256 else 256
        # dense convolutions (Random) need large im2col buffers on CPU: 6 GiB at 128 px, batch 16
        scale = 2 if self.config.conv_weights == "gaussian" else 1
        return max(1, {64: 32, 128: 16, 256: 8, 512: 2}[r] // scale)

    # ---- network weights: one set per (seed, group) ----------------------------------------
    def _network(self, seed: int, group: int, device: torch.device) -> dict[str, torch.Tensor]:
        key = (seed, group, str(device))
        if key in self._nets:
            self._nets.move_to_end(key)
            return self._nets[key]
        cfg = self.config
        rnd = ImageRandom(seed, torch.tensor([group], device=device), "stylegan/net")
        c4 = self.layers[0].c_in
        net = {"group": group, "const": normal16(rnd.child("const"), c4, 4, 4)[0]}
        for li, layer in enumerate(self.layers):
            net[f"affine{li}"] = normal16(rnd.child(f"affine{li}"), layer.c_in, cfg.w_dim)[0]
            if cfg.conv_weights == "gaussian":
                shape = ((layer.c_out, layer.c_in, 3, 3) if layer.kind == "conv"
                         else (3, layer.c_in))
                net[f"weight{li}"] = normal16(rnd.child(f"weight{li}"), *shape)[0]
        self._nets[key] = net
        while len(self._nets) > 4:
            self._nets.popitem(last=False)
        return net

    def build_network(self, seed: int, group: int, device: torch.device | str = "cpu") -> None:
        """Draw network `group`'s weights and (dictionary noise) all its maps, ahead of use.

        Rendering draws both lazily; this front-loads the per-network cost (benchmarks time it).
        """
        dev = torch.device(device)
        self._network(seed, group, dev)
        if self.config.noise_maps == "dictionary":
            one = torch.zeros(1, dtype=torch.int64, device=dev)
            for li, layer in enumerate(self.layers):
                if layer.kind == "conv":
                    self._dictionary_noise(seed, [group], one, li, layer.res, one)

    # ---- per-image parameters ---------------------------------------------------------------
    def _styles(self, w: torch.Tensor, nets: list[dict], group_of: torch.Tensor,
                li: int, layer: Layer) -> torch.Tensor:
        """s = 1 + w A^T / sqrt(w_dim) per input channel (affine N(0,1), bias 1)."""
        wl = w[:, layer.w_index]  # (B, w_dim)
        scale = 1.0 / math.sqrt(self.config.w_dim)
        if w.device.type == "cpu":
            # one matrix-vector product per image: the same call whatever the batch, so an
            # image's styles never depend on the other rows (BLAS picks kernels by row count)
            proj = torch.stack([torch.mv(nets[g][f"affine{li}"], wl[b])
                                for b, g in enumerate(group_of.tolist())])
            return 1.0 + proj * scale
        s = None  # GPU: every image through each network's affine, then a select (no sync)
        for g, net in enumerate(nets):
            sg = 1.0 + (wl @ net[f"affine{li}"].T) * scale
            s = sg if s is None else torch.where((group_of == g)[:, None], sg, s)
        return s

    def _wavelet_draws(self, lr: ImageRandom, layer: Layer) -> tuple[torch.Tensor, torch.Tensor]:
        """Filter index per input channel (or per pair) and amplitudes, both per image."""
        cfg = self.config
        lo, hi = cfg.filter_subset
        n_sub = lr.integers(lo, hi + 1, 1)  # (B, 1)
        order = torch.argsort(lr.uniform(BANK_SIZE), dim=1, stable=True)  # random subset order
        shape = (layer.c_in,) if cfg.filter_choice == "input" else (layer.c_out, layer.c_in)
        u = uniform16(lr, *shape).reshape(lr.batch, -1)
        j = torch.minimum((u * n_sub).long(), n_sub - 1)  # uniform slot in the subset
        k = torch.gather(order, 1, j).reshape(lr.batch, *shape)
        a = normal16(lr, layer.c_out) if cfg.amplitude == "output" else normal16(
            lr, layer.c_out, layer.c_in)
        return k, a

    def _dictionary_noise(self, seed: int, uniq: list[int], local: torch.Tensor, li: int,
                          res: int, index: torch.Tensor) -> torch.Tensor:
        """Map `index` of layer li's dictionary of network uniq[local] -> (B, 1, res, res).

        A network's dictionary for a layer is made whole, once ((D, res, res); map j from
        ImageRandom(seed, group * D + j)), and images pick their maps by one gather.
        """
        d = self.config.noise_dictionary_size
        dev = index.device
        dicts = []
        for g in uniq:
            key = (seed, li, g, str(dev))
            if key not in self._maps:
                self._maps[key] = self._pink(ImageRandom(
                    seed, torch.arange(g * d, (g + 1) * d, device=dev),
                    f"stylegan/net/noise{li}"), res)
            self._maps.move_to_end(key)
            dicts.append(self._maps[key])
        while len(self._maps) > 4 * len(self.layers):  # a few networks' dictionaries
            self._maps.popitem(last=False)
        table = dicts[0] if len(dicts) == 1 else torch.cat(dicts)
        return table[local * d + index][:, None]

    def _pink(self, nr: ImageRandom, size: int) -> torch.Tensor:
        cfg = self.config
        alpha = nr.uniform(1, low=cfg.noise_alpha[0], high=cfg.noise_alpha[1])[:, 0]
        phases = uniform16(nr, size, size // 2 + 1)
        env = None
        if cfg.noise_envelope != "none":
            env = laplacian_envelope(nr.laplace(4, 4), size, cfg.noise_envelope)
        return pink_noise(alpha, phases, env)

    def _params(self, indices: torch.Tensor, seed: int, nets: list[dict],
                group_of: torch.Tensor) -> list[LayerParams]:
        cfg = self.config
        rnd = ImageRandom(seed, indices, "stylegan/image")
        w = F.leaky_relu(normal16(rnd.child("w"), self.num_ws, cfg.w_dim), 0.2)
        uniq = [n["group"] for n in nets]
        pyramid: dict[int, torch.Tensor] = {}  # the shared map, 2x area-downsampled per level
        if cfg.noise_maps == "shared":
            level = self._pink(rnd.child("noise"), cfg.shared_noise_size)[:, None]
            if level.shape[-1] > cfg.resolution:  # only the levels the layers use: one 2^k x 2^k
                level = F.avg_pool2d(level, level.shape[-1] // cfg.resolution)  # area mean
            while level.shape[-1] >= 4:
                pyramid[level.shape[-1]] = level
                level = F.avg_pool2d(level, 2)
        params = []
        for li, layer in enumerate(self.layers):
            p = LayerParams(s=self._styles(w, nets, group_of, li, layer))
            lr = rnd.child(f"layer{li}")
            if layer.kind == "torgb":
                p.rgb_weight = (normal16(lr, 3, layer.c_in) if cfg.conv_weights == "wavelet"
                                else torch.stack([n[f"weight{li}"] for n in nets])[group_of])
                params.append(p)
                continue
            if cfg.conv_weights == "wavelet":
                p.k, p.a = self._wavelet_draws(lr, layer)
            if cfg.bias_range != (0.0, 0.0):
                p.bias = lr.uniform(layer.c_out, low=cfg.bias_range[0], high=cfg.bias_range[1])
            if cfg.noise_maps != "none":
                strength = lr.uniform(1, low=cfg.noise_strength[0],
                                      high=cfg.noise_strength[1])[:, :, None, None]
                if cfg.noise_maps == "dictionary":
                    idx = lr.integers(0, cfg.noise_dictionary_size, 1)[:, 0]
                    nmap = self._dictionary_noise(seed, uniq, group_of, li, layer.res, idx)
                else:  # one map shared by all scales, area-downsampled
                    nmap = pyramid[layer.res]
                p.noise = strength * nmap
            params.append(p)
        return params

    def _dense_weights(self, params: list[LayerParams], nets: list[dict],
                       group_of: torch.Tensor) -> None:
        """Fill per-image dense weights (reference path and the paper's "pair" options)."""
        bank = self._bank.to(params[0].s.device)
        for li, (layer, p) in enumerate(zip(self.layers, params, strict=True)):
            if layer.kind != "conv":
                continue
            if self.config.conv_weights == "gaussian":
                p.weight = torch.stack([n[f"weight{li}"] for n in nets])[group_of]
                continue
            f = bank[p.k]  # (B, C_in, 3, 3) or (B, C_out, C_in, 3, 3)
            if f.dim() == 4:
                f = f[:, None].expand(-1, layer.c_out, -1, -1, -1)
            a = p.a if p.a.dim() == 3 else p.a[:, :, None]
            p.weight = a[..., None, None] * f

    # ---- rendering ----------------------------------------------------------------------------
    def render(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        cfg = self.config
        dev = indices.device
        if indices.numel() == 1:  # BLAS/oneDNN pick other kernels for a batch of one: render two
            return self.render(indices.repeat(2), seed)[:1]
        groups = indices // cfg.images_per_network
        uniq, group_of = torch.unique(groups, return_inverse=True)
        if cfg.conv_weights == "gaussian" and cfg.path == "fast" and uniq.numel() > 1:
            # shared dense weights: render each network's images with one batched conv
            out = torch.empty(indices.numel(), 3, cfg.resolution, cfg.resolution, device=dev)
            for g in range(uniq.numel()):
                mask = group_of == g
                part = indices[mask]
                if fixed_shapes(dev):  # the batch's shape whatever the split (render_batch)
                    pad = part[-1:].expand(indices.numel() - part.numel())
                    out[mask] = self.render(torch.cat([part, pad]), seed)[:part.numel()]
                else:
                    out[mask] = self.render(part, seed)
            return out
        nets = [self._network(seed, int(g), dev) for g in uniq.tolist()]
        params = self._params(indices, seed, nets, group_of)
        const = torch.stack([n["const"] for n in nets])[group_of]  # (B, C4, 4, 4)
        rnd_color = ImageRandom(seed, indices, "stylegan/image/color")
        targets = rnd_color.normal(6)
        if cfg.path == "reference" or not (cfg.conv_weights == "gaussian" or cfg.tied_fast):
            self._dense_weights(params, nets, group_of)
            raw = synthesize(const, self.layers, params, conv_reference)
        else:
            raw = self._synthesize_fast(const, params, nets)
        return self._color(raw, targets)

    def _synthesize_fast(self, const: torch.Tensor, params: list[LayerParams],
                         nets: list[dict]) -> torch.Tensor:
        dtype = self.compute_dtype(const.device)
        if self.config.conv_weights == "gaussian":  # one network in this batch
            fmt = self._memory_format(const.device)
            for li, (layer, p) in enumerate(zip(self.layers, params, strict=True)):
                if layer.kind == "conv":
                    p.shared = nets[0][f"weight{li}"]
                    if f"wsq{li}" not in nets[0]:  # demodulation's sum of squares, per network
                        nets[0][f"wsq{li}"] = p.shared.square().sum(dim=(2, 3))
                    p.shared_sq = nets[0][f"wsq{li}"]
                    if self._use_winograd(layer, const.device):
                        p.winograd = self._winograd_weight(nets[0], li, dtype)
                    elif layer.up and self._use_fold(const.device):
                        key = f"fold{li}/{dtype}/{fmt}"
                        if key not in nets[0]:
                            nets[0][key] = fold_weight(p.shared).to(
                                dtype=dtype, memory_format=fmt)
                        p.fold = nets[0][key]
                    elif layer.up:
                        key = f"parity{li}/{dtype}"
                        if key not in nets[0]:
                            nets[0][key] = parity_kernels(p.shared.to(dtype))
                        p.parity = nets[0][key]
            # channels-last on CUDA (cuDNN's native layout: no transposes around each conv);
            # on CPU it measured slower here with 2 threads, so NCHW is kept
            x = const.to(dtype=dtype, memory_format=fmt)
            if all(p.noise is None and p.bias is None for p in params):  # Random's default
                return synthesize_shared(x, self.layers, params)
            return synthesize(x, self.layers, params, conv_shared)
        bank = self._bank.to(const.device)
        return synthesize_tied(const.to(dtype), self.layers, params, bank, self._buffer)

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """The fast path's arithmetic type on `device` (config.compute_dtype, "auto" resolved).

        "auto": bfloat16 for StyleGAN-Random's dense convolutions on CUDA and on a CPU with
        native bfloat16 (oneDNN reports it: AVX512-BF16 or AMX), where it is about 2x faster
        (CPU; 1.25x on an H200, where float32 already runs as TF32) and the images stay within
        the tested bounds of float32 ones (mean |diff| < 0.015, the same spectrum slope);
        float32 everywhere else (the wavelet variants, whose fast paths gain nothing from it,
        and older CPUs).
        """
        cd = self.config.compute_dtype
        if cd == "auto":
            native = device.type == "cuda" or (device.type == "cpu" and _cpu_has_bf16())
            return torch.bfloat16 if native and self.config.conv_weights == "gaussian" \
                else torch.float32
        return torch.bfloat16 if cd == "bfloat16" else torch.float32

    def _use_winograd(self, layer: Layer, device: torch.device) -> bool:
        """Whether StyleGAN-Random's `layer` runs as a Winograd convolution on CPU.

        "auto" takes the layers where it measured faster on this 2-core CPU (BENCHMARKS.md):
        stride-1 layers with >= 64 channels at >= 16 px (F(4, 3): a quarter of the multiplies),
        and upsampling layers with >= 64 px outputs (`winograd_upsample`: F(m, 2) on the
        transposed conv's four parity kernels, about half the multiplies, then the blur; slower
        than oneDNN for smaller maps). GPU convolution libraries choose their own algorithms,
        so "auto" leaves GPU layers to cuDNN.
        """
        algo = self.config.conv_algorithm
        if algo != "auto":
            return algo == "winograd"
        if device.type != "cpu" or min(layer.c_in, layer.c_out) < 64:
            return False
        if layer.up:  # as Winograd F(m, 2) parity convolutions (winograd_upsample)
            return layer.res >= 64
        return layer.res >= 16

    def _memory_format(self, device: torch.device) -> torch.memory_format:
        """StyleGAN-Random's activations: channels-last for "auto" on CUDA, else NCHW."""
        if device.type == "cuda" and self.config.conv_algorithm == "auto":
            return torch.channels_last
        return torch.contiguous_format

    def _use_fold(self, device: torch.device) -> bool:
        """Upsampling layers as one 3x3 conv to 4 x the channels (blur folded) + pixel shuffle.

        4x the multiplies of the transposed conv, but one tensor-core convolution instead of a
        transposed conv, an interleave and a blur pass over the output: the CUDA default
        ("auto"); on CPU only when asked for ("fold").
        """
        algo = self.config.conv_algorithm
        return algo == "fold" or (algo == "auto" and device.type == "cuda")

    def _winograd_weight(self, net: dict, li: int, dtype: torch.dtype) -> torch.Tensor:
        """Layer li's dense weight in the Winograd domain, computed once per network and dtype."""
        key = f"winograd{li}/{dtype}"
        if key not in net:
            w, layer = net[f"weight{li}"], self.layers[li]
            net[key] = (transform_up_weight(w, dtype, up_tile(layer.res // 2)) if layer.up
                        else transform_weight(w, winograd_plan("same", WINOGRAD_TILE), dtype))
        return net[key]

    def _buffer(self, numel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A reused flat workspace of at least `numel` elements (per thread, dtype and device).

        Writing each layer's activations into fresh tensors of hundreds of MiB costs a page fault
        per 4 KiB on every layer; one workspace, kept between batches, avoids that.
        """
        work = self._work.__dict__
        key = (dtype, str(device))
        buf = work.get(key)
        if buf is None or buf.numel() < numel:
            work.pop(key, None)
            buf = work[key] = torch.empty(numel, dtype=dtype, device=device)
        return buf[:numel]

    def _color(self, raw: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Output colour normalisation (reference s5.1) -> [0, 1]."""
        raw = raw.float()
        if self.config.color_norm == "old":
            r = raw.abs().flatten(1).quantile(0.95, dim=1).clamp(min=5.0)[:, None, None, None]
            return ((raw + r) / (2 * r)).clamp(0.0, 1.0)
        t = torch.tensor(_COLOR_TARGETS, device=raw.device)  # (3, 4)
        mean = t[:, 0] + t[:, 1] * targets[:, :3]  # (B, 3)
        std = t[:, 2] + t[:, 3] * targets[:, 3:]
        mu = raw.mean(dim=(2, 3), keepdim=True)
        sd = raw.std(dim=(2, 3), keepdim=True, unbiased=False)
        x = (raw - mu) / (sd + 1e-8) * std[:, :, None, None] + mean[:, :, None, None]
        return x.clamp(0.0, 1.0)


def _cpu_has_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (False where the check is missing)."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


_RANDOMIZED = {"conv_weights": "wavelet", "noise_maps": "dictionary"}
register_generator(
    "stylegan_random", StyleGAN,
    "untrained StyleGAN2, dense N(0,1) weights, no noise (smooth, low-frequency)",
    conv_weights="gaussian", noise_maps="none", bias_range=(0.0, 0.0), noise_envelope="none")
register_generator(
    "stylegan_highfreq", StyleGAN,
    "untrained StyleGAN2, sign-quantised wavelet filters and pink-noise inputs",
    filter_bank="sign", filter_subset=(40, 40), noise_envelope="none", bias_range=(0.0, 0.0),
    **_RANDOMIZED)
register_generator(
    "stylegan_sparse", StyleGAN,
    "untrained StyleGAN2, wavelets, Laplacian-enveloped pink noise and random biases",
    filter_bank="sign", filter_subset=(40, 40), noise_envelope="lanczos", bias_range=(-0.2, 0.2),
    **_RANDOMIZED)
register_generator(
    "stylegan_oriented", StyleGAN,
    "untrained StyleGAN2, tied real wavelets from random subsets, one shared noise map "
    "(the paper's best)",
    conv_weights="wavelet", filter_bank="real", filter_subset=(5, 40), noise_maps="shared",
    noise_envelope="lanczos", bias_range=(-0.2, 0.2))
