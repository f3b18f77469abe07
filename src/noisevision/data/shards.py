"""WebDataset tar shards of a generated dataset: DIR/manifest.json and DIR/shard-<k>.tar.

`generate --layout shards --shard-size S` writes shard k with the images of the fixed index range
[start + k*S, start + min((k+1)*S, count)), each sample as two tar members in index order:

* ``<index, 9 digits>.json``: {"generator", "config_hash", "seed", "index", "dataset"} (the
  dataset hash covers the manifest's identity, so shards of two datasets never mix unnoticed);
* ``<index, 9 digits>.png`` (or ``.jpg``): the image, the same bytes the folder layout writes.

Any WebDataset reader (webdataset, Ray Data's read_webdataset, litdata) opens the shards as they
are. Shards are written by the `webdataset` package's TarWriter under a hidden temporary name
and renamed, so a killed run leaves only complete shards and rerunning the same command resumes
by shard; member times and owners are fixed, so the same images give the same shard bytes.

A complete shard ends in the tar end-of-archive blocks (a cheap check of the last 1,024 bytes,
`tail_ok`, catches a truncated copy); reading checks every member against the index range.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from noisevision.data.encode import discard_temporary, raise_write_error
from noisevision.data.layout import SHARD_RE, SHARD_TMP_RE
from noisevision.data.manifest import Manifest, normalise
from noisevision.errors import UsageError

DEFAULT_SHARD_SIZE = 1000  # images per shard: 7-50 MB at 128 px PNG, 1,300 shards for 1.3M
INSTALL_HINT = "pip install 'noisevision[shards]' (or scripts/setup.sh)"
TAR_MTIME = 0              # fixed member time, owner and mode: reproducible shard bytes
TAR_OWNER = "noisevision"


def webdataset():
    """The `webdataset` package (the `shards` extra); one clear line when it is missing."""
    try:
        import webdataset as wds
    except ImportError:
        raise UsageError(f"the shards layout needs the `webdataset` package: {INSTALL_HINT}") \
            from None
    return wds


def shard_name(k: int) -> str:
    return f"shard-{k:06d}.tar"


def sample_key(index: int) -> str:
    return f"{index:09d}"


def config_hash(config: dict) -> str:
    """16 hex digits of sha256 over the generator config (JSON, sorted keys)."""
    text = json.dumps(normalise(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_hash(m: Manifest) -> str:
    """16 hex digits over the manifest's identity: equal exactly for one dataset's shards."""
    text = json.dumps(normalise(m.identity()), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ShardPlan:
    """Which indices shard k holds: a pure function of (start, count, shard size)."""

    start: int
    count: int
    size: int

    @classmethod
    def of(cls, m: Manifest) -> ShardPlan:
        if m.layout != "shards" or not m.shard_size:
            raise UsageError("not a shards dataset (its manifest's layout is "
                             f"{m.layout!r})")
        return cls(m.start, m.count, m.shard_size)

    @property
    def num(self) -> int:
        return -(-self.count // self.size)

    def bounds(self, k: int) -> tuple[int, int]:
        lo = self.start + k * self.size
        return lo, min(lo + self.size, self.start + self.count)

    def length(self, k: int) -> int:
        lo, hi = self.bounds(k)
        return hi - lo

    def block(self, part: int, parts: int) -> range:
        """Shards of block `part` of `parts` (contiguous; sizes differ by at most one)."""
        return range(part * self.num // parts, (part + 1) * self.num // parts)


def describe(path: Path, plan: ShardPlan, k: int) -> str:
    lo, hi = plan.bounds(k)
    return f"shard {path} (indices {lo}..{hi - 1})"


class ShardDamaged(UsageError):
    """A truncated or corrupt shard: one line naming it and its index range; `.why` alone."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def shard_error(path: Path, plan: ShardPlan, k: int, why: str) -> ShardDamaged:
    return ShardDamaged(f"{describe(path, plan, k)} is truncated or corrupt: {why}; delete it "
                        "and rerun the same `noisevision generate` command to write it again",
                        why)


