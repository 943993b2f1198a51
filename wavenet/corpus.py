"""The on-disk format of a preprocessed folder: its file names, format versions, commit and validated readers.

A folder written by `preprocessing.preprocess` holds four files:

    vctk_codes.npy       uint8 (N, chunk_length)  mu-law codes (see audio.mu_law_encode), one chunk per row,
                                                  the chunks of a recording in order and back to back, the
                                                  last one padded with silence;
                                                  np.load(..., mmap_mode="r") maps it without reading it
    vctk_speakers.npy    int16 (N,)               speaker of each chunk, an index into meta["speakers"]
    vctk_recordings.npy  int64 (F,)               samples of each recording (lead-in included), in row
                                                  order: recording f fills the next ceil(samples / chunk_length) rows
    vctk_meta.json       {"format", "rate", "chunk_length", "levels", "speakers", "chunks", "files",
                          "recording_files" (each recording's file, relative to --data; optional), ...}

and, written by `preprocess.py --mel N`, a fifth:

    vctk_features.npy    float32 (frames, N)          log-mel frames (features.log_mel) of each recording,
                                                  lead-in and padding included, recording after recording:
                                                  MelSettings.frames_for(rows * chunk_length) each;
                                                  meta["features"] holds the MelSettings, the per-band
                                                  "mean" and "std" over all of them, and "lead_in"

Format 1 folders have no vctk_recordings.npy: there each chunk counts as a recording of its own.
The folders of the original Chainer preprocess.py are read by `legacy_corpus`.

The four files are committed as a whole (see `corpus_commit`); readers take each file from the
commit's journal where it is still there (`path_of`).

The meta file also records each array's size and fingerprint ("files"), so that a folder assembled
from two runs (files copied while a journal was pending, or by hand) is refused. The fingerprint is the
sha256 of the whole file up to FINGERPRINT_WHOLE bytes, else of FINGERPRINT_BLOCKS blocks spread evenly
over it, first and last included: a few hundred KiB read at every start however large the codes are,
and any two runs whose codes differ in shape or in nearly all bytes (other audio, other --levels) differ.

Only the standard library, numpy and `features` (which loads librosa only to compute frames): the
command-line modules import this one at their top.
"""

import hashlib
import json
import os
from typing import NamedTuple

import numpy as np

from .errors import UserError
from .features import MelSettings

FORMAT = 2
READABLE_FORMATS = (1, 2)  # format 1 had no vctk_recordings.npy
PREFIX = "vctk_"  # the original's hard-coded file prefix, kept so both formats share a folder layout
CODES_FILE = PREFIX + "codes.npy"
SPEAKERS_FILE = PREFIX + "speakers.npy"
RECORDINGS_FILE = PREFIX + "recordings.npy"
META_FILE = PREFIX + "meta.json"
FEATURES_FILE = PREFIX + "features.npy"  # only in folders preprocessed with --mel
ARRAY_FILES = (CODES_FILE, SPEAKERS_FILE, RECORDINGS_FILE)  # in every folder
OUTPUT_FILES = (*ARRAY_FILES, FEATURES_FILE, META_FILE)  # the order they are moved in: meta last
MAX_LEVELS = 256  # codes are stored as uint8
JOURNAL = "." + PREFIX + "commit"  # committed files not yet moved into the folder
FINGERPRINT_WHOLE = 1 << 20  # files up to 1 MiB (speakers, recordings, small codes) are hashed whole
FINGERPRINT_BLOCKS, FINGERPRINT_BLOCK = 64, 4096  # larger ones: 64 blocks of 4 KiB, 256 KiB in all
# codes up to this size are scanned whole for values >= levels when the folder is opened (about 0.1 s
# from the page cache); larger ones are checked in sampled rows there and window by window as read
FULL_SCAN_BYTES = 64 << 20
CHECKED_ROWS = 64  # rows spread over larger codes that are checked when the folder is opened


