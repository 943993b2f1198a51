"""Image data sets for Gated PixelCNN: MNIST, Fashion-MNIST and CIFAR-10 (torchvision), scikit-learn's 8x8
digits, and a folder of the user's own images (folder:PATH).

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
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from . import image_folder
from .errors import UserError

DATASETS = ("mnist", "fashion-mnist", "cifar", "digits")
FOLDER = "folder:"  # --dataset folder:PATH, the user's own images
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"  # what torchvision downloads and checks
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
# the sets in MNIST's IDX files: --dataset name -> (torchvision class and its folder under --data_dir, shown name)
IDX_SETS = {"mnist": ("MNIST", "MNIST"), "fashion-mnist": ("FashionMNIST", "Fashion-MNIST")}
# torchvision.datasets.FashionMNIST.classes, here so that training on files already downloaded does not import
# torchvision (2.2 s); a test checks that they agree
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"
)  # fmt: skip
DIGITS_TEST_FRACTION = 0.2
FOLDER_IMAGE_SIZE = 32  # --image_size of folder:PATH when not given: CIFAR-10's size
FOLDER_VAL_FRACTION = 0.1  # share of each class's images held out for validation (at least one image in all)
DEFAULT_DATA_DIR = "data"  # train.py's --data_dir: where the downloads go
FOLDER_SPLIT_SEED = 0  # the split depends on the files alone, not on --seed, as digits' does


def quantize(pixels, levels):
    """uint8 pixels (any shape) -> long levels 0..levels-1 (equal-width bins)."""
    return (pixels.long() * levels) // 256


def dequantize(q, levels):
    """Levels 0..levels-1 -> floats q / (levels - 1) in [0, 1]: the model's input and the images we save."""
    return q.float() / (levels - 1)


# (C, H, W) as load_images gives them (grey tiled to RGB)
IMAGE_SHAPES = {"mnist": (3, 28, 28), "fashion-mnist": (3, 28, 28), "cifar": (3, 32, 32), "digits": (3, 8, 8)}


@dataclass(frozen=True)
class ImageSpec:
    """What a data set gives, known before it is loaded (a folder is only listed).

    shape: (C, H, W) as load_images returns the images (grey tiled to RGB); num_classes: the labels a model
    is conditioned on (0: a flat folder, unconditioned); classes: their names, or None where labels are the
    digits 0..9 (MNIST, CIFAR-10's batches, digits).
    """

    shape: tuple
    num_classes: int
    classes: tuple | None = None


def describe(name, image_size=None):
    """The ImageSpec of --dataset `name`; image_size: --image_size (folder:PATH only, None: not given).

    UserError for an unknown name, a folder that is missing or holds nothing to train on, and an
    --image_size given for a set of fixed size.
    """
    if name.startswith(FOLDER):
        size = FOLDER_IMAGE_SIZE if image_size is None else image_size
        classes, _, _ = image_folder.list_folder(name, FOLDER)
        return ImageSpec((3, size, size), len(classes), tuple(classes))
    if name not in IMAGE_SHAPES:
        raise UserError(f"--dataset {name!r} is unknown; choose one of {', '.join(DATASETS)} or {FOLDER}PATH")
    if image_size is not None:
        C, H, W = IMAGE_SHAPES[name]
        raise UserError(
            f"--image_size applies to --dataset {FOLDER}PATH only; {name} images are {H}x{W}: drop --image_size"
        )
    classes = FASHION_MNIST_CLASSES if name == "fashion-mnist" else None
    return ImageSpec(IMAGE_SHAPES[name], 10, classes)


class ImageSet(TensorDataset):
    """(levels uint8 [C, H, W], label long) pairs, and what loading them skipped (folder:PATH).

    skipped: {reason: [file names]} of the files that gave no image; files: how many files were looked at.
    """

    def __init__(self, images, labels, skipped=None, files=None):
        super().__init__(images, labels)
        self.skipped = skipped or {}
        self.files = len(images) if files is None else files


