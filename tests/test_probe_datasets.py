"""Evaluation data: ImageFolder trees and suites, Fashion-MNIST, the photo-crop task, bad input."""

import gzip

import numpy as np
import pytest
import torch
from PIL import Image

from noisevision.errors import UsageError
from noisevision.probe.baselines import MeanColour
from noisevision.probe.datasets import (
    FASHION_MNIST_DIR,
    _crops,
    available_photos,
    load_fashion_mnist,
    load_image_folder,
    load_photo_crops,
    load_suite,
    load_tasks,
)
from noisevision.probe.features import extract_features


def make_folder(root, classes=("cat", "dog"), n=(3, 2), size=20, colour=True):
    for split, count in zip(("train", "val"), n, strict=True):
        for ci, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(count):
                value = (60 + 120 * ci, 100, 30 + i) if colour else (0, 0, 0)
                Image.new("RGB", (size, size + i), value).save(d / f"{i}.png")
    return root


def test_image_folder_lists_classes_and_labels(tmp_path):
    task = load_image_folder(make_folder(tmp_path / "t", ("a", "b", "c"), (4, 2)))
    assert task.classes == ("a", "b", "c")
    assert len(task.train) == 12 and len(task.val) == 6
    img, label = task.train[5]
    assert img.dtype == torch.uint8 and img.shape[0] == 3 and label == 1
    x, y = extract_features(MeanColour(), task.val)
    assert x.shape == (6, 3) and y.tolist() == [0, 0, 1, 1, 2, 2]


def test_suite_caps_each_task(tmp_path):
    make_folder(tmp_path / "s" / "task1", n=(6, 4))
    make_folder(tmp_path / "s" / "task2", n=(2, 2))
    (tmp_path / "s" / "notes").mkdir()
    tasks = load_suite(tmp_path / "s", max_per_split=5, seed=0)
    assert [t.name for t in tasks] == ["task1", "task2"]
    assert (len(tasks[0].train), len(tasks[0].val)) == (5, 5)
    assert (len(tasks[1].train), len(tasks[1].val)) == (4, 4)
    again = load_suite(tmp_path / "s", max_per_split=5, seed=0)
    assert again[0].train.paths == tasks[0].train.paths  # the cap's draw is seeded
    assert [t.name for t in load_tasks(tmp_path / "s")] == ["task1", "task2"]



