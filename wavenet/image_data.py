"""Image data sets for Gated PixelCNN: MNIST and CIFAR-10 (torchvision) and scikit-learn's 8x8 digits.

Every set becomes quantised values: pixel p in 0..255 falls into level
q = floor(p * levels / 256) (equal-width bins, as the original's np.digitize),
and the model reads q / (levels - 1). Grey images are tiled to RGB as the
original did.
"""

import gzip
import math
import os
import pickle
import shutil
import struct

import numpy as np
import torch
from torch.utils.data import TensorDataset

from .errors import UserError

DATASETS = ("mnist", "cifar", "digits")
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"  # what torchvision downloads and checks
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
DIGITS_TEST_FRACTION = 0.2


def quantize(pixels, levels):
    """uint8 pixels (any shape) -> long levels 0..levels-1 (equal-width bins)."""
    return (pixels.long() * levels) // 256


def dequantize(q, levels):
    """Levels 0..levels-1 -> floats q / (levels - 1) in [0, 1]: the model's input and the images we save."""
    return q.float() / (levels - 1)


IMAGE_SHAPES = {"mnist": (3, 28, 28), "cifar": (3, 32, 32), "digits": (3, 8, 8)}  # (C, H, W) as load_images gives them


def image_shape(name):
    """(C, H, W) of data set `name`'s images as load_images returns them (grey tiled to RGB), before loading it."""
    if name not in IMAGE_SHAPES:
        raise UserError(f"--dataset {name!r} is unknown; choose one of {', '.join(DATASETS)}")
    return IMAGE_SHAPES[name]


def load_images(name, root, train, levels):
    """One split of a data set as a TensorDataset of (levels uint8 [C, H, W], label long).

    name: 'mnist', 'cifar' or 'digits'; root: where torchvision keeps downloads.
    """
    loaders = {"mnist": load_mnist, "cifar": load_cifar, "digits": load_digits}
    image_shape(name)  # UserError for an unknown name
    if not 2 <= levels <= 256:
        raise UserError(f"--levels {levels}: pick a number of levels from 2 to 256")
    pixels, labels = loaders[name](root, train)  # uint8 (N, C, H, W), (N,)
    q = quantize_images(pixels, levels)
    if q.shape[1] == 1:
        # grey -> RGB, as the original; a view, so the three channels share one copy of the values
        q = q.expand(-1, 3, -1, -1)
    return TensorDataset(q, labels.long())


QUANTIZE_CHUNK = 1024  # images quantised at once: quantize's int64 temporaries of 1024 CIFAR images are 25 MB each


def quantize_images(pixels, levels):
    """quantize() over a whole set, uint8 (N, C, H, W) -> uint8 levels (N, C, H, W), a chunk of images at a time.

    quantize works in int64, 8 bytes per value: on the whole of CIFAR-10 at once that is 1.2 GB, and
    MNIST tiled to RGB first was 1.1 GB per temporary. In chunks, and before grey is tiled to RGB, the
    temporaries stay small; the values are quantize's own.
    """
    q = torch.empty(pixels.shape, dtype=torch.uint8)
    for start in range(0, len(pixels), QUANTIZE_CHUNK):
        q[start : start + QUANTIZE_CHUNK] = quantize(pixels[start : start + QUANTIZE_CHUNK], levels)
    return q