def load_images(name, root, train, levels, image_size=None):
    """One split of a data set as an ImageSet of (levels uint8 [C, H, W], label long).

    name: 'mnist', 'fashion-mnist', 'cifar', 'digits' or 'folder:PATH'; root: where torchvision keeps
    downloads; image_size: the side folder:PATH images are resized and cropped to (None: FOLDER_IMAGE_SIZE).
    A folder's validation split (train=False) is FOLDER_VAL_FRACTION of each class; each call decodes only its
    split's files, so the two calls decode every file once.
    """
    if not 2 <= levels <= 256:
        raise UserError(f"--levels {levels}: pick a number of levels from 2 to 256")
    if name.startswith(FOLDER):  # listed as it is read: UserError for a missing or empty folder
        size = FOLDER_IMAGE_SIZE if image_size is None else image_size
        pixels, labels, skipped, files = image_folder.load_folder(
            name, FOLDER, train, size, FOLDER_VAL_FRACTION, FOLDER_SPLIT_SEED
        )
    else:
        describe(name, image_size)  # UserError for an unknown name
        loaders = {"cifar": load_cifar, "digits": load_digits}
        pixels, labels = loaders[name](root, train) if name in loaders else load_idx_set(name, root, train)
        skipped, files = {}, len(pixels)
    q = quantize_images(pixels, levels, out=pixels)  # uint8 (N, C, H, W); in place: each loader's pixels are its own
    if q.shape[1] == 1:
        # grey -> RGB, as the original; a view, so the three channels share one copy of the values
        q = q.expand(-1, 3, -1, -1)
    return ImageSet(q, labels.long(), skipped, files)


# images quantised at once: quantize's int64 temporaries of 128 CIFAR images are 3 MB each. Those of 1024 (25 MB)
# stayed resident once freed (glibc keeps blocks under its mmap threshold, raised to 30 MB by a freed CIFAR batch)
QUANTIZE_CHUNK = 128


def quantize_images(pixels, levels, out=None):
    """quantize() over a whole set, uint8 (N, C, H, W) -> uint8 levels (N, C, H, W), a chunk of images at a time.

    quantize works in int64, 8 bytes per value: on the whole of CIFAR-10 at once that is 1.2 GB, and
    MNIST tiled to RGB first was 1.1 GB per temporary. In chunks, and before grey is tiled to RGB, the
    temporaries stay small; the values are quantize's own. out: the uint8 tensor the levels go to (pixels
    itself quantises in place, which saves a copy of the set); None: a new one.
    """
    q = torch.empty(pixels.shape, dtype=torch.uint8) if out is None else out
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


def load_idx_set(name, root, train):
    """MNIST or Fashion-MNIST (`name`): the IDX files in root/<folder>/raw, downloaded there through torchvision
    when missing -> (uint8 [N, 1, 28, 28], long [N])."""
    folder, shown = IDX_SETS[name]
    raw = os.path.join(root, folder, "raw")
    for file in MNIST_FILES:  # torchvision reads extracted IDX files; accept the .gz downloads too
        path = os.path.join(raw, file)
        if not os.path.exists(path) and os.path.exists(path + ".gz"):
            with gzip.open(path + ".gz", "rb") as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
    if all(os.path.exists(os.path.join(raw, file)) for file in MNIST_FILES):
        # what torchvision.datasets.MNIST would read, without importing torchvision (2.2 s and
        # 160 MB of memory) and without its copies of the images
        split = "train" if train else "t10k"
        images = read_idx(os.path.join(raw, f"{split}-images-idx3-ubyte"), 3)
        return images[:, None], read_idx(os.path.join(raw, f"{split}-labels-idx1-ubyte"), 1).long()
    import torchvision  # here, not at the top: only downloads need it, and it loads slowly

    try:
        data = getattr(torchvision.datasets, folder)(root=root, train=train, download=True)
    except PermissionError:
        raise UserError(f"cannot write {shown} into {raw!r}; pass a writable --data_dir") from None
    except (OSError, RuntimeError):  # torchvision raises RuntimeError once every mirror failed
        raise offline_error(shown, raw, ", ".join(MNIST_FILES) + " (or their .gz)") from None
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
    folder = os.path.join(root, CIFAR_FOLDER)
    names = [f"data_batch_{i}" for i in range(1, 6)] if train else ["test_batch"]
    if not all(os.path.exists(os.path.join(folder, n)) for n in names):
        import torchvision  # only a download needs it: 160 MB of memory (see load_idx_set)

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
    # one tensor filled a batch at a time: a list of the batches and their torch.cat held the set twice
    pixels, labels, start = None, [], 0
    for i, name in enumerate(names):
        images, batch_labels = read_cifar_batch(os.path.join(folder, name))
        if pixels is None or start + len(images) > len(pixels):  # sized by the first batch: official ones are equal
            rest = torch.empty(((len(names) - i) * len(images), 3, 32, 32), dtype=torch.uint8)
            pixels = rest if pixels is None else torch.cat([pixels[:start], rest])
        pixels[start : start + len(images)] = images
        labels.append(batch_labels)
        start += len(images)
    return pixels[:start], torch.cat(labels)


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
