"""What a study compares: families (a generator, a weighted mixture, an image folder) and
tasks (fashion-mnist, photo-crops, an ImageFolder tree or a suite of them).

A family is written as `noisevision demo` writes it: a registered generator name, a mixture
``a:2+b`` (members joined by ``+``, optional weights, unweighted members weigh 1), or a folder
of images. ``--family`` also takes the pretraining ``--data`` spelling of a mixture
(``a:2,b:1``, see `noisevision.ssl.sources.parse_data_spec`), converted to the ``+`` form.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
from pathlib import Path

import torch

from noisevision.errors import UsageError

BUILTIN_TASKS = ("fashion-mnist", "photo-crops")
_SAFE = re.compile(r"[A-Za-z0-9_.-]+")


def family_members(family: str) -> list[str]:
    """'a+b' -> ['a', 'b'] (a mixture); 'a:2+b' -> ['a', 'b']; 'a' -> ['a']."""
    return [m.split(":", 1)[0].strip() for m in family.split("+") if m.strip()]


def family_data_spec(family: str) -> str:
    """The pretraining --data spec of a family: 'a:2+b' -> 'a:2,b:1'; a folder: its path."""
    if is_folder_family(family):
        return str(Path(family).resolve())
    items = [m.strip() for m in family.split("+") if m.strip()]
    return ",".join(m if ":" in m else f"{m}:1" for m in items)


def from_data_spec(spec: str) -> str:
    """A --data spelling 'a:2,b:1' -> the family spelling 'a:2+b:1' (one source: unchanged)."""
    from noisevision.ssl.sources import parse_data_spec

    items = parse_data_spec(spec)
    if len(items) == 1 and ":" not in spec:
        return items[0].source
    return "+".join(f"{s.source}:{s.weight:g}" for s in items)


def is_folder_family(family: str) -> bool:
    return "+" not in family and (os.sep in family or family.startswith(".")
                                  or Path(family).is_dir())


def is_mixture(family: str) -> bool:
    return not is_folder_family(family) and ("+" in family or ":" in family)


def slug(name: str) -> str:
    """A file name for a family or task: the name itself when safe, else a cleaned name with
    a short hash of the original (so two families never share a folder)."""
    if _SAFE.fullmatch(name) and len(name) <= 80:
        return name
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(name).name if os.sep in name else name)
    return f"{clean.strip('._')[:60] or 'family'}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def check_family(family: str) -> None:
    """UsageError (close names suggested) for an unknown generator, a bad weight, or a folder
    without images; nothing is rendered."""
    from noisevision.data.wds import folder_items
    from noisevision.generators.base import GENERATORS, list_generators
    from noisevision.ssl.sources import parse_data_spec

    if not family:
        raise UsageError("empty family in --families (give generator names, a+b mixtures or "
                         "image folders, separated by commas)")
    if is_folder_family(family):
        folder_items(family)  # missing folder, no images, damaged shards: one line
        return
    parts = [m.strip() for m in family.split("+")]
    if "+" in family and not all(parts):
        raise UsageError(f"family {family!r} has an empty member (a mixture is NAME[:WEIGHT]+"
                         "NAME[:WEIGHT]...)")
    members = family_members(family)
    twice = sorted({m for m in members if members.count(m) > 1})
    if twice:
        raise UsageError(f"family {family!r} names {twice[0]} twice (give it once; a weight "
                         f"sets its share, e.g. {twice[0]}:2+...)")
    names = list_generators()
    for m in members or [family]:
        if m not in names:
            raise UsageError(f"unknown generator {m!r} in --families "
                             f"({GENERATORS.unknown_message(m)}; or give an existing folder "
                             "of images)")
    parse_data_spec(family_data_spec(family))  # bad weights


def check_resolution(family: str, side: int) -> None:
    """Every generator of a family renders at the budget's side (a StyleGAN family needs a
    power of two >= 64, for instance): a one-line ConfigError before any work."""
    if is_folder_family(family):
        return
    from noisevision.generators.base import create_generator

    for m in family_members(family):
        create_generator(m, resolution=side)


def family_identity(family: str, side: int) -> dict | None:
    """What a family's images are: every generator's name and full config at the budget's side
    (None for a folder). Recorded with its pretraining, compared when a study continues: a
    generator whose defaults changed since would otherwise mix two versions in one study."""
    if is_folder_family(family):
        return None
    from noisevision.generators.base import create_generator

    return {m: create_generator(m, resolution=side).describe() for m in family_members(family)}


def identity_changes(old: dict, new: dict, prefix: str = "") -> list[str]:
    """'member.config.key: old -> new' for every value that differs."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += identity_changes(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def check_task(spec: str) -> None:
    """A built-in task name or an existing folder; close names for a typo."""
    if spec in BUILTIN_TASKS:
        return
    if Path(spec).is_dir():
        return
    close = difflib.get_close_matches(spec, BUILTIN_TASKS, n=2, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UsageError(f"unknown task {spec!r} (allowed: {', '.join(BUILTIN_TASKS)}, an "
                     f"ImageFolder DIR with train/ and val/, or a folder of such DIRs){hint}")


def family_images(family: str, n: int, side: int, seed: int,
                  device: torch.device) -> torch.Tensor:
    """The first n images of a family as uint8 (n, 3, side, side) on the CPU: a generator's
    indices 0..n-1, a mixture's members in proportion to their weights (each from index 0), a
    folder's first n files (centre-cropped square, resized to `side`)."""
    if is_folder_family(family):
        return _folder_images(family, n, side)
    from noisevision.generators.base import create_generator
    from noisevision.ssl.sources import parse_data_spec

    items = parse_data_spec(family_data_spec(family))
    total = sum(s.weight for s in items)
    counts = [int(n * s.weight / total) for s in items]
    for k in range(n - sum(counts)):
        counts[k % len(counts)] += 1
    parts = []
    for s, c in zip(items, counts, strict=True):
        if c:
            gen = create_generator(s.source, resolution=side)
            parts.append(gen.images(torch.arange(c, device=device), seed,
                                    dtype=torch.uint8).cpu())
    return torch.cat(parts)


def _folder_images(folder: str, n: int, side: int) -> torch.Tensor:
    from noisevision.data.wds import folder_items

    return torch.stack([square(f, side) for f in folder_items(folder)[:n]])


def square(path_or_array, side: int) -> torch.Tensor:
    """A centre-cropped square of an image file or (3, H, W) uint8 tensor, resized to `side`
    (PIL bicubic) -> uint8 (3, side, side)."""
    import numpy as np
    from PIL import Image

    if isinstance(path_or_array, torch.Tensor):
        a = path_or_array.permute(1, 2, 0).numpy()
    else:
        from noisevision.data.wds import read_item

        a = read_item(path_or_array)
    h, w = a.shape[:2]
    s = min(h, w)
    a = a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if s != side:
        a = np.asarray(Image.fromarray(np.ascontiguousarray(a)).resize((side, side),
                                                                        Image.BICUBIC))
    return torch.from_numpy(np.array(a, dtype=np.uint8)).permute(2, 0, 1).contiguous()
