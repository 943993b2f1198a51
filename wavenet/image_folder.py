"""--dataset folder:PATH: a folder of one's own images, decoded into one compact uint8 tensor per split.

One subfolder per class, as torchvision's ImageFolder reads them (a subfolder's subfolders belong to
its class), gives class conditioning; a folder with no subfolders is one set of images, trained
unconditioned. Every image is converted to RGB and resized and centre-cropped to a square. Files that
are no image or cannot be decoded are skipped and counted; hidden files and folders (.DS_Store, .git)
are not looked at.
"""

import math
import os
import warnings

import numpy as np
import torch

from . import limits
from .distributed import environment
from .errors import UserError
from .report import bar

NOT_IMAGE = "not an image"
UNREADABLE = "unreadable"
OUTSIDE = "outside the class folders"  # files beside the class folders, which ImageFolder ignores too


def folder_path(name, prefix):
    """The PATH of --dataset `name` = prefix + PATH; UserError if it names no folder."""
    path = name[len(prefix) :]
    if not path:
        raise UserError(f"--dataset {name!r} names no folder; pass {prefix}PATH, e.g. {prefix}data/my_images")
    if not os.path.isdir(path):
        what = "is a file, not a folder" if os.path.exists(path) else "does not exist"
        raise UserError(
            f"--dataset {name!r}: {path!r} {what}; pass a folder of images (one subfolder per class, "
            "or all in one folder for an unconditioned model)"
        )
    return path


def _visible(path):
    return not os.path.basename(path).startswith(".")


def list_folder(name, prefix):
    """The classes and files of --dataset `name`, without opening a file.

    Returns (classes: sorted subfolder names, [] for a flat folder; files: [(path, class index)] in
    ImageFolder's order; outside: names of files beside the class folders, not used). UserError for a
    folder with nothing in it and for a class folder with no file.
    """
    path = folder_path(name, prefix)
    entries = sorted((e for e in os.scandir(path) if _visible(e.name)), key=lambda e: e.name)
    classes = [e.name for e in entries if e.is_dir()]
    if not classes:
        files = [(e.path, 0) for e in entries if e.is_file()]
        if not files:
            raise UserError(
                f"--dataset {name!r}: {path!r} holds no files; put images into it (one subfolder per class, "
                "or all in it for an unconditioned model)"
            )
        return classes, files, []
    from torchvision.datasets.folder import make_dataset  # ImageFolder's own walk; torchvision loads slowly

    index = {c: i for i, c in enumerate(classes)}
    files = make_dataset(path, index, is_valid_file=_visible, allow_empty=True)
    found = {i for _, i in files}
    empty = [c for c in classes if index[c] not in found]
    if empty:
        raise UserError(
            f"--dataset {name!r}: class folder {empty[0]!r} holds no files ({len(empty)} of {len(classes)} "
            "class folders are empty); add images to it or remove it"
        )
    return classes, files, [e.name for e in entries if e.is_file()]


def split(labels, train, fraction, seed):
    """Indices of one split of items with class `labels` (a list): `fraction` of each class, rounded down,
    validates (train=False), the rest trains; where that holds out nothing, one item of the largest
    class validates. The same labels always give the same split."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        held.extend(members[: math.floor(len(members) * fraction)].tolist())
    if not held:
        largest = np.bincount(labels).argmax()
        held = [int(rng.permutation(np.flatnonzero(labels == largest))[0])]
    held = set(held)
    return [i for i in range(len(labels)) if (i in held) != train]


def decode(path, size):
    """An image file -> uint8 (3, size, size): RGB, resized to cover the square and cropped at the centre.

    Raises ValueError(NOT_IMAGE) for a file that is no image, ValueError(UNREADABLE) for one that cannot be
    decoded (cut short, corrupt).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # palette transparency notes, EXIF quirks: the pixels are fine
            with Image.open(path) as image:
                image.draft("RGB", (size, size))  # a JPEG decodes at the smallest scale that still covers the square
                rgb = image.convert("RGB")  # decodes the file: a truncated one fails here
        square = ImageOps.fit(rgb, (size, size), Image.Resampling.BICUBIC)
    except UnidentifiedImageError:
        raise ValueError(NOT_IMAGE) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError):
        raise ValueError(UNREADABLE) from None
    return torch.from_numpy(np.asarray(square, dtype=np.uint8).transpose(2, 0, 1).copy())


