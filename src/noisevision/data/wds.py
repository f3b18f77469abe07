"""WebDataset shards that noisevision did not write: real images kept as tar shards.

Large image sets are often kept as tar shards rather than millions of files (ImageNet as
WebDataset, timm's `*-wds` datasets): each sample is a group of tar members sharing a key,
`<key>.jpg` (or png, webp, ...), and for labelled sets `<key>.cls` holding the class index as
text. The shards are indexed once (member headers only, plus the small `.cls` members): each
image is then read by seeking to its bytes, so a split is a map-style list that any number of
DataLoader workers read in any order. A truncated shard (no end-of-archive blocks, or a member
reaching past the end of the file), a sample without an image (or label, where one is needed),
or a label that is not a class index is refused with one line naming the shard and the sample.

Users: `pretrain --data`, `analyze` and `study --families` (ssl/sources.folder_items: a folder
source), and `probe` (probe/shard_tasks.py: a labelled task). noisevision's own shards
(`generate --layout shards`, data/shards.py) have a manifest and are read there.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

from noisevision.errors import UsageError

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp", "ppm", "bmp", "tif", "tiff")


def has_shards(split_dir: Path) -> bool:
    return split_dir.is_dir() and any(split_dir.glob("*.tar"))


@dataclass(frozen=True)
class Member:
    """Where one sample's image bytes lie: the shard, the byte offset and length, its key."""

    shard: str
    offset: int
    size: int
    key: str

    def __str__(self) -> str:
        return f"{self.key!r} in shard {self.shard}"


def read_member(m: Member):
    """The sample's image as (H, W, 3) uint8 (read_rgb's decoding and one-line errors)."""
    from noisevision.data.encode import decode_bytes

    with open(m.shard, "rb") as fh:
        fh.seek(m.offset)
        data = fh.read(m.size)
    if len(data) != m.size:
        raise UsageError(f"shard {m.shard} ends inside sample {m.key!r}: truncated since it "
                         "was indexed")
    return decode_bytes(data, str(m))


def read_item(item):
    """(H, W, 3) uint8 of an image file path or a shard `Member`: the one reader of folder
    sources, probe tasks and analyze (read_rgb's decoding and one-line errors either way)."""
    if isinstance(item, Member):
        return read_member(item)
    from noisevision.data.encode import read_rgb

    return read_rgb(item)


def _split_key(name: str) -> tuple[str, str]:
    """WebDataset's convention: the key is the path up to the first dot of the file name."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower() if dot else ""


def index_split(split_dir: Path, labels_needed: bool = True) -> tuple[list[Member], list[int]]:
    """Every sample of the folder's shards (sorted by shard name, tar order within one) and its
    label (-1 for all where `labels_needed` is False: images only, e.g. analyze's sources)."""
    members: list[Member] = []
    labels: list[int] = []
    for shard in sorted(split_dir.glob("*.tar")):
        m, la = index_shard(shard, labels_needed)
        members += m
        labels += la
    if not members:
        raise UsageError(f"{split_dir} holds no samples in its .tar shards")
    return members, labels


def index_shard(shard: Path, labels_needed: bool = True) -> tuple[list[Member], list[int]]:
    """One shard's samples and labels (see index_split); a damaged shard is one line."""
    from noisevision.data.shards import tail_ok

    members: list[Member] = []
    labels: list[int] = []
    size = shard.stat().st_size
    if not tail_ok(shard):
        raise UsageError(f"shard {shard} is truncated or not a tar file (it lacks the "
                         "end-of-archive blocks): copy it again")
    try:
        with tarfile.open(shard, "r:") as tf:
            groups: dict[str, dict[str, tarfile.TarInfo]] = {}
            for info in tf.getmembers():
                if not info.isfile():
                    continue
                if info.offset_data + info.size > size:
                    raise UsageError(f"shard {shard} ends inside member {info.name!r}: "
                                     "truncated; copy it again")
                key, ext = _split_key(info.name)
                groups.setdefault(key, {})[ext] = info
            for key, parts in groups.items():
                image = next((parts[e] for e in IMAGE_KEYS if e in parts), None)
                if image is None or (labels_needed and "cls" not in parts):
                    lacks = "image" if image is None else ".cls label"
                    raise UsageError(f"sample {key!r} in shard {shard} has no {lacks} "
                                     f"(found: {', '.join(sorted(parts)) or 'nothing'}; "
                                     f"allowed images: {', '.join(IMAGE_KEYS)})")
                label = _label(tf, parts["cls"], key, shard) if labels_needed else -1
                members.append(Member(str(shard), image.offset_data, image.size, key))
                labels.append(label)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise UsageError(f"shard {shard} cannot be read as a tar file "
                         f"({' '.join(str(exc).split()) or type(exc).__name__})") from None
    return members, labels


def _label(tf: tarfile.TarFile, info: tarfile.TarInfo, key: str, shard: Path) -> int:
    text = tf.extractfile(info).read().decode("utf-8", "replace")
    try:
        label = int(text.strip())
    except ValueError:
        label = -1
    if label < 0:
        raise UsageError(f"sample {key!r} in shard {shard} has label {text.strip()[:20]!r}: "
                         "a .cls member holds a class index, an integer >= 0")
    return label


def folder_items(source: str) -> list:
    """The images of a folder source, in order: files (scan_folder), or for WebDataset shards
    that noisevision did not write, their samples (Member); `read_item` decodes either."""
    if is_foreign_shards(source):
        return index_split(Path(source), labels_needed=False)[0]
    from noisevision.ssl.sources import scan_folder

    return scan_folder(source)


def is_foreign_shards(source: str) -> bool:
    """WebDataset shards that noisevision did not write (real images, say): no manifest, and
    their first sample's JSON is not one of generate's (a dataset that lost its manifest)."""
    from noisevision.data.shards import is_shards_folder

    root = Path(source)
    return (is_shards_folder(source) and not (root / "manifest.json").exists()
            and not _generated_samples(root))


def _generated_samples(root: Path) -> bool:
    """Whether the first shard's first JSON member is a sample record of `generate`."""
    import json
    import tarfile

    tars = sorted(root.glob("*.tar"))
    try:
        with tarfile.open(tars[0], "r:") as tf:
            for _, info in zip(range(8), tf, strict=False):
                if info.isfile() and info.name.endswith(".json"):
                    record = json.loads(tf.extractfile(info).read())
                    return isinstance(record, dict) and {"generator", "config_hash",
                                                         "dataset", "index"} <= set(record)
    except (IndexError, OSError, tarfile.TarError, ValueError, UnicodeDecodeError):
        return False
    return False
