"""The on-disk format of a preprocessed folder: its file names, format versions and validated readers.

A folder written by `preprocessing.preprocess` holds four files, each written atomically:

    vctk_codes.npy       uint8 (N, chunk_length)  mu-law codes (see audio.mu_law_encode), one chunk per row,
                                                  the chunks of a recording in order and back to back, the
                                                  last one padded with silence;
                                                  np.load(..., mmap_mode="r") maps it without reading it
    vctk_speakers.npy    int16 (N,)               speaker of each chunk, an index into meta["speakers"]
    vctk_recordings.npy  int64 (F,)               samples of each recording (lead-in included), in row
                                                  order: recording f fills the next ceil(samples / chunk_length) rows
    vctk_meta.json       {"format", "rate", "chunk_length", "levels", "speakers", "chunks", ...}

Format 1 folders have no vctk_recordings.npy: there each chunk counts as a recording of its own.
The folders of the original Chainer preprocess.py are read by `legacy_corpus`.

Only the standard library and numpy: the command-line modules import this one at their top.
"""

import json
import os
from typing import NamedTuple

import numpy as np

from .errors import UserError

FORMAT = 2
READABLE_FORMATS = (1, 2)  # format 1 had no vctk_recordings.npy
PREFIX = "vctk_"  # the original's hard-coded file prefix, kept so both formats share a folder layout
CODES_FILE = PREFIX + "codes.npy"
SPEAKERS_FILE = PREFIX + "speakers.npy"
RECORDINGS_FILE = PREFIX + "recordings.npy"
META_FILE = PREFIX + "meta.json"
MAX_LEVELS = 256  # codes are stored as uint8


class StoredChunks(NamedTuple):
    """What a folder holds, read and checked; the same for every format (see also legacy_corpus)."""

    codes: np.ndarray  # uint8 (N, chunk_length), memory-mapped where the format allows
    chunk_speakers: np.ndarray  # int64 (N,): speaker of each chunk, an index into `speakers`
    recording_samples: np.ndarray  # int64 (F,): real samples (lead-in included) of each recording, in row order
    speakers: list  # speaker names, by index
    levels: int  # mu-law levels of the codes
    rate: int | None  # Hz, None where the folder does not say
    receptive_field: int | None  # what the chunks were cut for, None where unknown


def read_folder(folder):
    """StoredChunks of a folder with a meta file (format 1 or 2), codes memory-mapped; UserError if damaged."""
    meta = load_meta(folder)
    rate, chunk_length, levels = meta["rate"], meta["chunk_length"], meta["levels"]
    speakers, receptive_field, chunks = list(meta["speakers"]), meta.get("receptive_field"), meta["chunks"]
    chunk_speakers = load_array(folder, SPEAKERS_FILE, (chunks,)).astype(np.int64)
    recording_samples = load_recordings(folder, meta)
    return StoredChunks(
        open_codes(folder, chunks, chunk_length),
        chunk_speakers,
        recording_samples,
        speakers,
        levels,
        rate,
        receptive_field,
    )


def has_meta(folder):
    """Whether `folder` holds a meta file, so was written by this project's preprocess (not the original's)."""
    return os.path.exists(os.path.join(folder, META_FILE))


def load_meta(folder):
    """The meta file of `folder` as a dict; UserError if it is unreadable or of a format this version can't read."""
    path = os.path.join(folder, META_FILE)
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path!r} is unreadable ({e}); rerun preprocess.py") from None
    if meta.get("format") not in READABLE_FORMATS:
        raise UserError(
            f"{path!r} has format {meta.get('format')}, this version reads formats "
            f"{READABLE_FORMATS}; rerun preprocess.py"
        )
    return meta


def load_array(folder, name, shape, mmap_mode=None):
    """np.load file `name` of `folder`; UserError unless it reads and has `shape`."""
    path = os.path.join(folder, name)
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path!r} is missing or unreadable ({e}); rerun preprocess.py") from None
    if array.shape != shape:
        raise UserError(f"{path!r} has shape {array.shape}, its meta file says {shape}; rerun preprocess.py")
    return array


def load_recordings(folder, meta):
    """int64 (F,): samples of each recording of `folder`, whose meta file is `meta`, in row order.

    A format 1 folder records no boundaries: each of its chunks counts as a recording. UserError
    where the recordings don't fill exactly the chunks the meta file counts.
    """
    chunks, chunk_length = meta["chunks"], meta["chunk_length"]
    if meta["format"] == 1:
        return np.full(chunks, chunk_length, dtype=np.int64)
    samples = load_array(folder, RECORDINGS_FILE, (meta["recordings"],))
    if (-(-samples // chunk_length)).sum() != chunks or (samples < chunk_length).any():
        raise UserError(
            f"{os.path.join(folder, RECORDINGS_FILE)!r} does not add up to the "
            f"{chunks} chunks of the meta file; rerun preprocess.py"
        )
    return samples


def open_codes(folder, chunks, chunk_length):
    """uint8 (chunks, chunk_length): the codes of `folder`, memory-mapped (read only), one chunk per row."""
    return load_array(folder, CODES_FILE, (chunks, chunk_length), mmap_mode="r")