# ---------------------------------------------------------------- writing

def sample_json(m: Manifest, index: int, chash: str, dhash: str) -> bytes:
    return json.dumps({"generator": m.generator, "config_hash": chash, "seed": m.seed,
                       "index": index, "dataset": dhash}, sort_keys=True).encode()


def write_shard(path: Path, m: Manifest, indices: list[int], images: list[bytes]) -> None:
    """Write one shard (encoded images in index order) atomically: temporary name, rename."""
    wds = webdataset()
    chash, dhash = config_hash(m.config), dataset_hash(m)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = None
    try:
        with open(tmp, "wb") as fh:
            writer = wds.TarWriter(fh, encoder=False, mtime=TAR_MTIME, user=TAR_OWNER,
                                   group=TAR_OWNER, mode=0o444)
            for i, data in zip(indices, images, strict=True):
                writer.write({"__key__": sample_key(i), "json": sample_json(m, i, chash, dhash),
                              m.format: data})
            writer.close()
            writer = None
        os.replace(tmp, path)
    except OSError as exc:
        if writer is not None:  # a failed write: neither the tar file nor its "w|" stream
            writer.tarstream.closed = True  # may flush into the closed file when collected
            stream = writer.tarstream.fileobj  # (a traceback printed after the one line)
            if type(stream).__name__ == "_Stream":
                stream.closed = True
        discard_temporary(tmp)
        raise_write_error(path, exc)
        raise


def tail_ok(path: str | os.PathLike) -> bool:
    """A regular file of whole tar blocks that ends in the end-of-archive blocks (1,024 zero
    bytes; no member header or image ends so): what a truncated copy lacks."""
    try:
        st = os.stat(path, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_size < 1536 or st.st_size % 512:
            return False
        with open(path, "rb") as fh:
            fh.seek(-1024, os.SEEK_END)
            return fh.read(1024) == bytes(1024)
    except OSError:
        return False


def scan_shards(root: Path) -> tuple[dict[int, Path], list[str]]:
    """({k: path} of shard files, names of other .tar files) at the top of `root`."""
    shards, foreign = {}, []
    with os.scandir(root) as it:
        for e in it:
            m = SHARD_RE.match(e.name)
            if m:
                shards[int(m.group(1))] = Path(e.path)
            elif e.name.endswith(".tar") and not e.name.startswith("."):
                foreign.append(e.name)
    return shards, sorted(foreign)


def complete_shards(root: Path, plan: ShardPlan) -> tuple[set[int], set[int]]:
    """(shards whose file passes `tail_ok`, shards whose file is there but does not)."""
    found, _ = scan_shards(root)
    done = {k for k, p in found.items() if k < plan.num and tail_ok(p)}
    return done, {k for k in found if k < plan.num and k not in done}


def remove_stale_temporaries(root: Path, ks: set[int] | range | None = None) -> int:
    """Delete the temporaries a killed run left (of shards `ks`, or all); returns how many."""
    n = 0
    with os.scandir(root) as it:
        stale = [e for e in it if SHARD_TMP_RE.match(e.name) and not e.is_dir()]
    for e in stale:
        if ks is None or int(e.name[len(".shard-"):].split(".")[0]) in ks:
            Path(e.path).unlink(missing_ok=True)
            n += 1
    return n


# ---------------------------------------------------------------- reading

def _tar_members(fh, url: str) -> Iterator[dict]:
    wds = webdataset()
    for f in wds.tariterators.tar_file_iterator(fh):
        f["__url__"] = url
        yield f


def read_shard(path: Path, plan: ShardPlan, k: int, fmt: str,
               keep: set[int] | None = None) -> Iterator[tuple[int, bytes, bytes]]:
    """(index, json bytes, image bytes) of shard k in index order (`keep`: only those indices),
    read by webdataset's tar iterator; every member is checked against the index range, and any
    damage raises UsageError naming the shard and its range (one line)."""
    wds = webdataset()
    lo, hi = plan.bounds(k)
    expected = lo
    try:
        with open(path, "rb") as fh:
            for s in wds.tariterators.group_by_keys(_tar_members(fh, str(path))):
                key = s.get("__key__", "")
                if key != sample_key(expected):
                    raise shard_error(path, plan, k, f"sample {key!r} where "
                                      f"{sample_key(expected)!r} was expected (a shard of "
                                      "another dataset?)" if expected < hi else
                                      f"sample {key!r} past its last index {hi - 1}")
                if "json" not in s or fmt not in s:
                    raise shard_error(path, plan, k, f"sample {key} lacks its .json or .{fmt}")
                if keep is None or expected in keep:
                    yield expected, s["json"], s[fmt]
                expected += 1
    except UsageError:
        raise
    except FileNotFoundError:
        raise UsageError(f"{describe(path, plan, k)} is missing: rerun the same `noisevision "
                         "generate` command to write it") from None
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError) as exc:
        raise shard_error(path, plan, k, " ".join(str(exc.args[0] if exc.args else exc)
                                                  .split())[:200] or type(exc).__name__) \
            from None
    if expected != hi:
        raise shard_error(path, plan, k, f"it ends after {expected - lo} of its {hi - lo} "
                          "images")