def test_cap_keeps_every_class_in_proportion(tmp_path, capsys):
    """--max-per-split draws per class: each class keeps an image, the rest in proportion."""
    from noisevision.cli import main

    root = tmp_path / "skew"
    for split, n in (("train", {"a": 30, "b": 2, "c": 1, "d": 17}), ("val", {"a": 4, "b": 4,
                                                                             "c": 4, "d": 4})):
        for c, count in n.items():
            (root / split / c).mkdir(parents=True)
            for i in range(count):
                Image.new("RGB", (8, 8), (i, 0, 0)).save(root / split / c / f"{i}.png")
    for cap, want in ((4, [1, 1, 1, 1]), (10, [5, 1, 1, 3]), (25, [14, 2, 1, 8]),
                      (49, [29, 2, 1, 17])):
        task = load_image_folder(root, max_per_split=cap, seed=3)
        assert np.bincount(task.train.labels.numpy(), minlength=4).tolist() == want, cap
        assert len(task.val) == min(cap, 16)
        assert load_image_folder(root, max_per_split=cap, seed=3).train.paths == task.train.paths
    assert load_image_folder(root, max_per_split=10, seed=4).train.paths != load_image_folder(
        root, max_per_split=10, seed=3).train.paths  # the draw within a class is seeded
    enc = tmp_path / "enc.pt"
    from noisevision.probe.baselines import random_init_encoder
    from noisevision.ssl.encoders import save_encoder

    save_encoder(enc, random_init_encoder("small_alexnet", {"width": 0.125, "input_size": 32}),
                 "small_alexnet")
    rc = main(["probe", "--encoder", str(enc), "--data", str(root), "--max-per-split", "3",
               "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "fewer images than the 4 classes" in err
    assert not (tmp_path / "out").exists()


def test_bad_folders_raise_one_line(tmp_path):
    root = make_folder(tmp_path / "diff")
    (root / "val" / "dog").rename(root / "val" / "wolf")
    with pytest.raises(UsageError, match="different classes") as e:
        load_image_folder(root)
    assert "\n" not in str(e.value) and "wolf" in str(e.value)
    root = make_folder(tmp_path / "empty")
    for f in (root / "train" / "cat").iterdir():
        f.unlink()
    with pytest.raises(UsageError, match="holds no images"):
        load_image_folder(root)
    with pytest.raises(UsageError, match="no train/ and val/"):
        load_image_folder(tmp_path)
    with pytest.raises(UsageError, match="unknown data"):
        load_tasks(tmp_path / "missing")


def test_unreadable_and_truncated_images_raise_usage_error(tmp_path):
    root = make_folder(tmp_path / "bad")
    (root / "train" / "cat" / "junk.jpg").write_bytes(b"not an image at all")
    task = load_image_folder(root)
    with pytest.raises(UsageError, match="cannot read image .*junk.jpg") as e:
        extract_features(MeanColour(), task.train)
    assert "\n" not in str(e.value)
    root = make_folder(tmp_path / "trunc")
    good = root / "val" / "dog" / "0.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(good)
    good.write_bytes(good.read_bytes()[:200])
    with pytest.raises(UsageError, match="cannot read image .*0.png"):
        extract_features(MeanColour(), load_image_folder(root).val, num_workers=1)



def test_every_pixel_format_decodes_to_its_8_bit_rgb(tmp_path):
    """read_rgb (every folder reader: pretrain, probe, analyze) keeps the picture of any mode:
    16-bit greys scaled (PIL's convert("RGB") clips them at 255: a white image), float greys
    from [0, 1], palette / alpha / CMYK / 1-bit as PIL converts them."""
    from noisevision.data.encode import read_rgb

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 16, 3), np.uint8)
    grey16 = rng.integers(0, 65536, (12, 16)).astype(np.uint16)
    want16 = np.rint(grey16 / 257.0).astype(np.uint8)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    Image.fromarray(grey16).save(tmp_path / "g16.tif")
    Image.fromarray(grey16.astype(np.int32), "I").save(tmp_path / "g32.tif")
    unit = (grey16 / 65535.0).astype(np.float32)
    Image.fromarray(unit, "F").save(tmp_path / "f.tif")
    for name in ("g16.png", "g16.tif", "g32.tif"):
        a = read_rgb(tmp_path / name)
        assert a.shape == (12, 16, 3) and a.dtype == np.uint8, name
        assert np.array_equal(a[..., 0], want16) and np.array_equal(a[..., 2], want16), name
    assert np.abs(read_rgb(tmp_path / "f.tif")[..., 1].astype(int) - want16).max() <= 1
    Image.fromarray(unit * 3, "F").save(tmp_path / "f3.tif")
    with pytest.raises(UsageError, match="f3.tif.*outside \\[0, 1\\]"):
        read_rgb(tmp_path / "f3.tif")
    im = Image.fromarray(rgb)
    for mode, ext in (("L", "png"), ("RGBA", "png"), ("LA", "png"), ("P", "png"),
                      ("CMYK", "tif"), ("1", "png")):
        im.convert(mode).save(tmp_path / f"m.{ext}")
        want = np.asarray(Image.open(tmp_path / f"m.{ext}").convert("RGB"))
        assert np.array_equal(read_rgb(tmp_path / f"m.{ext}"), want), mode


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big")
                                                    for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_idx_parsing_and_balanced_subset(tmp_path):
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 50), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    task = load_fashion_mnist(n_train=20, root=tmp_path)
    assert len(task.train) == 20 and len(task.val) == 20 and task.num_classes == 10
    assert torch.bincount(task.train.labels).tolist() == [2] * 10
    img, _ = task.train[0]
    assert img.shape == (3, 28, 28) and torch.equal(img[0], img[2])



