"""Untrained StyleGAN generators: StyleGAN-Random, -High-freq, -Sparse and -Oriented.

Baradad et al. 2021 section 3.4 and reference-implementation.md sections 5 and 13. An untrained
StyleGAN2-style synthesis network (network.py) with random weights drawn per network
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
hashed word (`ImageRandom.uniform16`) and normals by inverse CDF (`ImageRandom.normal16`,
|z| <= 4.3); on CPU the hash runs in uint32 numpy (`ImageRandom.words`), on CUDA as one Triton
kernel per draw (rng_triton).

Which fast path each layer takes (dtype, memory format, Winograd, fold, fused Triton sums) is
decided once per (config, device) by plan.py; the measurements behind those choices are in
BENCHMARKS.md.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from collections import OrderedDict

import torch
import torch.nn.functional as F

from noisevision.generators.base import Generator, fixed_shapes
from noisevision.generators.stylegan.config import StyleGANConfig
from noisevision.generators.stylegan.filters import (
    BANK_SIZE,
    laplacian_envelope,
    parity_kernels,
    pink_noise,
    wavelet_bank,
)
from noisevision.generators.stylegan.network import (
    ConvParams,
    DenseParams,
    Layer,
    RGBParams,
    build_layers,
    conv_reference,
    num_ws,
    synthesize,
)
from noisevision.generators.stylegan.paths.fold import fold_weight
from noisevision.generators.stylegan.paths.shared import (
    SharedParams,
    conv_shared,
    synthesize_shared,
)
from noisevision.generators.stylegan.paths.tied import TiedParams, synthesize_tied
from noisevision.generators.stylegan.paths.winograd import (
    WINOGRAD_TILE,
    transform_up_weight,
    transform_weight,
    up_tile,
)
from noisevision.generators.stylegan.paths.winograd import plan as winograd_plan
from noisevision.generators.stylegan.plan import RenderPlan, compute_dtype, make_plan
from noisevision.rng import ImageRandom

# per-image colour targets (mean, std) per channel, N(mu, sigma) each (reference section 5.1)
_COLOR_TARGETS = ((0.483, 0.145, 0.219, 0.063), (0.455, 0.142, 0.213, 0.062),
                  (0.401, 0.161, 0.213, 0.069))


class StyleGAN(Generator):
    """Untrained StyleGAN2-style synthesis network with random or wavelet weights."""

    config_cls = StyleGANConfig
    cheap_settings = {"resolution": 64, "width": 0.125}  # contact sheets, tests: a narrow net

    def __init__(self, config: StyleGANConfig, name: str | None = None) -> None:
        super().__init__(config, name)
        self.layers: list[Layer] = build_layers(config.resolution, config.width)
        self.num_ws = num_ws(config.resolution)
        self._bank = wavelet_bank(config.filter_bank)
        self._nets: OrderedDict = OrderedDict()  # (seed, group, device) -> weights, LRU
        self._maps: OrderedDict = OrderedDict()  # (seed, layer, group, device) -> (D, r, r)
        self._work = threading.local()  # activation workspace of the fast wavelet path
        self._plans: dict[str, RenderPlan] = {}

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
        net = {"group": group, "const": rnd.child("const").normal16(c4, 4, 4)[0]}
        for li, layer in enumerate(self.layers):
            net[f"affine{li}"] = rnd.child(f"affine{li}").normal16(layer.c_in, cfg.w_dim)[0]
            if cfg.conv_weights == "gaussian":
                shape = ((layer.c_out, layer.c_in, 3, 3) if layer.kind == "conv"
                         else (3, layer.c_in))
                net[f"weight{li}"] = rnd.child(f"weight{li}").normal16(*shape)[0]
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
        u = lr.uniform16(*shape).reshape(lr.batch, -1)
        j = torch.minimum((u * n_sub).long(), n_sub - 1)  # uniform slot in the subset
        k = torch.gather(order, 1, j).reshape(lr.batch, *shape)
        a = (lr.normal16(layer.c_out) if cfg.amplitude == "output"
             else lr.normal16(layer.c_out, layer.c_in))
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
        phases = nr.uniform16(size, size // 2 + 1)
        env = None
        if cfg.noise_envelope != "none":
            env = laplacian_envelope(nr.laplace(4, 4), size, cfg.noise_envelope)
        return pink_noise(alpha, phases, env)

    def plan(self, device: torch.device) -> RenderPlan:
        """The path of every layer on `device` (plan.py), chosen once per device."""
        key = str(device)
        if key not in self._plans:
            self._plans[key] = make_plan(self.config, self.layers, torch.device(device))
        return self._plans[key]

    def compute_dtype(self, device: torch.device) -> torch.dtype:
        """The fast path's arithmetic type on `device` (config.compute_dtype, "auto" resolved)."""
        return self.plan(device).dtype

    def pinned(self, device: torch.device) -> StyleGAN:
        """compute_dtype "auto" fixed as this machine resolves it (bfloat16 on a CPU with native
        bfloat16, float32 on one without: the same config would otherwise give other images
        there)."""
        if self.config.compute_dtype != "auto":
            return self
        dtype = compute_dtype(self.config, device)
        name = "bfloat16" if dtype == torch.bfloat16 else "float32"
        return type(self)(dataclasses.replace(self.config, compute_dtype=name), self.name)

    def pinned_as(self, config: dict) -> StyleGAN:
        stored = config.get("compute_dtype")
        if self.config.compute_dtype != "auto" or stored not in ("bfloat16", "float32"):
            return self
        return type(self)(dataclasses.replace(self.config, compute_dtype=stored), self.name)

    def _params(self, indices: torch.Tensor, seed: int, nets: list[dict],
                group_of: torch.Tensor, plan: RenderPlan) -> list:
        """Per-layer parameters of the plan's route: draws in one fixed order per image."""
        cfg = self.config
        rnd = ImageRandom(seed, indices, "stylegan/image")
        w = F.leaky_relu(rnd.child("w").normal16(self.num_ws, cfg.w_dim), 0.2)
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
            s = self._styles(w, nets, group_of, li, layer)
            lr = rnd.child(f"layer{li}")
            if layer.kind == "torgb":
                weight = (lr.normal16(3, layer.c_in) if cfg.conv_weights == "wavelet"
                          else torch.stack([n[f"weight{li}"] for n in nets])[group_of])
                params.append(RGBParams(s=s, weight=weight))
                continue
            k = a = None
            if cfg.conv_weights == "wavelet":
                k, a = self._wavelet_draws(lr, layer)
            common = ConvParams(s=s)
            if cfg.bias_range != (0.0, 0.0):
                common.bias = lr.uniform(layer.c_out, low=cfg.bias_range[0],
                                         high=cfg.bias_range[1])
            if cfg.noise_maps != "none":
                strength = lr.uniform(1, low=cfg.noise_strength[0],
                                      high=cfg.noise_strength[1])[:, :, None, None]
                if cfg.noise_maps == "dictionary":
                    idx = lr.integers(0, cfg.noise_dictionary_size, 1)[:, 0]
                    nmap = self._dictionary_noise(seed, uniq, group_of, li, layer.res, idx)
                else:  # one map shared by all scales, area-downsampled
                    nmap = pyramid[layer.res]
                common.noise = strength * nmap
            params.append(self._conv_params(plan, li, layer, common, k, a, nets, group_of))
        return params

    def _conv_params(self, plan: RenderPlan, li: int, layer: Layer, common: ConvParams,
                     k: torch.Tensor | None, a: torch.Tensor | None, nets: list[dict],
                     group_of: torch.Tensor):
        """The route's parameter record of conv layer li (per-network forms cached)."""
        base = {"s": common.s, "bias": common.bias, "noise": common.noise}
        if plan.route == "tied":
            return TiedParams(**base, k=k, a=a)
        if plan.route == "reference":
            if self.config.conv_weights == "gaussian":
                weight = torch.stack([n[f"weight{li}"] for n in nets])[group_of]
            else:  # per image: a_o (or a_oi) times the chosen filters
                f = self._bank.to(common.s.device)[k]  # (B, C_in, 3, 3) or (B, C_out, C_in, 3, 3)
                if f.dim() == 4:
                    f = f[:, None].expand(-1, layer.c_out, -1, -1, -1)
                amp = a if a.dim() == 3 else a[:, :, None]
                weight = amp[..., None, None] * f
            return DenseParams(**base, weight=weight)
        net, dtype = nets[0], plan.dtype  # shared route: one network in this batch
        shared = net[f"weight{li}"]
        if f"wsq{li}" not in net:  # demodulation's sum of squares, per network
            net[f"wsq{li}"] = shared.square().sum(dim=(2, 3))
        algorithm = plan.algorithms[li]
        key = f"{algorithm}{li}/{dtype}/{plan.memory_format}"
        if algorithm != "direct" and key not in net:
            if algorithm == "winograd":
                net[key] = (transform_up_weight(shared, dtype, up_tile(layer.res // 2))
                            if layer.up else transform_weight(
                                shared, winograd_plan("same", WINOGRAD_TILE), dtype))
            elif algorithm == "fold":
                net[key] = fold_weight(shared).to(dtype=dtype, memory_format=plan.memory_format)
            else:  # "parity"
                net[key] = parity_kernels(shared.to(dtype))
        return SharedParams(**base, weight=shared, weight_sq=net[f"wsq{li}"],
                            algorithm=algorithm, kernel=net.get(key))

    # ---- rendering ----------------------------------------------------------------------------
    def render(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        cfg = self.config
        dev = indices.device
        if indices.numel() == 1:  # BLAS/oneDNN pick other kernels for a batch of one: render two
            return self.render(indices.repeat(2), seed)[:1]
        plan = self.plan(dev)
        groups = indices // cfg.images_per_network
        uniq, group_of = torch.unique(groups, return_inverse=True)
        if plan.route == "shared" and uniq.numel() > 1:
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
        params = self._params(indices, seed, nets, group_of, plan)
        const = torch.stack([n["const"] for n in nets])[group_of]  # (B, C4, 4, 4)
        targets = ImageRandom(seed, indices, "stylegan/image/color").normal(6)
        pad = cfg.skip_padding
        if plan.route == "reference":
            raw = synthesize(const, self.layers, params, conv_reference, pad)
        elif plan.route == "tied":
            raw = synthesize_tied(const.to(plan.dtype), self.layers, params,
                                  self._bank.to(dev), self._buffer, fused=plan.fused,
                                  skip_padding=pad)
        else:  # channels-last on CUDA: cuDNN's native layout, no transposes around each conv
            x = const.to(dtype=plan.dtype, memory_format=plan.memory_format)
            raw = (synthesize_shared(x, self.layers, params, pad) if plan.fewer_passes
                   else synthesize(x, self.layers, params, conv_shared, pad))
        return self._color(raw, targets)

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
