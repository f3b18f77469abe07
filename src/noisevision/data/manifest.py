"""manifest.json: everything needed to regenerate any image of a dataset, byte for byte."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from noisevision.errors import UsageError

MANIFEST = "manifest.json"
FORMAT_TAG = "noisevision-dataset-v1"

# Fields that define the dataset's content; two runs agreeing on these may fill one folder.
IDENTITY_FIELDS = ("generator", "config", "seed", "start", "count", "resolution", "format",
                   "jpeg_quality", "jpeg_subsampling", "batch_size", "layout", "shard_size")
LAYOUTS = ("folder", "shards")  # one file per image in chunk folders, or WebDataset tar shards


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
    # JPEG chroma subsampling, "4:4:4" or "4:2:0" (None for PNG; JPEG manifests written before
    # the field existed are 4:4:4, what those versions wrote)
    jpeg_subsampling: str | None = None
    device: str = "cpu"            # device type that rendered the images (bit-exact on it)
    batch_size: int | None = None  # CUDA: the render batch shape (bytes depend on it); CPU: None
    # "folder" (DIR/<chunk>/<index>.<ext>, data/layout.py) or "shards" (DIR/shard-<k>.tar,
    # data/shards.py); manifests written before the field existed are folders
    layout: str = "folder"
    shard_size: int | None = None  # shards: images per shard (shard k = a fixed index range)
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
        return [k for k in IDENTITY_FIELDS if normalise(a[k]) != normalise(b[k])]

    @classmethod
    def create(cls, **kwargs: Any) -> Manifest:
        from noisevision.provenance import git_sha, versions

        return cls(versions=versions(), git_sha=git_sha(),
                   created=datetime.now(timezone.utc).isoformat(timespec="seconds"), **kwargs)

    def write(self, root: Path) -> None:
        from noisevision.data.encode import write_atomic

        data = asdict(self)
        if self.layout == "folder":  # folder manifests stay as earlier versions wrote them
            del data["layout"], data["shard_size"]
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        write_atomic(Path(root) / MANIFEST, text.encode())

    @classmethod
    def read(cls, root: Path) -> Manifest:
        path = Path(root) / MANIFEST
        if path.is_symlink():
            raise UsageError(f"{path} is a symbolic link: a dataset's manifest must be its own "
                             "file")
        if not path.is_file():
            raise UsageError(f"{root} holds no {MANIFEST}: not a dataset written by "
                             "`noisevision generate`")
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"corrupt manifest {path}: not readable JSON ({exc})") from None
        return cls.from_dict(data, path)

    @classmethod
    def from_dict(cls, data: Any, path: Path | str = MANIFEST) -> Manifest:
        """Validate every field (type and range); UsageError names the first bad field."""
        def bad(why: str) -> UsageError:
            return UsageError(f"corrupt manifest {path}: {why}")

        if not isinstance(data, dict):
            raise bad(f"expected a JSON object, found {type(data).__name__}")
        if data.get("format_tag") != FORMAT_TAG:
            raise bad(f"field 'format_tag' is {data.get('format_tag')!r}, expected "
                      f"{FORMAT_TAG!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise bad(f"unknown field(s) {', '.join(map(repr, unknown))}")
        for name in ("generator", "config", "seed", "start", "count", "resolution", "format"):
            if name not in data:
                raise bad(f"field {name!r} is missing")
        for name, (kinds, ok, allowed) in _FIELD_RULES.items():
            if name not in data:
                continue
            v = data[name]
            if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds) \
                    or not ok(v):
                raise bad(f"field {name!r} is {v!r} (allowed: {allowed})")
        if data["format"] == "jpg" and data.get("jpeg_quality") is None:
            raise bad("field 'jpeg_quality' is missing for a JPEG dataset")
        if data["format"] == "jpg" and data.get("jpeg_subsampling") is None:
            data = {**data, "jpeg_subsampling": "4:4:4"}  # written before the field existed
        if (data.get("layout") == "shards") != (data.get("shard_size") is not None):
            raise bad("field 'shard_size' must be given for a shards layout and only for it")
        if data["start"] + data["count"] > MAX_INDEX:
            raise bad(f"fields 'start' + 'count' pass the last index {MAX_INDEX - 1}")
        if data["config"].get("resolution", data["resolution"]) != data["resolution"]:
            raise bad("field 'resolution' disagrees with config.resolution")
        from noisevision.generators.base import complete_config

        # options added to the family since it was written: the values that reproduce it
        data = {**data, "config": complete_config(data["generator"], data["config"])}
        return cls(**data)


MAX_INDEX = 2**40


def _int_in(lo: int, hi: int):
    return lambda v: lo <= v <= hi


_FIELD_RULES: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "generator": ((str,), lambda v: bool(v), "a generator name"),
    "config": ((dict,), lambda v: True, "a JSON object of generator options"),
    "seed": ((int,), _int_in(0, 2**64 - 1), "an integer in 0..2**64-1"),
    "start": ((int,), _int_in(0, MAX_INDEX - 1), "an integer in 0..2**40-1"),
    "count": ((int,), _int_in(1, MAX_INDEX), "an integer in 1..2**40"),
    "resolution": ((int,), _int_in(16, 4096), "an integer in 16..4096"),
    "format": ((str,), lambda v: v in ("png", "jpg"), "png or jpg"),
    "jpeg_quality": ((int, type(None)), lambda v: v is None or 1 <= v <= 100,
                     "null or an integer in 1..100"),
    "jpeg_subsampling": ((str, type(None)), lambda v: v in (None, "4:4:4", "4:2:0"),
                         "null, 4:4:4 or 4:2:0"),
    "device": ((str,), lambda v: v in ("cpu", "cuda"), "cpu or cuda"),
    "batch_size": ((int, type(None)), lambda v: v is None or 1 <= v <= 65536,
                   "null or an integer in 1..65536"),
    "layout": ((str,), lambda v: v in LAYOUTS, "folder or shards"),
    "shard_size": ((int, type(None)), lambda v: v is None or 1 <= v <= 1_000_000,
                   "null or an integer in 1..1000000"),
    "versions": ((dict,), lambda v: True, "a JSON object"),
    "git_sha": ((str, type(None)), lambda v: True, "null or a string"),
    "created": ((str,), lambda v: True, "a string"),
}


def normalise(value: Any) -> Any:
    """JSON round trip, so tuples and lists compare equal."""
    return json.loads(json.dumps(value, sort_keys=True))
