"""Labelled real images as WebDataset shards: a probe task `DIR/{train,val}/*.tar`.

Samples are `<key>.jpg` (or png, webp, ...) plus `<key>.cls`, the class index as text;
`DIR/classes.txt` (one name per line, line i = class i) names the classes, without it they are
"0".."K-1". Indexing, reading and the one-line errors: data/wds.py.
"""

from __future__ import annotations

from pathlib import Path

from noisevision.data.wds import index_split
from noisevision.errors import UsageError


def load_shard_task(root: Path, max_per_split: int | None = None, seed: int = 0):
    """The probe task of `root/train/*.tar` and `root/val/*.tar` (labels from `.cls`)."""
    from noisevision.probe.datasets import EvalTask, FileImages, _subset

    splits = {s: index_split(root / s) for s in ("train", "val")}
    names_file = root / "classes.txt"
    top = max(max(labels) for _, labels in splits.values())
    if names_file.is_file():
        classes = tuple(line.strip() for line in names_file.read_text().splitlines()
                        if line.strip())
        if top >= len(classes):
            raise UsageError(f"{root}: a sample has label {top}, but {names_file} names "
                             f"{len(classes)} classes (labels 0..{len(classes) - 1})")
    else:
        classes = tuple(str(i) for i in range(top + 1))
    seen = set(splits["train"][1])
    if len(seen) < 2:
        raise UsageError(f"{root}/train holds {len(seen)} class(es) (allowed: at least 2)")
    data = {}
    for s, (members, labels) in splits.items():
        pairs = _subset(list(zip(members, labels, strict=True)), max_per_split,
                        seed + (s == "val"), f"{root / s}")
        data[s] = FileImages([m for m, _ in pairs], [la for _, la in pairs])
    return EvalTask(root.name, data["train"], data["val"], classes,
                    description=f"WebDataset shards {root}",
                    info={"cap_per_split": max_per_split, "format": "shards"})
