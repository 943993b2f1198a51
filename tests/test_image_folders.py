"""Training on one's own images (--dataset folder:PATH) and on Fashion-MNIST: what is read, what is skipped and
said, what snapshots record, and the one-line errors for folders that cannot be trained on."""

import gzip
import os
import struct

import numpy as np
import pytest
import torch
import torchvision
from helpers import assert_one_line_error, run_main
from PIL import Image

import infer
import train
from wavenet import checkpoint, image_folder
from wavenet.errors import UserError
from wavenet.image_data import (
    FASHION_MNIST_CLASSES,
    FOLDER_IMAGE_SIZE,
    describe,
    load_images,
    quantize,
)

TINY_MODEL = ["-d", "8", "-n", "1", "--out_hidden_dim", "8", "--levels", "4"]
PER_CLASS = 12  # FOLDER_VAL_FRACTION of 12 holds out 1 per class
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def solid(path, size, colour, mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour)
    image = image.convert(mode) if mode != "RGB" else image
    image.save(path)


def class_folder(root, per_class=PER_CLASS):
    """root/cat: red PNGs of several sizes and modes; root/dog: blue JPEGs; plus a text file, a JPEG cut
    short and a hidden file (not looked at). Returns the root as a --dataset value."""
    for i in range(per_class):
        solid(root / "cat" / f"c{i}.png", (20 + i, 30), RED, mode=("RGB", "RGBA", "P")[i % 3])
        solid(root / "dog" / "sub" / f"d{i}.jpg", (40, 24 + i), BLUE)  # a subfolder of a class is of its class
    (root / "cat" / "notes.txt").write_text("not an image")
    whole = (root / "dog" / "sub" / "d0.jpg").read_bytes()
    (root / "dog" / "broken.jpg").write_bytes(whole[: len(whole) // 3])
    (root / "dog" / ".DS_Store").write_bytes(b"\0\1\2")
    return f"folder:{root}"


def test_a_class_folder_loads_resized_rgb_images_and_counts_what_it_skips(tmp_path):
    name = class_folder(tmp_path / "pets")
    spec = describe(name)
    assert spec.shape == (3, FOLDER_IMAGE_SIZE, FOLDER_IMAGE_SIZE) and spec.classes == ("cat", "dog")
    assert spec.num_classes == 2
    train_set, val_set = load_images(name, "", True, 256), load_images(name, "", False, 256)
    # the text file and the cut JPEG each fall into one split or the other; the hidden file into neither
    assert len(train_set) + len(val_set) == 2 * PER_CLASS
    assert train_set.files + val_set.files == 2 * PER_CLASS + 2
    images, labels = train_set.tensors
    assert images.dtype == torch.uint8 and images.shape[1:] == (3, 32, 32)
    for q, label in zip(images, labels):
        # every mode became RGB, every size 32x32: solid red cats, solid (JPEG: nearly) blue dogs
        colour = torch.tensor(RED if label == 0 else BLUE, dtype=torch.float).view(3, 1, 1)
        assert (q.float() - colour).abs().max() <= 8, label
    every = torch.cat([labels, val_set.tensors[1]])
    assert every.bincount().tolist() == [PER_CLASS, PER_CLASS]
    skipped = {
        reason: sorted(train_set.skipped.get(reason, []) + val_set.skipped.get(reason, []))
        for reason in ("not an image", "unreadable")
    }
    assert skipped == {"not an image": ["cat/notes.txt"], "unreadable": ["dog/broken.jpg"]}


def test_images_are_cropped_at_the_centre_and_quantised(tmp_path):
    # 60 x 20: red, green, blue thirds; covering a square crops the centre third
    strip = Image.new("RGB", (60, 20))
    for i, colour in enumerate((RED, GREEN, BLUE)):
        strip.paste(colour, (20 * i, 0, 20 * i + 20, 20))
    (tmp_path / "flat").mkdir()
    for i in range(3):
        strip.save(tmp_path / "flat" / f"s{i}.png")
    name = f"folder:{tmp_path / 'flat'}"
    spec = describe(name, image_size=10)
    assert spec.shape == (3, 10, 10) and spec.num_classes == 0  # no class folders: unconditioned
    data = load_images(name, "", True, 4, image_size=10)
    green = quantize(torch.tensor(GREEN, dtype=torch.uint8), 4).to(torch.uint8).view(3, 1, 1)
    assert data.tensors[0].shape[1:] == (3, 10, 10)
    assert torch.equal(data.tensors[0][0, :, 1:-1, 1:-1], green.expand(3, 8, 8))  # the rim may blend


def test_every_file_is_decoded_once_and_the_split_is_stable(tmp_path, monkeypatch):
    name = class_folder(tmp_path / "pets")
    decoded = []
    decode = image_folder.decode

    def counting(path, size):
        decoded.append(path)
        return decode(path, size)

    monkeypatch.setattr(image_folder, "decode", counting)
    first = [load_images(name, "", split, 4) for split in (True, False)]
    assert sorted(decoded) == sorted(set(decoded)) and len(decoded) == 2 * PER_CLASS + 2
    again = [load_images(name, "", split, 4) for split in (True, False)]
    for a, b in zip(first, again):
        assert all(torch.equal(x, y) for x, y in zip(a.tensors, b.tensors))


def test_split_holds_out_a_share_of_each_class_and_at_least_one_item():
    labels = [0] * 30 + [1] * 5 + [2] * 10
    val = image_folder.split(labels, False, 0.1, seed=0)
    train_items = image_folder.split(labels, True, 0.1, seed=0)
    assert sorted(val + train_items) == list(range(len(labels)))
    assert np.bincount(np.asarray(labels)[val], minlength=3).tolist() == [3, 0, 1]
    assert len(image_folder.split([0, 0, 1], False, 0.1, seed=0)) == 1  # nothing rounds up: one of class 0


def test_train_and_infer_on_class_folders_by_name(tmp_path, capsys, monkeypatch):
    name = class_folder(tmp_path / "pets")
    out = str(tmp_path / "run")
    assert run_main("train.py", ["--dataset", name, *TINY_MODEL, "-b", "8", "-e", "1", "-o", out]) == 0
    printed = capsys.readouterr().out
    line = next(line for line in printed.splitlines() if line.startswith(name))
    assert "validation images of 32x32 from 24 of 26 files, 2 classes (cat, dog)" in line, line
    assert "skipped 2: 1 not an image (cat/notes.txt), 1 unreadable (dog/broken.jpg)" in line, line
    model = checkpoint.load(checkpoint.resolve(out, "pixelcnn_"))
    assert model["meta"]["classes"] == ["cat", "dog"] and model["config"]["num_classes"] == 2
    grid = str(tmp_path / "dogs.png")
    assert run_main("infer.py", ["-m", out, "-c", "2", "--label", "dog", "-o", grid]) == 0
    assert "wrote 2x2 samples of class dog" in capsys.readouterr().out
    assert run_main("infer.py", ["-m", out, "-c", "1", "--label", "1", "-o", grid]) == 0
    status = run_main("infer.py", ["-m", out, "-c", "1", "--label", "fox", "-o", grid], monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, "--label fox is not a class of this model: it knows "
                          "labels 0..1 or one of cat, dog")  # fmt: skip
    status = run_main("infer.py", ["-m", out, "-c", "1", "--label", "2", "-o", grid], monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, "--label 2 is out of range")


def test_a_flat_folder_trains_an_unconditioned_model(tmp_path, capsys, monkeypatch):
    for i in range(6):
        solid(tmp_path / "flat" / f"{i}.png", (16, 16), GREEN)
    out, grid = str(tmp_path / "run"), str(tmp_path / "grid.png")
    argv = ["--dataset", f"folder:{tmp_path / 'flat'}", "--image_size", "8", *TINY_MODEL, "-b", "4", "-e", "1"]
    assert run_main("train.py", [*argv, "-o", out]) == 0
    assert "no class folders: unconditioned" in capsys.readouterr().out
    model = checkpoint.load(checkpoint.resolve(out, "pixelcnn_"))
    assert model["config"]["num_classes"] == 0 and model["meta"]["classes"] == []
    assert (model["meta"]["height"], model["meta"]["width"]) == (8, 8)
    assert run_main("infer.py", ["-m", out, "-c", "2", "-o", grid]) == 0
    status = run_main("infer.py", ["-m", out, "-c", "1", "--label", "0", "-o", grid], monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, "this model is unconditioned")


@pytest.fixture
def bad_folders(tmp_path):
    """{name: --dataset value} of folders no model can be trained on."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "hidden_only").mkdir()
    (tmp_path / "hidden_only" / ".DS_Store").write_bytes(b"x")
    solid(tmp_path / "one_empty_class" / "cat" / "c.png", (8, 8), RED)
    (tmp_path / "one_empty_class" / "dog").mkdir()
    (tmp_path / "no_images" / "cat").mkdir(parents=True)
    for i in range(12):
        (tmp_path / "no_images" / "cat" / f"{i}.txt").write_text("words")
    solid(tmp_path / "unreadable_class" / "cat" / "c.png", (8, 8), RED)
    solid(tmp_path / "unreadable_class" / "cat" / "d.png", (8, 8), RED)
    (tmp_path / "unreadable_class" / "dog").mkdir()
    (tmp_path / "unreadable_class" / "dog" / "d.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "file").write_text("a file")
    return {name: f"folder:{tmp_path / name}" for name in os.listdir(tmp_path)} | {
        "missing": f"folder:{tmp_path / 'missing'}"
    }


@pytest.mark.parametrize(
    "folder, fragment",
    [
        ("empty", "holds no files; put images into it"),
        ("hidden_only", "holds no files"),
        ("missing", "does not exist; pass a folder of images"),
        ("file", "is a file, not a folder"),
        ("one_empty_class", "class folder 'dog' holds no files (1 of 2 class folders are empty)"),
        ("no_images", "none of the 11 files of its training share is a readable image (11 not an image"),
        ("unreadable_class", "class folder 'dog' has no readable image to train on"),
    ],
)
def test_a_folder_that_cannot_be_trained_on_is_one_line(bad_folders, folder, fragment, tmp_path, capsys, monkeypatch):
    argv = ["--dataset", bad_folders[folder], *TINY_MODEL, "-e", "1", "-o", str(tmp_path / "run")]
    status = run_main("train.py", argv, monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, fragment)
    assert not os.path.exists(tmp_path / "run")


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--dataset", "folder:"], "names no folder; pass folder:PATH"),
        (["--dataset", "digits", "--image_size", "16"], "--image_size applies to --dataset folder:PATH only"),
        (["--dataset", "folder:x", "--image_size", "0"], "--image_size: must be a positive integer"),
    ],
)
def test_dataset_flag_mistakes_are_one_line(argv, fragment, tmp_path, capsys, monkeypatch):
    status = run_main("train.py", [*argv, *TINY_MODEL, "-o", str(tmp_path / "run")], monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, fragment)


def test_resuming_after_a_class_was_added_is_one_line(tmp_path, capsys, monkeypatch):
    name = class_folder(tmp_path / "pets")
    out = str(tmp_path / "run")
    argv = ["--dataset", name, *TINY_MODEL, "-b", "8", "-o", out]
    assert run_main("train.py", [*argv, "-e", "1"]) == 0
    for i in range(3):
        solid(tmp_path / "pets" / "fox" / f"f{i}.png", (8, 8), GREEN)
    status = run_main("train.py", [*argv, "-e", "2", "--resume", out], monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, "was trained with num_classes 2; this run has num_classes 3")


# --- Fashion-MNIST -----------------------------------------------------------------------------------------------


def write_idx(path, array, gz):
    """An IDX file of unsigned bytes (MNIST's and Fashion-MNIST's format), gzipped as downloaded if gz."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with (gzip.open if gz else open)(str(path) + (".gz" if gz else ""), "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_fashion_mnist(root, n=16, gz=True):
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (n, 28, 28)), np.arange(n) % 10
    for split in ("train", "t10k"):
        write_idx(raw / f"{split}-images-idx3-ubyte", images, gz)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels, gz)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_its_idx_files(tmp_path, gz):
    images, labels = fake_fashion_mnist(tmp_path, gz=gz)
    data = load_images("fashion-mnist", str(tmp_path), False, 256)
    q, label = data[5]
    assert q.shape == (3, 28, 28) and torch.equal(q[1], torch.from_numpy(images[5]).to(torch.uint8))
    assert label.item() == labels[5]
    assert describe("fashion-mnist").classes == FASHION_MNIST_CLASSES