def load_digits(_root, train):
    """scikit-learn's 1,797 real 8x8 handwritten digits (values 0..16), split 80/20 with a fixed seed."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    pixels = torch.from_numpy(np.round(digits.images * 255 / 16).astype(np.uint8))[:, None]
    labels = torch.from_numpy(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    n_test = int(len(labels) * DIGITS_TEST_FRACTION)
    keep = order[n_test:] if train else order[:n_test]
    return pixels[keep], labels[keep]


def offline_error(name, folder, files):
    return UserError(
        f"could not download {name} (no internet?): put {files} into {folder} "
        "and run again, or train offline with --dataset digits"
    )


def load_mnist(root, train):
    """MNIST's IDX files in root/MNIST/raw, downloaded there through torchvision when missing."""
    raw = os.path.join(root, "MNIST", "raw")
    for name in MNIST_FILES:  # torchvision reads extracted IDX files; accept the .gz downloads too
        path = os.path.join(raw, name)
        if not os.path.exists(path) and os.path.exists(path + ".gz"):
            with gzip.open(path + ".gz", "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
    if all(os.path.exists(os.path.join(raw, name)) for name in MNIST_FILES):
        # what torchvision.datasets.MNIST would read, without importing torchvision (2.2 s and
        # 160 MB of memory) and without its copies of the images
        split = "train" if train else "t10k"
        images = read_idx(os.path.join(raw, f"{split}-images-idx3-ubyte"), 3)
        return images[:, None], read_idx(os.path.join(raw, f"{split}-labels-idx1-ubyte"), 1).long()
    import torchvision  # here, not at the top: only downloads need it, and it loads slowly

    try:
        data = torchvision.datasets.MNIST(root=root, train=train, download=True)
    except PermissionError:
        raise UserError(f"cannot write MNIST into {raw!r}; pass a writable --data_dir") from None
    except (OSError, RuntimeError):  # torchvision raises RuntimeError once every mirror failed
        raise offline_error("MNIST", raw, ", ".join(MNIST_FILES) + " (or their .gz)") from None
    return data.data[:, None], data.targets


def read_idx(path, dims):
    """An IDX file of unsigned bytes with `dims` dimensions (MNIST's format) -> uint8 tensor of its shape."""
    header = 4 + 4 * dims  # magic 0, 0, type 0x08 (unsigned byte), dims; then each size, big-endian uint32
    with open(path, "rb") as f:
        head = f.read(header)
        shape = struct.unpack(f">{dims}I", head[4:]) if len(head) == header else ()
        if head[:4] != bytes((0, 0, 0x08, dims)) or len(shape) != dims:
            raise UserError(f"{path!r} is not an MNIST IDX file; delete it so that it is downloaded again")
        values = np.fromfile(f, np.uint8)
    if values.size != math.prod(shape):
        raise UserError(
            f"{path!r} holds {values.size:,} values, its header promises {math.prod(shape):,} (a download cut "
            "short?); delete it so that it is downloaded again"
        )
    return torch.from_numpy(values.reshape(shape))


def latin1_bytes(text, encoding="latin1"):
    """What pickle protocol 2 stores bytes as under Python 3 (`_codecs.encode(text, "latin1")`), allowing
    only that codec: any other could look up a codec module."""
    if encoding not in ("latin1", "latin-1"):
        raise UserError(f"refusing to decode a CIFAR batch's bytes with codec {encoding!r}; download it again")
    return text.encode("latin1")


class ArrayUnpickler(pickle.Unpickler):
    """Reads CIFAR's pickled batches (dicts, lists, numpy arrays) and refuses anything that could run code.

    The official batches are Python 2 pickles; batches saved again by Python 3 store bytes through
    `_codecs.encode` (protocol 2) and arrays through numpy's `_frombuffer` (protocol 5).
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return latin1_bytes
        if (module, name) not in self.ALLOWED:
            raise UserError(
                f"refusing to load {module}.{name} from a CIFAR batch file: "
                "the file is not a CIFAR-10 python batch; download it again"
            )
        return super().find_class(module, name)


def load_cifar(root, train):
    """CIFAR-10 python batches: read from root/cifar-10-batches-py, downloaded by torchvision if absent."""
    import torchvision  # see load_mnist

    folder = os.path.join(root, CIFAR_FOLDER)
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if not all(os.path.exists(os.path.join(folder, n)) for n in names):
        try:
            torchvision.datasets.CIFAR10(root=root, train=train, download=True)
        except (OSError, RuntimeError):
            archive = os.path.join(root, CIFAR_ARCHIVE)
            if os.path.isfile(archive):  # torchvision found it, failed its checksum and tried to download
                raise UserError(
                    f"{archive!r} does not match torchvision's checksum of CIFAR-10 (a partial or other "
                    f"download?) and no new copy could be downloaded; replace it with the official "
                    f"{CIFAR_ARCHIVE}, or put its extracted {CIFAR_FOLDER} folder into {root!r}"
                ) from None
            raise offline_error("CIFAR-10", root, f"{CIFAR_ARCHIVE} (or its extracted {CIFAR_FOLDER} folder)") from None
    batches = [read_cifar_batch(os.path.join(folder, n)) for n in names]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def read_cifar_batch(path):
    """One CIFAR-10 python batch file -> (uint8 [N, 3, 32, 32], long [N])."""
    try:
        with open(path, "rb") as f:
            batch = ArrayUnpickler(f, encoding="latin1").load()
        # keys are str in the official files, bytes in a batch a Python 3 script loaded with
        # encoding="bytes" and saved again
        data, labels = (batch[key] if key in batch else batch[key.encode()] for key in ("data", "labels"))
        images = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = torch.tensor(labels)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
        raise UserError(
            f"{path!r} is not a CIFAR-10 python batch ({type(e).__name__}); delete it so that it is downloaded again"
        ) from None
    return torch.from_numpy(images), labels