class StoredChunks(NamedTuple):
    """What a folder holds, read and checked; the same for every format (see also legacy_corpus)."""

    codes: np.ndarray  # uint8 (N, chunk_length), memory-mapped where the format allows
    chunk_speakers: np.ndarray  # int64 (N,): speaker of each chunk, an index into `speakers`
    recording_samples: np.ndarray  # int64 (F,): real samples (lead-in included) of each recording, in row order
    speakers: list  # speaker names, by index
    levels: int  # mu-law levels of the codes
    rate: int | None  # Hz, None where the folder does not say
    receptive_field: int | None  # what the chunks were cut for, None where unknown
    codes_checked: bool = True  # False: codes too large to scan at opening; check each window read
    features: np.ndarray | None = None  # float32 (frames, bands) memory-mapped log-mel frames, or None
    mel: dict | None = None  # meta["features"]: MelSettings, "mean", "std", "lead_in"; None without features
    recording_files: list | None = None  # each recording's file, relative to --data; None where not recorded


def read_folder(folder):
    """StoredChunks of a folder with a meta file (format 1 or 2), codes memory-mapped; UserError if damaged.

    Everything that can contradict the meta file is checked here, so that a damaged folder stops the
    run before training starts, except codes >= levels in codes larger than FULL_SCAN_BYTES (see
    check_codes).
    """
    meta = load_meta(folder)
    rate, chunk_length, levels = meta["rate"], meta["chunk_length"], meta["levels"]
    speakers, receptive_field, chunks = list(meta["speakers"]), meta.get("receptive_field"), meta["chunks"]
    chunk_speakers = load_array(folder, SPEAKERS_FILE, (chunks,), "integer").astype(np.int64)
    if len(chunk_speakers) and not 0 <= chunk_speakers.min() <= chunk_speakers.max() < len(speakers):
        bad = chunk_speakers[(chunk_speakers < 0) | (chunk_speakers >= len(speakers))][0]
        raise UserError(
            f"{path_of(folder, SPEAKERS_FILE)!r} holds speaker id {bad}, but its meta file names "
            f"{len(speakers)} speaker(s) (ids 0..{len(speakers) - 1}); rerun preprocess.py"
        )
    recording_samples = load_recordings(folder, meta)
    codes = open_codes(folder, chunks, chunk_length)
    codes_checked = check_codes(path_of(folder, CODES_FILE), codes, levels)
    mel = meta.get("features")
    features = None
    if mel is not None:
        features = open_features(folder, mel)
        stored = -(-recording_samples // chunk_length) * chunk_length  # samples of each recording, padded
        frames = int(MelSettings.from_dict(mel).frames_for(stored).sum())
        if len(features) != frames:
            raise UserError(
                f"{path_of(folder, FEATURES_FILE)!r} holds {len(features):,} frames, but its codes need "
                f"{frames:,} (the features and codes disagree in length); rerun preprocess.py --mel"
            )
    files = meta.get("recording_files") if meta["format"] == FORMAT else None  # format 1: a chunk is a recording
    if files is not None and len(files) != len(recording_samples):
        raise UserError(
            f"{path_of(folder, META_FILE)!r} names {len(files)} recording files for {len(recording_samples)} "
            "recordings; rerun preprocess.py"
        )
    verify_commit(folder, meta)  # last: a specific fault above says more than "mixes two runs"
    return StoredChunks(
        codes,
        chunk_speakers,
        recording_samples,
        speakers,
        levels,
        rate,
        receptive_field,
        codes_checked,
        features,
        mel,
        files,
    )


def path_of(folder, name):
    """Where file `name` of `folder` is read from: the journal of a commit not yet moved, if it is there."""
    pending = os.path.join(folder, JOURNAL, name)
    return pending if os.path.exists(pending) else os.path.join(folder, name)


def has_meta(folder):
    """Whether `folder` holds a meta file, so was written by this project's preprocess (not the original's)."""
    return os.path.exists(path_of(folder, META_FILE))


def _is_int(value, low, high=None):
    return type(value) is int and value >= low and (high is None or value <= high)  # bool is no count


# key: (test, what it should hold); a meta file lacking any of these is refused
META_KEYS = {
    "rate": (lambda v: _is_int(v, 1), "a positive integer (Hz)"),
    "chunk_length": (lambda v: _is_int(v, 1), "a positive integer"),
    "levels": (lambda v: _is_int(v, 2, MAX_LEVELS), f"an integer from 2 to {MAX_LEVELS}"),
    "chunks": (lambda v: _is_int(v, 1), "a positive integer"),
    "speakers": (
        lambda v: isinstance(v, list) and len(v) > 0 and all(isinstance(s, str) for s in v),
        "a non-empty list of names",
    ),
}
FORMAT_2_KEYS = {"recordings": (lambda v: _is_int(v, 1), "a positive integer")}


def _is_mel(v):
    """Whether `v` is a meta file's "features" entry (see features.stored_settings)."""
    if not isinstance(v, dict) or not all(_is_int(v.get(k), 1) for k in ("rate", "bands", "hop", "window", "fft")):
        return False
    numbers = all(
        isinstance(v.get(k), list) and len(v[k]) == v["bands"] and all(isinstance(x, (int, float)) for x in v[k])
        for k in ("mean", "std")
    )
    return numbers and all(x > 0 for x in v["std"]) and _is_int(v.get("lead_in"), 0) and "fmin" in v and "fmax" in v


OPTIONAL_KEYS = {
    "receptive_field": (lambda v: v is None or _is_int(v, 0), "an integer >= 0 or null"),
    "features": (_is_mel, "the log-mel settings, per-band mean and std, and lead-in that preprocess.py --mel writes"),
    "recording_files": (lambda v: isinstance(v, list) and all(isinstance(s, str) for s in v), "a list of file names"),
    "files": (
        lambda v: (
            isinstance(v, dict)
            and all(
                isinstance(v.get(name), dict)
                and _is_int(v[name].get("bytes"), 0)
                and isinstance(v[name].get("fingerprint"), str)
                for name in ARRAY_FILES
            )
        ),
        f"the size and fingerprint of {', '.join(ARRAY_FILES)}",
    ),
}


def load_meta(folder):
    """The meta file of `folder` as a dict; UserError if unreadable, of a format this version can't read,
    or lacking a key (or holding one of the wrong type) that the readers need."""
    path = path_of(folder, META_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"{path!r} is unreadable ({e}); rerun preprocess.py") from None
    if not isinstance(meta, dict):
        raise UserError(f"{path!r} holds a JSON {type(meta).__name__}, not the object preprocess.py writes; rerun it")
    if meta.get("format") not in READABLE_FORMATS:
        raise UserError(
            f"{path!r} has format {meta.get('format')!r}, this version reads formats "
            f"{READABLE_FORMATS}; rerun preprocess.py"
        )
    required = {**META_KEYS, **(FORMAT_2_KEYS if meta["format"] == 2 else {})}
    for key, (test, what) in {**required, **OPTIONAL_KEYS}.items():
        if key not in meta:
            if key in required:
                raise UserError(f"{path!r} lacks the key {key!r}; rerun preprocess.py")
        elif not test(meta[key]):
            shown = json.dumps(meta[key])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            raise UserError(f"{path!r}: {key!r} should be {what}, not {shown}; rerun preprocess.py")
    return meta


def fingerprint(path):
    """Hex sha256 of file `path`: whole up to FINGERPRINT_WHOLE bytes, else of evenly spread blocks (see above)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest.update(str(size).encode())
        if size <= FINGERPRINT_WHOLE:
            digest.update(f.read())
        else:
            last = size - FINGERPRINT_BLOCK
            for i in range(FINGERPRINT_BLOCKS):
                f.seek(i * last // (FINGERPRINT_BLOCKS - 1))
                digest.update(f.read(FINGERPRINT_BLOCK))
    return digest.hexdigest()


def commit_record(folder):
    """meta["files"] for the arrays in `folder`, the features file too where there is one:
    {name: {"bytes", "fingerprint"}}."""
    return {
        name: {
            "bytes": os.path.getsize(os.path.join(folder, name)),
            "fingerprint": fingerprint(os.path.join(folder, name)),
        }
        for name in (*ARRAY_FILES, FEATURES_FILE)
        if name in ARRAY_FILES or os.path.exists(os.path.join(folder, name))
    }


def verify_commit(folder, meta):
    """UserError unless the arrays of `folder` are those its meta file committed (folders written before
    meta recorded them are taken as they are; format 1 never recorded them)."""
    if meta["format"] == 1:
        return
    for name, record in meta.get("files", {}).items():
        path = path_of(folder, name)
        try:
            size = os.path.getsize(path)
        except OSError as e:
            raise UserError(f"{path!r} is missing or unreadable ({e.strerror}); rerun preprocess.py") from None
        if size != record["bytes"]:
            why = f"{size:,} bytes where its meta file says {record['bytes']:,}"
        elif fingerprint(path) != record["fingerprint"]:
            why = "another fingerprint than its meta file records"
        else:
            continue
        raise UserError(
            f"{path!r} is not the file {path_of(folder, META_FILE)!r} describes ({why}): the folder mixes the "
            "files of two preprocess runs; rerun preprocess.py"
        )


def load_array(folder, name, shape, kind, mmap_mode=None):
    """np.load file `name` of `folder`; UserError unless it reads, has `shape` and values of `kind`
    ("uint8" or "integer")."""
    path = path_of(folder, name)
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path!r} is missing or unreadable ({e}); rerun preprocess.py") from None
    right = array.dtype == np.uint8 if kind == "uint8" else array.dtype.kind in "iu"
    if not right:
        raise UserError(f"{path!r} holds {array.dtype} values, not {kind} ones; rerun preprocess.py")
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
    samples = load_array(folder, RECORDINGS_FILE, (meta["recordings"],), "integer").astype(np.int64)
    if (-(-samples // chunk_length)).sum() != chunks or (samples < chunk_length).any():
        raise UserError(
            f"{path_of(folder, RECORDINGS_FILE)!r} does not add up to the "
            f"{chunks} chunks of the meta file; rerun preprocess.py"
        )
    return samples


def open_features(folder, mel):
    """float32 (frames, bands): the log-mel frames of `folder`, memory-mapped (read only); None without features."""
    if mel is None:
        return None
    path = path_of(folder, FEATURES_FILE)
    try:
        features = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as e:
        raise UserError(f"{path!r} is missing or unreadable ({e}); rerun preprocess.py --mel") from None
    if features.dtype != np.float32 or features.ndim != 2 or features.shape[1] != mel["bands"]:
        raise UserError(
            f"{path!r} holds {features.dtype} {features.shape}, not the float32 (frames, {mel['bands']}) its meta "
            "file describes; rerun preprocess.py --mel"
        )
    return features


def open_codes(folder, chunks, chunk_length):
    """uint8 (chunks, chunk_length): the codes of `folder`, memory-mapped (read only), one chunk per row."""
    return load_array(folder, CODES_FILE, (chunks, chunk_length), "uint8", mmap_mode="r")


def check_codes(path, codes, levels):
    """UserError if uint8 codes (N, L) of file `path` hold a value >= levels; True if every row was checked.

    A full scan of gigabytes at every start would cost more than the training step it protects, so
    codes over FULL_SCAN_BYTES are checked in CHECKED_ROWS rows spread over them here (False
    returned), and AudioWindows checks each window as it reads it (check_window).
    """
    if levels >= MAX_LEVELS:
        return True  # every uint8 is a code
    whole = codes.nbytes <= FULL_SCAN_BYTES
    rows = codes if whole else codes[np.linspace(0, len(codes) - 1, CHECKED_ROWS).astype(int)]
    check_window(path, rows, levels)
    return whole


def check_window(path, codes, levels):
    """UserError if uint8 `codes` (any shape) read from file `path` hold a value >= levels."""
    if codes.size and codes.max() >= levels:
        raise UserError(
            f"{path!r} holds code {codes.max()}, but its meta file says {levels} mu-law levels (codes "
            f"0..{levels - 1}); rerun preprocess.py"
        )
