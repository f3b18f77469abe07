"""Labelled real images to evaluate representations on (paper section 4: ImageNet-100, VTAB).

Three sources, all returning :class:`EvalTask` objects (a train split, a val split, class names):

* an ImageFolder tree ``DIR/{train,val}/<class>/<image>`` (ImageNet-100 as the paper, any VTAB
  task dumped to JPEG), and a *suite*: a folder of such trees, each capped at ``max_per_split``
  images per split (20,000 as the paper's VTAB protocol, drawn with a fixed seed);
* Fashion-MNIST from the Debian package ``dataset-fashion-mnist`` (real product photographs,
  10 classes, 28x28 gray, replicated to 3 channels);
* ``photo-crops``: a proxy natural-image task built from photographs that ship in Debian wallpaper
  packages. The label is *which photograph a crop came from*; train crops come from the first 60%
  of each photograph along its long axis and val crops from the last 35% (a 5% gap), so no val
  pixel was ever seen in training. It measures how well features capture the colour, texture and
  content statistics that tell natural scenes apart; it is not an object-recognition benchmark.

Datasets yield ``(image, label)`` with ``image`` a uint8 tensor (3, H, W); the probe applies the
paper's transforms (features.py). Nothing here downloads anything.
"""

from __future__ import annotations

import gzip
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from noisevision.errors import UsageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
                         "sneaker", "bag", "ankle-boot")
FASHION_MNIST_HINT = "install it with: apt-get install -y dataset-fashion-mnist"
BUILTIN_TASKS = ("fashion-mnist", "photo-crops")