def first_sample_meta(path: Path, plan: ShardPlan, k: int, fmt: str) -> dict:
    """The .json of shard k's first sample (reads only the start of the file)."""
    wds = webdataset()
    try:
        with open(path, "rb") as fh:
            for s in wds.tariterators.group_by_keys(_tar_members(fh, str(path))):
                if "json" not in s:
                    break
                return json.loads(s["json"])
    except (tarfile.TarError, EOFError, OSError, ValueError, KeyError):
        pass
    raise shard_error(path, plan, k, "its first sample cannot be read")


def decode_image(data: bytes, fmt: str, path: Path, plan: ShardPlan, k: int,
                 index: int) -> np.ndarray:
    """Image bytes -> (H, W, 3) uint8, decoded by PIL as the folder reader and `verify` do."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            arr = np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except Exception as exc:  # noqa: BLE001  (any decoder failure: one line naming the shard)
        raise shard_error(path, plan, k, f"image {sample_key(index)}.{fmt} does not decode "
                          f"({' '.join(str(exc).split())[:120] or type(exc).__name__})") \
            from None
    return arr


# ---------------------------------------------------------------- a dataset of shards

def is_shards_folder(path: str | os.PathLike) -> bool:
    """Whether `path` is a shards dataset: its manifest says so, or (no manifest) it holds .tar
    files and neither images nor subfolders (a folder of images with a stray archive is not)."""
    root = Path(path)
    if not root.is_dir():
        return False
    mpath = root / "manifest.json"
    if mpath.is_file():
        try:
            return json.loads(mpath.read_text()).get("layout") == "shards"
        except (OSError, ValueError, AttributeError):
            return False
    try:
        with os.scandir(root) as it:
            entries = [(e.name.lower(), e.is_dir()) for e in it if not e.name.startswith(".")]
    except OSError:
        return False
    images = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm", ".tif", ".tiff")
    return (any(n.endswith(".tar") for n, _ in entries)
            and not any(d or n.endswith(images) for n, d in entries))


@dataclass
class ShardSet:
    """A shards dataset, checked: its manifest, plan and the path of every shard."""

    root: Path
    manifest: Manifest
    plan: ShardPlan
    paths: dict[int, Path]

    @property
    def count(self) -> int:
        return self.plan.count

    @property
    def fmt(self) -> str:
        return self.manifest.format

    def read(self, k: int, keep: set[int] | None = None):
        return read_shard(self.paths[k], self.plan, k, self.fmt, keep)

    def decode(self, k: int, index: int, data: bytes) -> np.ndarray:
        """(H, W, 3) uint8."""
        return decode_image(data, self.fmt, self.paths[k], self.plan, k, index)


def open_shards(root: str | os.PathLike, *, complete: bool = True) -> ShardSet:
    """Check a shards folder before any image is read; UsageError (one line) for a folder
    without a shards manifest, shards of another dataset among its own, a missing shard
    (`complete`; else only the present ones are listed) or a truncated one."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"shards folder {str(root)!r} does not exist")
    if not (root / "manifest.json").is_file():
        raise UsageError(f"{root} holds .tar files but no manifest.json: noisevision reads shards "
                         "that `noisevision generate --layout shards` wrote")
    m = Manifest.read(root)
    plan = ShardPlan.of(m)
    found, foreign = scan_shards(root)
    extra = sorted(k for k in found if k >= plan.num)
    if foreign or extra:
        name = foreign[0] if foreign else shard_name(extra[0])
        raise UsageError(f"{root} holds shards of two different datasets: {name} is not one of "
                         f"the {plan.num} shards of its manifest ({m.generator}, indices "
                         f"{m.start}..{m.stop - 1}); keep one dataset per folder")
    missing = [k for k in range(plan.num) if k not in found]
    if missing and complete:
        k = missing[0]
        raise UsageError(f"{root} is incomplete: {len(missing)} of {plan.num} shards missing, "
                         f"first {describe(root / shard_name(k), plan, k)}; rerun the same "
                         "`noisevision generate` command to write them")
    want = dataset_hash(m)
    for k, p in sorted(found.items()):
        if not tail_ok(p):
            raise shard_error(p, plan, k, "it does not end in the tar end-of-archive blocks")
        meta = first_sample_meta(p, plan, k, m.format)
        if meta.get("dataset") != want or meta.get("index") != plan.bounds(k)[0]:
            raise UsageError(f"{root} holds shards of two different datasets: {p.name} was "
                             f"written for another manifest (its first sample: generator "
                             f"{meta.get('generator')!r}, seed {meta.get('seed')!r}, index "
                             f"{meta.get('index')!r}); keep one dataset per folder")
    return ShardSet(root, m, plan, found)


