"""Readers of the folders the original Chainer preprocess.py wrote.

Files `vctk_<worker>` hold arrays np.save'd one after another, of mu-law values scaled to [0, 1]
(see legacy_codes for the variants); `vctk_<worker>_label` files hold the original's speaker
guesses, which are ignored. There each chunk counts as a recording of its own.
"""

import os

import numpy as np

from .corpus import MAX_LEVELS, PREFIX, StoredChunks
from .errors import UserError


def read_legacy(folder, levels):
    """StoredChunks of a folder of the original's files; `levels` quantises values (one-hot rows set their own).

    The original wrote no rate and guessed speakers from numbers in the path: one unknown speaker,
    no receptive field. The codes are read into memory. UserError if there is nothing usable.
    """
    paths = sorted(
        os.path.join(folder, name)
        for name in os.listdir(folder)
        if name.startswith(PREFIX) and not name.endswith("_label")
    )
    if not paths:
        raise UserError(
            f"{folder!r} holds no {PREFIX}* files; run preprocess.py --data AUDIO_FOLDER --output {folder} first"
        )
    rows = []
    for path in paths:
        for array in saved_arrays(path):
            codes, levels = legacy_codes(array, levels, path)
            rows.extend(codes)
    if not rows:
        raise UserError(f"{folder!r}: the {PREFIX}* files hold no chunk; rerun preprocess.py")
    if len({len(r) for r in rows}) > 1:
        raise UserError(
            f"{folder!r}: the {PREFIX}* files hold chunks of different lengths "
            f"{sorted({len(r) for r in rows})}; rerun preprocess.py"
        )
    codes = np.stack(rows)
    n, chunk_length = codes.shape
    return StoredChunks(
        codes,
        chunk_speakers=np.zeros(n, dtype=np.int64),
        recording_samples=np.full(n, chunk_length, dtype=np.int64),
        speakers=["unknown"],
        levels=levels,
        rate=None,
        receptive_field=None,
    )


def saved_arrays(path):
    """Yield the arrays np.save'd one after another into file `path` (the original's format)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while f.tell() < size:
            try:
                yield np.load(f, allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:
                raise UserError(
                    f"{path!r} is not a sequence of saved numpy arrays ({e}); rerun preprocess.py"
                ) from None


def legacy_codes(array, levels, path):
    """Rows of uint8 codes from one array of the original's files, and the number of levels.

    The original saved lists of chunks: (n, T) or (T,) floats v = (f + 1) / 2 of companded f (an early
    version saved f itself, in [-1, 1]), or one-hot (T, levels) / (n, T, levels).
    """
    if array.size == 0:
        return [], levels  # the original flushed an empty list after files too short for a chunk
    if array.ndim == 3 or (array.ndim == 2 and is_one_hot(array)):
        levels = array.shape[-1]
        codes = array.argmax(axis=-1).reshape(-1, array.shape[-2])
    else:
        values = np.atleast_2d(array).astype(np.float64)
        if values.min() < 0:
            values = (values + 1) / 2
        if values.min() < 0 or values.max() > 1:
            raise UserError(f"{path!r} holds values outside [-1, 1], not mu-law audio; rerun preprocess.py")
        # the same rounding as mu_law_encode, so v = q / (levels - 1) gives back q exactly
        codes = np.floor(values * (levels - 1) + 0.5)
    if levels > MAX_LEVELS:
        raise UserError(f"{path!r} holds one-hot rows of {levels} levels, more than {MAX_LEVELS}")
    return list(codes.astype(np.uint8)), levels


def is_one_hot(array):
    """A 2-D array whose rows each hold a single 1 among 0s."""
    return bool(np.isin(array, (0, 1)).all() and (array.sum(axis=1) == 1).all())
