"""manifest.json: everything needed to regenerate any image of a dataset, byte for byte."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from noisevision.errors import UsageError

MANIFEST = "manifest.json"
FORMAT_TAG = "noisevision-dataset-v1"

# Fields that define the dataset's content; two runs agreeing on these may fill one folder.
IDENTITY_FIELDS = ("generator", "config", "seed", "start", "count", "resolution", "format",
                   "jpeg_quality", "batch_size")


def git_sha() -> str | None:
    """The git commit of the noisevision source tree, when it is a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


@dataclass
class Manifest:
    generator: str                 # registered generator name
    config: dict[str, Any]         # the generator's full resolved config
    seed: int                      # root seed
    start: int                     # first image index
    count: int                     # number of images: indices [start, start + count)
    resolution: int                # image side in pixels
    format: str                    # "png" or "jpg"
    jpeg_quality: int | None       # JPEG quality (None for PNG)
    device: str = "cpu"            # device type that rendered the images (bit-exact on it)
    batch_size: int | None = None  # CUDA: the render batch shape (bytes depend on it); CPU: None
    versions: dict[str, str] = field(default_factory=dict)
    git_sha: str | None = None
    created: str = ""
    format_tag: str = FORMAT_TAG

    @property
    def stop(self) -> int:
        return self.start + self.count

    def identity(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in IDENTITY_FIELDS}

    def differences(self, other: Manifest) -> list[str]:
        a, b = self.identity(), other.identity()
        return [k for k in IDENTITY_FIELDS if _normalise(a[k]) != _normalise(b[k])]

    @classmethod
    def create(cls, **kwargs: Any) -> Manifest:
        import noisevision

        versions = {"noisevision": noisevision.__version__, "torch": torch.__version__}
        return cls(versions=versions, git_sha=git_sha(),
                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"), **kwargs)

    def write(self, root: Path) -> None:
        from noisevision.data.encode import write_atomic

        text = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        write_atomic(Path(root) / MANIFEST, text.encode())

    @classmethod
    def read(cls, root: Path) -> Manifest:
        path = Path(root) / MANIFEST
        if not path.is_file():
            raise UsageError(f"{root} holds no {MANIFEST}: not a dataset written by "
                             "`noisevision generate`")
        try:
            data = json.loads(path.read_text())
            if data.get("format_tag") != FORMAT_TAG:
                raise ValueError(f"format_tag {data.get('format_tag')!r} != {FORMAT_TAG!r}")
            return cls(**data)
        except (ValueError, TypeError) as exc:
            raise UsageError(f"corrupt manifest {path}: {exc}") from None


def _normalise(value: Any) -> Any:
    """JSON round trip, so tuples and lists compare equal."""
    return json.loads(json.dumps(value, sort_keys=True))