def load_folder(name, prefix, train, size, fraction, seed):
    """One split of --dataset `name` (prefix + PATH), decoded -> (uint8 (N, 3, size, size), long (N,),
    skipped {reason: [file names]}, files looked at, those beside the class folders with the training split).

    UserError if no file of the split is an image, or a class keeps no image to train on.
    """
    classes, files, outside = list_folder(name, prefix)
    root = folder_path(name, prefix)
    chosen = [files[i] for i in split([c for _, c in files], train, fraction, seed)]
    limits.check_memory(
        len(chosen) * 3 * size * size,
        f"--dataset {name} ({len(chosen):,} files at --image_size {size}, uint8)",
        "pass a smaller --image_size or fewer images",
    )
    pixels = torch.empty(len(chosen), 3, size, size, dtype=torch.uint8)
    labels, skipped = [], {}
    split_name = "training" if train else "validation"
    # every torchrun process reads the images; one bar is enough
    shown = bar(chosen, desc=f"reading {split_name} images", unit="image", disable=environment().rank != 0)
    for path, label in shown:
        try:
            pixels[len(labels)] = decode(path, size)
        except ValueError as e:  # NOT_IMAGE or UNREADABLE
            skipped.setdefault(str(e), []).append(os.path.relpath(path, root))
            continue
        labels.append(label)
    if train and outside:  # counted once, with the training split
        skipped[OUTSIDE] = outside
    if not labels:
        raise UserError(
            f"--dataset {name!r}: none of the {len(chosen)} files of its {split_name} share is a readable image "
            f"({summarize_skipped(skipped)}); add images"
        )
    if train and classes:
        missing = sorted(set(range(len(classes))) - set(labels))
        if missing:
            raise UserError(
                f"--dataset {name!r}: class folder {classes[missing[0]]!r} has no readable image to train on; "
                "add images to it or remove it"
            )
    tried = len(chosen) + (len(outside) if train else 0)
    if len(labels) < len(chosen):
        pixels = pixels[: len(labels)].clone()  # a copy of the images read, not a view that keeps all
    return pixels, torch.tensor(labels, dtype=torch.long), skipped, tried


def summarize_skipped(skipped, shown=3):
    """{reason: [names]} -> '2 not an image (notes.txt, a.doc), 1 unreadable (b.jpg)'."""
    parts = []
    for reason, names in skipped.items():
        listed = ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")
        parts.append(f"{len(names)} {reason} ({listed})")
    return ", ".join(parts)


def describe_folder(name, classes, train_set, val_set, shown=5):
    """One line for the start of a run: images per split, their size, the classes, and what was skipped.

    train_set, val_set: image_data.ImageSets of the two splits.
    """
    _, H, W = train_set.tensors[0].shape[1:]
    tried = train_set.files + val_set.files
    read = len(train_set) + len(val_set)
    names = ", ".join(classes[:shown]) + (f", ... ({len(classes) - shown} more)" if len(classes) > shown else "")
    kind = f"{len(classes)} classes ({names})" if classes else "no class folders: unconditioned"
    line = (
        f"{name}: {len(train_set):,} training and {len(val_set):,} validation images of {H}x{W} from "
        f"{read:,} of {tried:,} files, {kind}"
    )
    skipped = {}
    for reason in (NOT_IMAGE, UNREADABLE, OUTSIDE):
        files = train_set.skipped.get(reason, []) + val_set.skipped.get(reason, [])
        if files:
            skipped[reason] = sorted(files)
    if not skipped:
        return line
    return f"{line}; skipped {sum(map(len, skipped.values()))}: {summarize_skipped(skipped)}"