class TensorImages(torch.utils.data.Dataset):
    """In-memory uint8 images (N, 3, H, W) with int64 labels (N,)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        assert images.dtype == torch.uint8 and images.ndim == 4 and images.shape[1] == 3
        assert labels.shape == (images.shape[0],)
        self.images, self.labels = images, labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


class FileImages(torch.utils.data.Dataset):
    """Image files (or shard members: data/wds.py) decoded on access; an unreadable or
    truncated one raises UsageError."""

    def __init__(self, paths: list, labels: list[int]) -> None:
        self.paths, self.labels = list(paths), torch.tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return read_image(self.paths[i]), int(self.labels[i])


def read_image(path) -> torch.Tensor:
    """Decode one image file (or shard member) as uint8 RGB (3, H, W); a bad one is a
    one-line UsageError."""
    from noisevision.data.wds import read_item

    return torch.from_numpy(read_item(path).copy()).permute(2, 0, 1)  # (3, H, W)


@dataclass
class EvalTask:
    """One classification task: train and val splits over the same classes."""

    name: str
    train: torch.utils.data.Dataset
    val: torch.utils.data.Dataset
    classes: tuple[str, ...]
    description: str = ""
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def summary(self) -> dict:
        return {"task": self.name, "classes": self.num_classes, "train": len(self.train),
                "val": len(self.val), "description": self.description, **self.info}


# ------------------------------------------------------------------ ImageFolder trees and suites


def _class_dirs(split_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(split_dir.iterdir())
            if p.is_dir() and not p.name.startswith(".")}


def _list_images(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.rglob("*")
                  if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def _subset(items: list[tuple[Path, int]], cap: int | None, seed: int,
            where: str = "the split") -> list[tuple[Path, int]]:
    """At most `cap` of the (path, label) items, class-stratified: every class keeps at least
    one image and the rest is shared in proportion to the class sizes (largest remainder), a
    seeded draw within each class. A uniform draw could leave a class out of the train split
    (a probe then never sees it, and a one-image split has no feature std)."""
    if cap is None or len(items) <= cap:
        return items
    labels = np.array([la for _, la in items])
    classes, counts = np.unique(labels, return_counts=True)
    if cap < len(classes):
        raise UsageError(f"--max-per-split {cap} keeps fewer images than the {len(classes)} "
                         f"classes of {where}: every class needs one (allowed: >= "
                         f"{len(classes)})")
    spare = counts - 1  # after one image per class
    share = spare * (cap - len(classes)) / spare.sum()
    quota = 1 + np.floor(share).astype(int)
    order = np.argsort(-(share - np.floor(share)), kind="stable")  # largest remainders first
    quota[order[:cap - int(quota.sum())]] += 1
    rng = np.random.default_rng(seed)
    keep = np.concatenate([rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
                           for c, q in zip(classes, quota, strict=True)])
    return [items[i] for i in np.sort(keep)]


def is_image_folder(root: Path) -> bool:
    return (root / "train").is_dir() and (root / "val").is_dir()


def load_image_folder(root: str | Path, max_per_split: int | None = None,
                      seed: int = 0) -> EvalTask:
    """An ImageFolder task ``root/{train,val}/<class>/*``; checks classes and emptiness."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"data folder {root} does not exist "
                         f"(allowed: a folder with train/ and val/, or {', '.join(BUILTIN_TASKS)})")
    if not is_image_folder(root):
        raise UsageError(f"{root} has no train/ and val/ subfolders "
                         "(allowed: an ImageFolder tree DIR/{train,val}/<class>/<image>)")
    splits = {s: _class_dirs(root / s) for s in ("train", "val")}
    if not splits["train"]:
        from noisevision.data.wds import has_shards
        from noisevision.probe.shard_tasks import load_shard_task

        if has_shards(root / "train") and has_shards(root / "val"):
            return load_shard_task(root, max_per_split, seed)
    tr, va = set(splits["train"]), set(splits["val"])
    if tr != va:
        only_t, only_v = sorted(tr - va), sorted(va - tr)
        raise UsageError(f"{root}: train/ and val/ have different classes "
                         f"(only in train: {only_t[:5] or 'none'}; "
                         f"only in val: {only_v[:5] or 'none'})")
    classes = tuple(sorted(tr))
    if len(classes) < 2:
        raise UsageError(f"{root}: found {len(classes)} class folder(s) in train/ "
                         "(allowed: at least 2 class subfolders, or WebDataset .tar shards "
                         "with .cls labels in train/ and val/)")
    data = {}
    for s in ("train", "val"):
        paths, labels = [], []
        for label, c in enumerate(classes):
            files = _list_images(splits[s][c])
            if not files:
                raise UsageError(f"class folder {splits[s][c]} holds no images "
                                 f"(allowed extensions: {', '.join(IMAGE_EXTENSIONS)})")
            paths += files
            labels += [label] * len(files)
        pairs = _subset(list(zip(paths, labels, strict=True)), max_per_split,
                        seed + (s == "val"), f"{root / s}")
        data[s] = FileImages([p for p, _ in pairs], [la for _, la in pairs])
    return EvalTask(root.name, data["train"], data["val"], classes,
                    description=f"ImageFolder {root}",
                    info={"cap_per_split": max_per_split})


def load_suite(root: str | Path, max_per_split: int | None = 20000,
               seed: int = 0) -> list[EvalTask]:
    """Every ImageFolder task under ``root`` (VTAB-like), each capped at ``max_per_split``."""
    root = Path(root)
    tasks = [load_image_folder(p, max_per_split, seed) for p in sorted(root.iterdir())
             if p.is_dir() and is_image_folder(p)]
    if not tasks:
        raise UsageError(f"{root} holds no task folders with train/ and val/ "
                         "(allowed: an ImageFolder tree, or a folder of such trees)")
    return tasks


# ------------------------------------------------------------------ Fashion-MNIST


def _read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (gzip or plain): big-endian magic, dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # a truncated gzip ends in EOFError
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UsageError(f"cannot read {path}: {reason}; "
                         f"reinstall it ({FASHION_MNIST_HINT})") from None
    ndim = raw[3] if len(raw) >= 4 else 0
    header = 4 + 4 * ndim
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if (len(raw) < header or raw[:3] != b"\x00\x00\x08" or ndim == 0
            or len(raw) - header != int(np.prod(dims))):
        raise UsageError(f"{path} is not a valid uint8 IDX file (truncated or damaged); "
                         f"reinstall it ({FASHION_MNIST_HINT})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise UsageError(f"Fashion-MNIST is not installed ({root / (stem + '.gz')} is missing); "
                     f"{FASHION_MNIST_HINT}")


def _balanced_first(labels: np.ndarray, n: int | None, num_classes: int) -> np.ndarray:
    """Indices of the first n // num_classes images of every class (file order), or all."""
    if n is None or n >= labels.size:
        return np.arange(labels.size)
    per = max(1, n // num_classes)
    keep = [np.flatnonzero(labels == c)[:per] for c in range(num_classes)]
    return np.sort(np.concatenate(keep))


def load_fashion_mnist(n_train: int | None = None, n_val: int | None = None,
                       root: str | Path | None = None) -> EvalTask:
    """Fashion-MNIST (60k train / 10k test), optionally a class-balanced first-n subset."""
    root = Path(root or os.environ.get("NOISEVISION_FASHION_MNIST", FASHION_MNIST_DIR))
    splits = {}
    for split, prefix, n in (("train", "train", n_train), ("val", "t10k", n_val)):
        image_file = _find_idx(root, f"{prefix}-images-idx3-ubyte")
        label_file = _find_idx(root, f"{prefix}-labels-idx1-ubyte")
        images, labels = _read_idx(image_file), _read_idx(label_file).astype(np.int64)
        n_classes = len(FASHION_MNIST_CLASSES)
        if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise UsageError(f"{image_file} ({'x'.join(map(str, images.shape))}) and "
                             f"{label_file} ({labels.shape[0]} labels) do not pair up: "
                             f"reinstall them ({FASHION_MNIST_HINT})")
        if labels.size and labels.max() >= n_classes:
            raise UsageError(f"{label_file} holds label {labels.max()} (allowed: 0.."
                             f"{n_classes - 1}); reinstall it ({FASHION_MNIST_HINT})")
        keep = _balanced_first(labels, n, len(FASHION_MNIST_CLASSES))
        imgs = torch.from_numpy(images[keep].copy())[:, None].expand(-1, 3, -1, -1).contiguous()
        splits[split] = TensorImages(imgs, torch.from_numpy(labels[keep]))
    return EvalTask("fashion-mnist", splits["train"], splits["val"], FASHION_MNIST_CLASSES,
                    description="Fashion-MNIST (Debian dataset-fashion-mnist), 28x28 gray as RGB",
                    info={"source": str(root)})


# ------------------------------------------------------------------ photo-crop proxy task

PHOTO_PACKAGES = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04", "mate-backgrounds",
                  "palapeli-data", "plasma-workspace-wallpapers")
# Real photographs (picked by eye, see ../shared/offline-assets.md); renders are left out.
_LOMIRI = ("Picture_1A_by_freespace", "Wine_by_Jakkub_Mede", "greentock_by_Peter_Nerlich",
           "seeding_by_Clements_Engelhardt", "aitzgorri_by_Aitzol_Berasategi", "Dragonfly_by_Bolly",
           "friends_by_Aitzol_Berasategi", "sunset_by_Aitzol_Berasategi", "free_by_Peter_Nerlich",
           "picosdeeuropa_by_Aitzol_Berasategi", "Picture_0B_by_freespace",
           "life_by_Aitzol_Berasategi", "analogpattern_by_Peter_Nerlich",
           "Bridge_by_Sander_Klootwijk", "Kleiber_by_Lukas_Baubkus")
_MATE = ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops",
         "Storm", "TwoWings", "Wood", "YellowFlower")
_PALAPELI = ("castle-maintenon", "cincinnati-bridge", "citrus-fruits", "european-honey-bee",
             "panther-chameleon-female")
_PLASMA = ("FallenLeaf", "Path", "DarkestHour", "summer_1am", "EveningGlow", "Grey", "Kite",
           "ColorfulCups", "OneStandsOut", "ColdRipple", "BytheWater")
PHOTO_FILES = (tuple(f"/usr/share/backgrounds/{n}.jpg" for n in _LOMIRI)
               + tuple(f"/usr/share/backgrounds/mate/nature/{n}.jpg" for n in _MATE)
               + tuple(f"/usr/share/palapeli/collection/{n}.jpg" for n in _PALAPELI)
               + tuple(f"/usr/share/wallpapers/{n}/contents/images/2560x1600.jpg" for n in _PLASMA))
PHOTO_HINT = "install them with: apt-get install -y " + " ".join(PHOTO_PACKAGES)


def available_photos(files: tuple[str, ...] = PHOTO_FILES) -> list[Path]:
    return [Path(f) for f in files if Path(f).is_file()]


def _open_photo(path: Path, short_side: int) -> np.ndarray:
    """Decode a (large) JPEG at reduced size (JPEG draft mode), short side = short_side px."""
    with Image.open(path) as im:
        w, h = im.size
        scale = short_side / min(w, h)
        im.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))
        im = im.convert("RGB")
        w, h = im.size
        scale = short_side / min(w, h)
        im = im.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
        return np.asarray(im)


def _crops(photo: np.ndarray, n: int, lo: float, hi: float, size: int,
           rng: np.random.Generator) -> np.ndarray:
    """n square crops whose long-axis extent lies inside [lo, hi) of the photo, resized to size."""
    if photo.shape[0] > photo.shape[1]:  # make the long axis the width
        photo = photo.transpose(1, 0, 2)
    h, w = photo.shape[:2]
    x0, x1 = int(lo * w), int(hi * w)
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        side = int(rng.uniform(0.2, 0.45) * h)
        side = min(side, x1 - x0, h)
        x = int(rng.integers(x0, x1 - side + 1))
        y = int(rng.integers(0, h - side + 1))
        crop = Image.fromarray(photo[y:y + side, x:x + side])
        out[i] = np.asarray(crop.resize((size, size), Image.BICUBIC))
    return out


def load_photo_crops(n_train_per_photo: int = 40, n_val_per_photo: int = 20, size: int = 64,
                     seed: int = 0, files: tuple[str, ...] = PHOTO_FILES,
                     short_side: int = 320) -> EvalTask:
    """The photo-crop proxy task: which packaged photograph did a crop come from?

    Train crops lie in the first 60% of the long axis, val crops in the last 35% (disjoint).
    Crop sides are U(0.2, 0.45) of the photo's short side, resized to ``size`` px.
    """
    photos = available_photos(files)
    if len(photos) < 2:
        raise UsageError("the photo-crop task needs the packaged photographs "
                         f"({len(photos)} found); "
                         f"{PHOTO_HINT}")
    rng = np.random.default_rng(seed)
    tr, va, ltr, lva = [], [], [], []
    for label, path in enumerate(photos):
        try:
            photo = _open_photo(path, short_side)
        except (OSError, UnidentifiedImageError) as exc:
            raise UsageError(f"cannot read photograph {path}: {exc}; "
                             f"reinstall it ({PHOTO_HINT})") from None
        tr.append(_crops(photo, n_train_per_photo, 0.0, 0.60, size, rng))
        va.append(_crops(photo, n_val_per_photo, 0.65, 1.0, size, rng))
        ltr += [label] * n_train_per_photo
        lva += [label] * n_val_per_photo

    def as_set(chunks: list[np.ndarray], labels: list[int]) -> TensorImages:
        imgs = torch.from_numpy(np.concatenate(chunks)).permute(0, 3, 1, 2).contiguous()
        return TensorImages(imgs, torch.tensor(labels))

    names = tuple(_photo_name(p) for p in photos)
    return EvalTask("photo-crops", as_set(tr, ltr), as_set(va, lva), names,
                    description=("proxy: which packaged photograph a crop came from; train/val "
                                 "crops from disjoint regions (first 60% / last 35%)"),
                    info={"photos": len(photos), "seed": seed})


def _photo_name(path: Path) -> str:
    return path.parts[4] if "wallpapers" in path.parts else path.stem


# ------------------------------------------------------------------ resolve a --data argument


def data_kind(spec: str | Path) -> str:
    """What `--data` names: "fashion-mnist" (the name, or a folder of its idx files),
    "photo-crops", or "folder" (an ImageFolder, a suite, labelled shards; or nothing valid)."""
    name = str(spec)
    if name in ("fashion-mnist", "photo-crops"):
        return name
    root = Path(name)
    if root.is_dir() and not is_image_folder(root) and any(
            (root / f"train-images-idx3-ubyte{ext}").is_file() for ext in (".gz", "")):
        return "fashion-mnist"
    return "folder"


def load_tasks(spec: str | Path, *, max_per_split: int | None = None, seed: int = 0,
               fashion_n_train: int | None = None, fashion_n_val: int | None = None,
               photo_train: int = 40, photo_val: int = 20) -> list[EvalTask]:
    """``fashion-mnist`` | ``photo-crops`` | an ImageFolder DIR | a suite DIR -> tasks."""
    name, kind = str(spec), data_kind(spec)
    if name == "fashion-mnist":  # the Debian package
        return [load_fashion_mnist(fashion_n_train, fashion_n_val)]
    if name == "photo-crops":
        return [load_photo_crops(photo_train, photo_val, seed=seed)]
    root = Path(name)
    if kind == "fashion-mnist":  # a folder of its idx files
        return [load_fashion_mnist(fashion_n_train, fashion_n_val, root=root)]
    if not root.is_dir():
        raise UsageError(f"unknown data {name!r} (allowed: {', '.join(BUILTIN_TASKS)}, "
                         "an ImageFolder DIR with train/ and val/, or a folder of such DIRs)")
    if is_image_folder(root):
        return [load_image_folder(root, max_per_split, seed)]
    return load_suite(root, 20000 if max_per_split is None else max_per_split, seed)