def test_fashion_mnist_class_names_are_torchvisions():
    assert list(FASHION_MNIST_CLASSES) == torchvision.datasets.FashionMNIST.classes


def test_fashion_mnist_offline_is_one_clear_error(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_network)
    with pytest.raises(UserError, match="could not download Fashion-MNIST.*FashionMNIST/raw.*--dataset digits"):
        load_images("fashion-mnist", str(tmp_path), True, 2)


def test_train_on_fashion_mnist_and_sample_a_class_by_name(tmp_path, capsys):
    fake_fashion_mnist(tmp_path / "data")
    out, grid = str(tmp_path / "run"), str(tmp_path / "grid.png")
    argv = ["--dataset", "fashion-mnist", "--data_dir", str(tmp_path / "data"), *TINY_MODEL, "-b", "8", "-e", "1"]
    assert run_main("train.py", [*argv, "-o", out]) == 0
    model = checkpoint.load(checkpoint.resolve(out, "pixelcnn_"))
    assert model["meta"]["classes"] == list(FASHION_MNIST_CLASSES)
    assert run_main("infer.py", ["-m", out, "-c", "1", "--label", "Ankle boot", "-o", grid]) == 0
    assert "of class Ankle boot" in capsys.readouterr().out
    model = checkpoint.build_model(model, "GatedPixelCNN")
    assert infer.class_index("Sandal", FASHION_MNIST_CLASSES, model) == 5


def test_only_sets_with_named_classes_record_them():
    assert describe("digits").classes is None and describe("mnist").classes is None
    assert train.build_parser().parse_args([]).image_size is None  # folder:PATH's default is FOLDER_IMAGE_SIZE
