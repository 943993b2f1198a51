"""Image loaders on small files in the real MNIST (IDX) and CIFAR-10 (python batch) formats."""

import gzip
import os
import pickle
import struct
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from helpers import SHARED_DATA

from wavenet.errors import UserError
from wavenet.image_data import dequantize, load_images, quantize, read_cifar_batch


def write_idx(path, array, gz):
    """An IDX file of unsigned bytes, as MNIST ships them."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if gz else open
    with opener(path + (".gz" if gz else ""), "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def fake_mnist(root, n=12, gz=True):
    raw = os.path.join(root, "MNIST", "raw")
    os.makedirs(raw)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (n, 28, 28)), rng.integers(0, 10, n)
    for split in ("train", "t10k"):
        write_idx(os.path.join(raw, f"{split}-images-idx3-ubyte"), images, gz)
        write_idx(os.path.join(raw, f"{split}-labels-idx1-ubyte"), labels, gz)
    return images, labels


def no_network(*args, **kwargs):
    raise urllib.error.URLError("no network in this test")


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_files_load_through_torchvision(tmp_path, gz):
    images, labels = fake_mnist(str(tmp_path), gz=gz)
    data = load_images("mnist", str(tmp_path), True, 4)
    q, label = data[3]
    assert q.shape == (3, 28, 28) and q.dtype == torch.uint8
    assert torch.equal(q[0], quantize(torch.from_numpy(images[3]), 4).to(torch.uint8))
    assert torch.equal(q[0], q[2]), "grey images are tiled to RGB"
    assert label.item() == labels[3]


def test_cifar_python_batches_load(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (4, 3072)).astype(np.uint8), "labels": [1, 2, 3, 4]}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    train = load_images("cifar", str(tmp_path), True, 256)
    test = load_images("cifar", str(tmp_path), False, 256)
    assert len(train) == 20 and len(test) == 4
    q, label = test[0]
    assert q.shape == (3, 32, 32) and label.item() == 1
    assert torch.equal(q.reshape(-1), torch.from_numpy(batch["data"][0]))  # 256 levels keep every value


@pytest.mark.parametrize("protocol, keys", [(2, str), (5, str), (2, bytes), (5, bytes)])
def test_cifar_batches_saved_again_by_python3_load(tmp_path, protocol, keys):
    # protocol 2 stores bytes through _codecs.encode, protocol 5 arrays through numpy's _frombuffer;
    # a batch loaded with encoding="bytes" and saved again has bytes keys
    path = tmp_path / "test_batch"
    data = np.random.default_rng(1).integers(0, 256, (3, 3072)).astype(np.uint8)
    key = (lambda name: name) if keys is str else str.encode
    with open(path, "wb") as f:
        pickle.dump(
            {key("data"): data, key("labels"): [7, 8, 9], key("filenames"): [b"a.png"] * 3}, f, protocol=protocol
        )
    images, labels = read_cifar_batch(str(path))
    assert torch.equal(images.reshape(3, -1), torch.from_numpy(data)) and labels.tolist() == [7, 8, 9]


def test_a_cifar_batch_asking_for_another_codec_is_refused(tmp_path):
    class OtherCodec:
        def __reduce__(self):
            import _codecs

            return (_codecs.encode, ("text", "rot13"))

    path = tmp_path / "test_batch"
    with open(path, "wb") as f:
        pickle.dump({"data": OtherCodec(), "labels": []}, f, protocol=2)
    with pytest.raises(UserError, match="codec 'rot13'"):
        read_cifar_batch(str(path))


def test_cifar_batch_that_would_run_code_is_refused(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    with open(folder / "test_batch", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(UserError, match="refusing"):
        load_images("cifar", str(tmp_path), False, 4)
    assert not os.path.exists("pwned")


def test_offline_download_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", no_network)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    for name, place in (("mnist", "MNIST/raw"), ("cifar", "cifar-10-python.tar.gz")):
        with pytest.raises(UserError, match=f"could not download.*{place}.*--dataset digits"):
            load_images(name, str(tmp_path), True, 2)


def test_a_cifar_archive_failing_its_checksum_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", no_network)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"half a download")
    with pytest.raises(UserError, match="does not match torchvision's checksum"):
        load_images("cifar", str(tmp_path), False, 4)


def test_unknown_dataset_and_levels():
    with pytest.raises(UserError, match="--dataset 'svhn' is unknown"):
        load_images("svhn", "", True, 2)
    with pytest.raises(UserError, match="--levels 1"):
        load_images("digits", "", True, 1)


def test_digits_is_the_real_embedded_set():
    train, test = load_images("digits", "", True, 256), load_images("digits", "", False, 256)
    assert len(train) + len(test) == 1797
    assert train.tensors[0].shape[1:] == (3, 8, 8)
    assert set(train.tensors[1].tolist()) == set(range(10))


def test_quantisation_levels_round_trip():
    pixels = torch.arange(256, dtype=torch.uint8)
    for levels in (2, 4, 256):
        q = quantize(pixels, levels)
        assert q.min() == 0 and q.max() == levels - 1
        assert torch.equal(q.bincount(), torch.full((levels,), 256 // levels))  # equal-width bins
        x = dequantize(q, levels)
        assert x.min() == 0 and x.max() == 1
        assert torch.equal(torch.round(x * (levels - 1)).long(), q)


@pytest.mark.skipif(
    not os.path.exists(os.path.join(SHARED_DATA, "MNIST", "raw")), reason="real MNIST not in ../shared/data"
)
def test_real_mnist_test_split():
    data = load_images("mnist", SHARED_DATA, False, 2)
    assert len(data) == 10000
    assert data.tensors[1][:5].tolist() == [7, 2, 1, 0, 4]  # the official test set's first labels
