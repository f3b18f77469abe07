"""Feature visualisations as an image generator: Feature vis. - Random and - Dead leaves.

Baradad et al. 2021 section 3.5 (Figure 2 q, r) and reference-implementation.md section 6: an
image is optimised from noise so that one unit, or the mean of two units, of a network's
penultimate layer (ResNet-50: the 2048 pooled outputs) fires strongly; the optimisation itself
(Fourier parameterisation, decorrelated colour, random views, Adam) is `noisevision.featvis`.

* ``featvis_random``: torchvision's ResNet-50 with its default initialisation (conv weights
  N(0, 2 / fan_out), batch norm the identity), drawn by ImageRandom(seed, i // images_per_network)
  (the reference uses one unseeded network per dataset).
* ``featvis_encoder``: any encoder `noisevision.probe.load` reads (a pretraining run folder, its
  encoder.pt, a released SmallAlexNet or MoCo v2 ResNet-50 file), set with
  ``--set encoder=RUN``. The config records the file's SHA-256, so a dataset regenerates (and
  `verify` passes) only with the same weights. Feature vis. - Dead leaves is this family on a
  MoCo v2 ResNet-50 pretrained on ``dead_leaves_shapes`` (README).

Per image i (ImageRandom(seed, i)): one unit, or with probability `pair_probability` two
distinct units, uniform over the layer's channels; the initial spectrum; every step's random view.

Deliberate deviations from the reference: units are drawn uniformly per image (the reference
enumerates all 2,048 single units, then pairs (i, j) in lexicographic order, so at 105,000
images the first unit of a pair is only ever 0..50); the objective is summed per image (the
reference divides by the batch's number of units, which makes the step depend on the batch);
64 steps by default instead of 128 (BENCHMARKS.md: on a random ResNet-50 at 128 px the objective
at 64 steps is 8x its initial value and 77% of its value at 128, at half the cost; `--set
steps=128` is the reference).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from noisevision import featvis
from noisevision.errors import UsageError, check
from noisevision.generators.base import (
    Generator,
    check_resolution,
    fixed_shapes,
    register_generator,
)
from noisevision.provenance import file_sha256
from noisevision.rng import ImageRandom

ARCHS = ("resnet50", "small_alexnet")


@dataclass(frozen=True)
class FeatVisConfig:
    resolution: int = 256  # output side, px (reference: 256 at both scales)
    # "random": a randomly initialised `arch`, a new one every `images_per_network` images;
    # else a pretraining run folder, its encoder.pt or a released encoder file
    encoder: str = "random"
    encoder_sha256: str = ""  # SHA-256 of the encoder file (filled in; another file is refused)
    arch: str = "resnet50"  # random networks: "resnet50" (paper) or "small_alexnet"
    width: float = 1.0  # random small_alexnet: channel multiplier (1 = the paper's encoder)
    images_per_network: int = 100_000  # random networks (reference: one for the whole dataset)
    layer: str = "features"  # the optimised layer; "features" = the probed (penultimate) layer
    # probability that an image optimises the mean of two units instead of one (reference at
    # 105,000 images: 102,952 pairs and 2,048 single units, 0.98)
    pair_probability: float = 0.98
    steps: int = 64  # Adam steps (reference: 128; see the module docstring)
    lr: float = 0.05  # Adam learning rate (reference: 0.05)
    stretch: bool = True  # per-image min-max stretch of the result (reference: yes)

    def __post_init__(self) -> None:
        check_resolution(self.resolution)
        check(isinstance(self.encoder, str), f"encoder must be a path or 'random', got "
              f"{self.encoder!r}")
        check(self.arch in ARCHS, f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        check(isinstance(self.width, (int, float)) and 0 < self.width <= 4,
              f"width must be a number in (0, 4], got {self.width!r}")
        for name, hi in (("images_per_network", 2**40), ("steps", 100_000)):
            v = getattr(self, name)
            check(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= hi,
                  f"{name} must be an integer in [1, {hi}], got {v!r}")
        check(isinstance(self.pair_probability, (int, float))
              and 0.0 <= self.pair_probability <= 1.0,
              f"pair_probability must be a number in [0, 1], got {self.pair_probability!r}")
        check(isinstance(self.lr, (int, float)) and 0 < self.lr <= 10,
              f"lr must be a number in (0, 10], got {self.lr!r}")
        check(isinstance(self.layer, str) and self.layer,
              f"layer must be a layer name, got {self.layer!r}")
        if self.encoder == "random":
            check(self.encoder_sha256 == "", "encoder_sha256 applies to an encoder file, not "
                  "to encoder=random")
            allowed = ("features",) + featvis.LAYERS[self.arch]
            check(self.layer in allowed, f"{self.arch} has no layer {self.layer!r} "
                  f"(allowed: {', '.join(allowed)})")
        elif self.encoder:
            digest = file_sha256(encoder_file(self.encoder))
            if not self.encoder_sha256:
                object.__setattr__(self, "encoder_sha256", digest)
            check(self.encoder_sha256 == digest,
                  f"encoder {self.encoder} has SHA-256 {digest[:16]}..., not the "
                  f"{str(self.encoder_sha256)[:16]}... this config was made with (allowed: "
                  "the same encoder file)")


def encoder_file(spec: str) -> Path:
    """The weights file of an encoder spec (a run folder holds encoder.pt); missing: one line."""
    path = Path(spec)
    file = path / "encoder.pt" if path.is_dir() else path
    check(file.is_file(), f"encoder {spec!r} does not exist (allowed: 'random', a pretraining "
          "run folder, its encoder.pt, or a released .pth encoder file)")
    return file




def random_network(arch: str, seed: int, group: int, device: torch.device, *,
                   width: float = 1.0, input_size: int = 64) -> nn.Module:
    """A randomly initialised encoder whose weights are a pure function of (seed, group).

    Built on the meta device (torch's global RNG is never touched), then filled: ResNet-50 conv
    weights N(0, 2 / fan_out) (torchvision's kaiming_normal_, mode fan_out), SmallAlexNet
    weights N(0, 0.02) (the reference init); biases 0; batch norm weight 1, bias 0, running
    mean 0, running variance 1."""
    from noisevision.ssl.encoders import build_encoder

    kwargs = {"width": width, "input_size": input_size} if arch == "small_alexnet" else {}
    with torch.device("meta"):
        model = build_encoder(arch, **kwargs)
    model = model.to_empty(device=device)
    rnd = ImageRandom(seed, torch.tensor([group], device=device), f"featvis/net/{arch}")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                fan_out = p.shape[0] * p[0, 0].numel()
                std = (2.0 / fan_out) ** 0.5 if arch == "resnet50" else 0.02
                p.copy_(rnd.child(name).normal16(p.numel())[0].view_as(p) * std)
            else:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
        for name, b in model.named_buffers():
            b.fill_(1 if name.endswith("running_var") else 0)
    return featvis.prepare(model)


_NETWORKS: OrderedDict = OrderedDict()  # random networks, least recently used dropped
_NETWORKS_LOCK = threading.Lock()


class FeatVis(Generator):
    """Images optimised to excite one or two units of a random or pretrained network."""

    # an optimisation: last-bit differences between thread counts grow over the Adam steps
    thread_sensitive = True
    config_cls = FeatVisConfig
    cheap_settings = {"steps": 2}  # tests: 2 Adam steps (ResNet-50 takes ~0.1 s a step here)

    def __init__(self, config: FeatVisConfig, name: str | None = None) -> None:
        super().__init__(config, name)
        self._models: dict = {}  # device -> the loaded encoder file
        if config.encoder not in ("random", ""):
            model = self._loaded(torch.device("cpu"))
            featvis.resolve_layer(model, config.layer)  # unknown layer: one line now
            self._check_input_size(model)

    def _check_input_size(self, model: nn.Module) -> None:
        size = getattr(model, "arch_kwargs", {}).get("input_size")
        layer = featvis.resolve_layer(model, self.config.layer)[0]
        if size is not None and layer.startswith("fc"):
            check(self.config.resolution == size,
                  f"layer {layer} of this SmallAlexNet needs resolution {size} (its input "
                  f"size), got {self.config.resolution} (allowed: {size}, or a conv layer)")

    def default_batch_size(self, device: torch.device) -> int:
        if device.type == "cuda":  # a ResNet-50 backward at 128 px: ~20 MiB per image in bf16
            return 256 if self.config.resolution <= 128 else 64
        return 4  # optimised one at a time on CPU anyway

    def _loaded(self, device: torch.device) -> nn.Module:
        key = ("file", str(device))
        if key not in self._models:
            from noisevision.probe.load import load_probe_encoder

            model, _ = load_probe_encoder(str(encoder_file(self.config.encoder)), device=device)
            self._models[key] = self._for_device(featvis.prepare(model), device)
        return self._models[key]

    @staticmethod
    def _for_device(model: nn.Module, device: torch.device) -> nn.Module:
        return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model

    def _model(self, seed: int, group: int, device: torch.device) -> nn.Module:
        cfg = self.config
        if cfg.encoder != "random":
            return self._loaded(device)
        # shared by every generator of this process (a ResNet-50 takes seconds to draw)
        key = (cfg.arch, cfg.width, cfg.resolution if cfg.arch == "small_alexnet" else 0, seed,
               group, str(device))
        with _NETWORKS_LOCK:
            if key not in _NETWORKS:
                net = random_network(cfg.arch, seed, group, device, width=cfg.width,
                                     input_size=cfg.resolution)
                _NETWORKS[key] = self._for_device(net, device)
                while len(_NETWORKS) > 2:
                    _NETWORKS.popitem(last=False)
            _NETWORKS.move_to_end(key)
            return _NETWORKS[key]

    def render(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        # the optimisation needs autograd, also when a caller renders under inference_mode
        with torch.inference_mode(False), torch.enable_grad():
            return self._render(indices.clone(), seed)

    def _render(self, indices: torch.Tensor, seed: int) -> torch.Tensor:
        cfg = self.config
        if not cfg.encoder:
            raise UsageError(f"{self.name} needs an encoder: --set encoder=RUN (a pretraining "
                             "run folder, its encoder.pt or a released encoder file)")
        dev = indices.device
        groups = (indices // cfg.images_per_network if cfg.encoder == "random"
                  else torch.zeros_like(indices))
        uniq, group_of = torch.unique(groups, return_inverse=True)
        out = torch.empty(indices.numel(), 3, cfg.resolution, cfg.resolution, device=dev)
        for g in range(uniq.numel()):
            mask = group_of == g
            part = indices[mask]
            if fixed_shapes(dev) and part.numel() < indices.numel():  # the batch's shape
                part = torch.cat([part, part[-1:].expand(indices.numel() - part.numel())])
            model = self._model(seed, int(uniq[g]), dev)
            out[mask] = self._render_group(model, part, seed)[:int(mask.sum())]
        return out

    def _render_group(self, model: nn.Module, indices: torch.Tensor, seed: int) -> torch.Tensor:
        cfg, dev = self.config, indices.device
        layer, module, channels = featvis.resolve_layer(model, cfg.layer)
        rnd = ImageRandom(seed, indices, "featvis/image")
        units = draw_units(rnd.child("units"), channels, cfg.pair_probability)
        spectrum = featvis.initial_spectrum(rnd.child("init"), cfg.resolution)
        views = featvis.draw_transforms(rnd.child("views"), cfg.steps)
        # CPU: one image at a time (oneDNN and BLAS pick kernels by batch size); CUDA: batched
        chunk = indices.numel() if dev.type == "cuda" else 1
        parts = []
        for i in range(0, indices.numel(), chunk):
            objective = featvis.Objective(model, module, units[i:i + chunk])
            parts.append(featvis.optimise(objective, spectrum[i:i + chunk], views[i:i + chunk],
                                          lr=cfg.lr, autocast=dev.type == "cuda"))
        images = torch.cat(parts)
        return featvis.stretch(images) if cfg.stretch else images


def draw_units(rnd: ImageRandom, channels: int, pair_probability: float) -> torch.Tensor:
    """(B, 2) int64: a unit uniform in 0..channels-1 and, with probability `pair_probability`,
    a second distinct unit (else -1); three draws per image."""
    pair = rnd.uniform(1)[:, 0] < pair_probability
    first = rnd.integers(0, channels, 1)[:, 0]
    second = rnd.integers(0, max(channels - 1, 1), 1)[:, 0]
    second = second + (second >= first).long()
    second = torch.where(pair & (channels > 1), second, torch.full_like(second, -1))
    return torch.stack([first, second], dim=1)


class FeatVisEncoder(FeatVis):
    """The same family on an encoder file. Its cheap settings (tests, contact sheets without a
    file) visualise a random narrow SmallAlexNet instead of a file."""

    cheap_settings = {"steps": 2, "encoder": "random", "arch": "small_alexnet", "width": 0.125}


register_generator("featvis_random", FeatVis,
                   "feature visualisations of a random-init ResNet-50's pooled units (Feature "
                   "vis. - Random)")
register_generator("featvis_encoder", FeatVisEncoder,
                   "feature visualisations of a trained encoder's units: --set encoder=RUN "
                   "(Feature vis. - Dead leaves on a dead-leaves MoCo run)", encoder="")

__all__ = ["FeatVis", "FeatVisConfig", "FeatVisEncoder", "draw_units", "random_network",
           "file_sha256", "encoder_file"]