@pytest.mark.parametrize("damage", ["truncated_gzip", "empty", "short_header", "label_range",
                                    "count_mismatch", "wrong_magic"])
def test_damaged_fashion_mnist_files_are_one_line(tmp_path, damage):
    """A damaged package file names itself (no EOFError / IndexError traceback, no probe on
    images paired with the wrong labels)."""
    rng = np.random.default_rng(1)
    for prefix, n in (("train", 30), ("t10k", 20)):
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28)))
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    labels = tmp_path / "t10k-labels-idx1-ubyte.gz"
    raw = gzip.decompress(labels.read_bytes())
    if damage == "truncated_gzip":
        data = gzip.compress(raw)
        labels.write_bytes(data[:len(data) // 2])
    elif damage == "empty":
        labels.write_bytes(b"")
    elif damage == "short_header":
        labels.write_bytes(gzip.compress(raw[:6]))
    elif damage == "label_range":
        write_idx(labels, np.full(20, 12))
    elif damage == "count_mismatch":
        write_idx(labels, np.arange(15) % 10)
    else:
        labels.write_bytes(gzip.compress(b"\x00\x00\x0d" + raw[3:]))  # float32 data type
    with pytest.raises(UsageError, match="t10k-(labels|images)-idx") as e:
        load_fashion_mnist(root=tmp_path)
    assert "\n" not in str(e.value) and "reinstall" in str(e.value)


def test_missing_fashion_mnist_says_which_package(tmp_path):
    with pytest.raises(UsageError, match=r"apt-get install -y dataset-fashion-mnist") as e:
        load_fashion_mnist(root=tmp_path)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").exists(),
                    reason="dataset-fashion-mnist not installed")
def test_packaged_fashion_mnist():
    task = load_tasks("fashion-mnist", fashion_n_train=100, fashion_n_val=50)[0]
    assert (len(task.train), len(task.val)) == (100, 50)
    assert torch.bincount(task.val.labels).tolist() == [5] * 10


def test_photo_crops_come_from_disjoint_regions():
    h, w = 120, 300
    photo = np.zeros((h, w, 3), np.uint8)
    photo[..., 0] = (np.arange(w) * 255 // (w - 1))[None, :]  # red channel encodes x
    rng = np.random.default_rng(0)
    train = _crops(photo, 40, 0.0, 0.60, 16, rng)[..., 0]
    val = _crops(photo, 40, 0.65, 1.0, 16, rng)[..., 0]
    # bicubic resampling overshoots a little: allow 3 levels of ringing
    assert train.max() <= 0.60 * 255 + 3 and val.min() >= 0.65 * 255 - 3
    portrait = _crops(photo.transpose(1, 0, 2), 5, 0.65, 1.0, 16, rng)[..., 0]
    assert portrait.min() >= 0.65 * 255 - 3  # long axis is used whatever the orientation


def test_photo_task_from_any_photos_and_missing_packages(tmp_path):
    files = []
    for i, colour in enumerate(((200, 30, 30), (30, 200, 30), (30, 30, 200))):
        f = tmp_path / f"p{i}.jpg"
        Image.new("RGB", (400, 250), colour).save(f)
        files.append(str(f))
    task = load_photo_crops(4, 2, size=32, files=tuple(files), short_side=100)
    assert task.classes == ("p0", "p1", "p2")
    assert task.train.images.shape == (12, 3, 32, 32) and len(task.val) == 6
    with pytest.raises(UsageError, match="apt-get install -y .*mate-backgrounds"):
        load_photo_crops(files=(str(tmp_path / "none.jpg"),))


@pytest.mark.skipif(len(available_photos()) < 2, reason="photo packages not installed")
def test_packaged_photo_task_is_deterministic():
    files = tuple(str(p) for p in available_photos()[:3])
    a = load_photo_crops(2, 1, seed=3, files=files)
    b = load_photo_crops(2, 1, seed=3, files=files)
    assert a.num_classes == len(files) and torch.equal(a.val.images, b.val.images)


def _write_shard(path, samples):
    """A WebDataset shard: samples are (key, {ext: bytes})."""
    import io
    import tarfile

    with tarfile.open(path, "w") as tf:
        for key, parts in samples:
            for ext, data in parts.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def _png(array):
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def test_labelled_webdataset_shards_are_a_task_like_its_image_folder(tmp_path):
    """DIR/{train,val}/*.tar with <key>.png + <key>.cls (ImageNet-as-WebDataset's layout) is
    read as the same task as the ImageFolder of the same images, by DataLoader workers too."""
    rng = np.random.default_rng(2)
    shards, folder = tmp_path / "wds", tmp_path / "folder"
    names = ("cat", "dog", "eel")
    for split, n in (("train", 12), ("val", 6)):
        (shards / split).mkdir(parents=True)
        samples = []
        for i in range(n):
            a = rng.integers(0, 256, (20 + i, 24, 3), np.uint8)
            label = i % 3
            samples.append((f"s{split}{i:04d}", {"png": _png(a), "cls": f"{label}\n".encode()}))
            (folder / split / names[label]).mkdir(parents=True, exist_ok=True)
            Image.fromarray(a).save(folder / split / names[label] / f"{i:04d}.png")
        _write_shard(shards / split / "a-000.tar", samples[:n // 2])
        _write_shard(shards / split / "a-001.tar", samples[n // 2:])
    (shards / "classes.txt").write_text("cat\ndog\neel\n")
    task = load_tasks(shards)[0]
    ref = load_image_folder(folder)
    assert task.classes == names and (len(task.train), len(task.val)) == (12, 6)
    for split in ("train", "val"):
        x, y = extract_features(MeanColour(), getattr(task, split), num_workers=2)
        xr, yr = extract_features(MeanColour(), getattr(ref, split))
        order = np.lexsort((xr[:, 0].numpy(), yr.numpy()))  # the folder lists by class
        mine = np.lexsort((x[:, 0].numpy(), y.numpy()))
        assert torch.equal(y[mine], yr[order]) and torch.equal(x[mine], xr[order])
    capped = load_image_folder(shards, max_per_split=6, seed=1)
    assert torch.bincount(capped.train.labels).tolist() == [2, 2, 2]


@pytest.mark.parametrize("damage, needle", [
    ("truncated", "truncated or not a tar file"), ("no_label", "has no .cls label"),
    ("no_image", "has no image"), ("bad_label", "has label 'x'"),
    ("beyond_classes", "names 3 classes"), ("corrupt_image", "cannot read image 'bad'")])
def test_damaged_labelled_shards_are_one_line(tmp_path, damage, needle):
    rng = np.random.default_rng(3)

    def sample(i, label=None):
        return (f"k{i}", {"png": _png(rng.integers(0, 256, (8, 8, 3), np.uint8)),
                          "cls": str(i % 3 if label is None else label).encode()})
    for split in ("train", "val"):
        (tmp_path / split).mkdir()
        _write_shard(tmp_path / split / "p.tar", [sample(i) for i in range(6)])
    (tmp_path / "classes.txt").write_text("a\nb\nc\n")
    bad = tmp_path / "val" / "q.tar"
    if damage == "truncated":
        _write_shard(bad, [sample(7)])
        bad.write_bytes(bad.read_bytes()[:700])
    elif damage == "no_label":
        _write_shard(bad, [("k9", {"png": sample(9)[1]["png"]})])
    elif damage == "no_image":
        _write_shard(bad, [("k9", {"cls": b"1", "txt": b"caption"})])
    elif damage == "bad_label":
        _write_shard(bad, [("k9", {**sample(9)[1], "cls": b"x"})])
    elif damage == "beyond_classes":
        _write_shard(bad, [sample(9, label=7)])
    else:
        _write_shard(bad, [("bad", {"png": b"\x89PNG not really", "cls": b"1"})])
    with pytest.raises(UsageError, match=needle) as e:
        task = load_tasks(tmp_path)[0]
        extract_features(MeanColour(), task.val)
    assert "\n" not in str(e.value)