def index_batches(shards: ShardSet, n: int, batch: int,
                  workers: int = 1) -> Iterator[torch.Tensor]:
    """The first n images of the dataset's present shards in index order, as uint8 (B, 3, H, W)
    batches; `workers` threads decode (libpng and PIL release the interpreter lock)."""
    from concurrent.futures import ThreadPoolExecutor

    def samples() -> Iterator[tuple[int, int, bytes]]:
        left = n
        for k in sorted(shards.paths):
            for i, _, data in shards.read(k):
                if left == 0:
                    return
                yield k, i, data
                left -= 1

    def decode(item: tuple[int, int, bytes]) -> np.ndarray:
        return shards.decode(*item)

    pending: list[tuple[int, int, bytes]] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for item in samples():
            pending.append(item)
            if len(pending) == batch:
                yield to_batch(list(pool.map(decode, pending)))
                pending = []
        if pending:
            yield to_batch(list(pool.map(decode, pending)))


def to_batch(arrays: list[np.ndarray], shared: bool = False) -> torch.Tensor:
    """(H, W, 3) uint8 arrays -> one contiguous (B, 3, H, W) uint8 tensor, filled by numpy (one
    thread: no intra-op threads that stall each other on a busy machine); `shared`: allocated
    in shared memory, so a DataLoader worker sends it without another copy."""
    h, w = arrays[0].shape[:2]
    shape = (len(arrays), 3, h, w)
    if shared:  # allocated in shared memory as torch's default_collate does (no copy later)
        proto = torch.empty(0, dtype=torch.uint8)
        out = proto.new(proto._typed_storage()._new_shared(math.prod(shape), device="cpu"))
        out = out.resize_(shape)
    else:
        out = torch.empty(shape, dtype=torch.uint8)
    view = out.numpy()
    for j, a in enumerate(arrays):
        view[j] = a.transpose(2, 0, 1)
    return out
