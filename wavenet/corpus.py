"""Speech corpora for WaveNet: audio folders -> chunks of mu-law codes on disk -> a torch Dataset.

A folder written by `preprocess` holds four files, each written atomically:

    vctk_codes.npy       uint8 (N, chunk_length)  mu-law codes (see audio.mu_law_encode), one chunk per row,
                                                  the chunks of a recording in order and back to back, the
                                                  last one padded with silence;
                                                  np.load(..., mmap_mode="r") maps it without reading it
    vctk_speakers.npy    int16 (N,)               speaker of each chunk, an index into meta["speakers"]
    vctk_recordings.npy  int64 (F,)               samples of each recording (lead-in included), in row
                                                  order: recording f fills the next ceil(samples / chunk_length) rows
    vctk_meta.json       {"format", "rate", "chunk_length", "levels", "speakers", "chunks", ...}

`AudioChunks` also reads format 1 folders (no vctk_recordings.npy) and the folders of the original
Chainer preprocess.py: files `vctk_<worker>` holding arrays np.save'd one after another, of mu-law
values scaled to [0, 1]. There each chunk counts as a recording of its own.
"""
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple, Optional

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from tqdm import tqdm

from .audio import AUDIO_EXTENSIONS, AudioError, load_audio, mu_law_encode
from .checkpoint import atomic_write
from .errors import UserError

FORMAT = 2
READABLE_FORMATS = (1, 2)  # format 1 had no vctk_recordings.npy
PREFIX = "vctk_"  # the original's hard-coded file prefix, kept so both formats share a folder layout
CODES_FILE = PREFIX + "codes.npy"
SPEAKERS_FILE = PREFIX + "speakers.npy"
RECORDINGS_FILE = PREFIX + "recordings.npy"
META_FILE = PREFIX + "meta.json"
MAX_LEVELS = 256  # codes are stored as uint8
TOO_SHORT = "shorter than one chunk"
SHOW_UNREADABLE = 3  # unreadable files named in the summary line; the log names all of them

log = logging.getLogger(__name__)


class FileChunks(NamedTuple):
    """What one audio file gives: codes uint8 (n, chunk_length) or None, its seconds, why it gave none,
    and how many of its codes are real (lead-in included) before the silence that pads the last chunk."""
    codes: Optional[np.ndarray]
    seconds: float
    problem: Optional[str]  # None, TOO_SHORT or the AudioError message
    samples: int = 0


@dataclass
class PreprocessSummary:
    """Counts of one `preprocess` run."""
    files_found: int
    rate: int
    chunk_length: int
    files_read: int = 0       # decoded, including those shorter than one chunk
    seconds: float = 0.0      # length of the audio decoded
    chunks: int = 0
    too_short: list = field(default_factory=list)   # paths relative to the data folder
    unreadable: list = field(default_factory=list)  # (relative path, reason)
    speakers: list = field(default_factory=list)

    def add(self, name, result):
        """Count one file's FileChunks; `name` is its path relative to the data folder."""
        if result.problem in (None, TOO_SHORT):
            self.files_read += 1
            self.seconds += result.seconds
        if result.codes is not None:
            self.chunks += len(result.codes)
        elif result.problem == TOO_SHORT:
            self.too_short.append(name)
        else:
            log.warning("skipped %s", result.problem)
            self.unreadable.append((name, result.problem))

    def format_summary(self):
        """One line: files read, hours of audio, chunks written, files skipped and why."""
        files = "file" if self.files_found == 1 else "files"
        line = (f"read {self.files_read} of {self.files_found} {files} ({format_duration(self.seconds)} "
                f"of audio at {self.rate:,} Hz), wrote {self.chunks:,} chunks of {self.chunk_length:,} "
                f"samples from {len(self.speakers)} speaker(s)")
        skipped = len(self.too_short) + len(self.unreadable)
        if not skipped:
            return line
        reasons = []
        if self.too_short:
            reasons.append(f"{len(self.too_short)} {TOO_SHORT}")
        if self.unreadable:
            names = ", ".join(name for name, _ in self.unreadable[:SHOW_UNREADABLE])
            more = len(self.unreadable) - SHOW_UNREADABLE
            names += f" and {more} more" if more > 0 else ""
            reasons.append(f"{len(self.unreadable)} unreadable ({names})")
        return f"{line}; skipped {skipped}: {', '.join(reasons)}"

    __str__ = format_summary


def format_duration(seconds):
    """'0.06 h' for an hour's fraction and more, '12.3 s' below (where hours would print 0.00)."""
    return f"{seconds / 3600:.2f} h" if seconds >= 36 else f"{seconds:.1f} s"


def find_audio(data):
    """Sorted paths of the .wav and .flac files under folder `data` (recursively), or `data` itself if a file."""
    if os.path.isfile(data):
        if not data.lower().endswith(AUDIO_EXTENSIONS):
            raise UserError(f"{data!r} is not a .wav or .flac file; pass it or the folder holding such files")
        return [data]
    if not os.path.isdir(data):
        raise UserError(f"data folder {data!r} not found; pass the folder holding the .wav/.flac files")
    found = [os.path.join(root, name)
             for root, _, names in os.walk(data, followlinks=True) for name in names
             if name.lower().endswith(AUDIO_EXTENSIONS)]
    if not found:
        raise UserError(f"data folder {data!r} holds no .wav or .flac files (searched all subfolders)")
    return sorted(found)  # a fixed order makes reruns byte-identical


def speaker_of(path):
    """VCTK keeps each speaker in a folder (wav48/p225/p225_001.wav): the name of the file's folder."""
    return os.path.basename(os.path.dirname(os.path.abspath(path)))


def chunk_file(path, rate, chunk_length, levels, lead_in=0):
    """Load, mu-law encode and cut one file into consecutive chunks (silence pads the last one).

    lead_in silence samples go before the recording, so that the first chunk teaches the model
    to start from silence, as generation from scratch does. Runs in worker processes, so an
    unreadable file comes back as a problem instead of an exception.
    """
    try:
        samples = load_audio(path, rate)
    except AudioError as e:
        return FileChunks(None, 0.0, str(e))
    total = lead_in + len(samples)
    if total < chunk_length:
        return FileChunks(None, len(samples) / rate, TOO_SHORT)
    n = -(-total // chunk_length)  # chunks, the last one padded
    silence = np.zeros(lead_in, samples.dtype), np.zeros(n * chunk_length - total, samples.dtype)
    codes = mu_law_encode(np.concatenate([silence[0], samples, silence[1]]), levels)
    return FileChunks(codes.astype(np.uint8).reshape(n, chunk_length), len(samples) / rate, None, total)


def decode_files(paths, rate, chunk_length, levels, workers, lead_in=0):
    """Yield (path, chunk_file's FileChunks) for each path, in order, from `workers` processes (1: this one)."""
    work = partial(chunk_file, rate=rate, chunk_length=chunk_length, levels=levels, lead_in=lead_in)
    if workers == 1:
        yield from zip(paths, map(work, paths))
        return
    # processes, not threads: decoding and resampling hold the GIL. pool.map returns results in
    # file order and raises a worker's unexpected exception here instead of dropping it.
    with ProcessPoolExecutor(max_workers=min(workers, len(paths))) as pool:
        yield from zip(paths, pool.map(work, paths))


def preprocess(data, output, rate, chunk_length, workers=1, flush_every=100, levels=256,
               receptive_field=None):
    """Turn the audio under `data` into chunks of `chunk_length` mu-law codes in folder `output`.

    chunk_length: receptive field + target length, computed by the caller. workers: processes decoding
    files (1 runs in this process). flush_every: chunks buffered between writes. receptive_field:
    recorded in the meta file, and that much silence leads each file in. Returns a PreprocessSummary; raises UserError if nothing is usable.
    """
    if not 2 <= levels <= MAX_LEVELS:
        raise UserError(f"levels {levels}: codes are stored in one byte, pass 2..{MAX_LEVELS}")
    if rate <= 0 or chunk_length <= 0 or workers <= 0 or flush_every <= 0:
        raise ValueError(f"rate, chunk_length, workers and flush_every must be positive, got "
                         f"{rate}, {chunk_length}, {workers}, {flush_every}")
    files = find_audio(data)
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:
        raise UserError(f"output folder {output!r}: cannot create it ({e.strerror})") from None
    base = data if os.path.isdir(data) else os.path.dirname(data)
    summary = PreprocessSummary(files_found=len(files), rate=rate, chunk_length=chunk_length)
    file_speakers = []  # (speaker name, chunks, samples) per file that gave chunks, in file order

    def write_codes(f):
        # The .npy header has room for any row count (numpy pads it for in-place growth), so write
        # it with 0 rows, stream the rows, then rewrite it with the final count.
        header = {"descr": "|u1", "fortran_order": False, "shape": (0, chunk_length)}
        np.lib.format.write_array_header_1_0(f, header)
        data_start = f.tell()
        pending, pending_rows = [], 0
        with tqdm(total=len(files), unit="file", desc="preprocess") as bar:
            for path, result in decode_files(files, rate, chunk_length, levels, workers,
                                             lead_in=receptive_field or 0):
                bar.update()
                summary.add(os.path.relpath(path, base), result)
                if result.codes is None:
                    continue
                pending.append(result.codes)
                pending_rows += len(result.codes)
                file_speakers.append((speaker_of(path), len(result.codes), result.samples))
                if pending_rows >= flush_every:
                    f.write(np.concatenate(pending).tobytes())
                    pending, pending_rows = [], 0
        if summary.chunks == 0:
            raise UserError(nothing_usable(data, summary))
        if pending:
            f.write(np.concatenate(pending).tobytes())
        f.seek(0)
        np.lib.format.write_array_header_1_0(f, {**header, "shape": (summary.chunks, chunk_length)})
        assert f.tell() == data_start, "the .npy header changed size"
        f.seek(0, os.SEEK_END)

    atomic_write(os.path.join(output, CODES_FILE), write_codes)
    summary.speakers = sorted({name for name, _, _ in file_speakers})
    index = {name: i for i, name in enumerate(summary.speakers)}
    if len(index) > np.iinfo(np.int16).max:
        raise UserError(f"{len(index)} speaker folders: at most {np.iinfo(np.int16).max} are supported")
    speaker_ids = np.concatenate([np.full(n, index[name], dtype=np.int16) for name, n, _ in file_speakers])
    atomic_write(os.path.join(output, SPEAKERS_FILE), lambda f: np.save(f, speaker_ids))
    recordings = np.array([samples for _, _, samples in file_speakers], dtype=np.int64)
    atomic_write(os.path.join(output, RECORDINGS_FILE), lambda f: np.save(f, recordings))
    meta = {"format": FORMAT, "rate": rate, "chunk_length": chunk_length, "levels": levels,
            "receptive_field": receptive_field, "speakers": summary.speakers, "chunks": summary.chunks,
            "recordings": len(recordings),
            "files_read": summary.files_read, "seconds": round(summary.seconds, 3),
            "too_short": summary.too_short, "unreadable": [name for name, _ in summary.unreadable]}
    # written last: a folder with a meta file is complete
    atomic_write(os.path.join(output, META_FILE),
                 lambda f: f.write((json.dumps(meta, indent=1, sort_keys=True) + "\n").encode()))
    return summary


def nothing_usable(data, summary):
    """The UserError message when no file gave a chunk."""
    seconds = summary.chunk_length / summary.rate
    if not summary.too_short:
        names = ", ".join(name for name, _ in summary.unreadable[:SHOW_UNREADABLE])
        more = ", ..." if len(summary.unreadable) > SHOW_UNREADABLE else ""
        return (f"no chunk from {data!r}: none of its {summary.files_found} files could be read as audio "
                f"({names}{more}); replace them or convert them to .wav or .flac")
    return (f"no chunk from {data!r}: of {summary.files_found} files, {len(summary.too_short)} are shorter "
            f"than one chunk ({summary.chunk_length:,} samples = {seconds:.2f} s at {summary.rate:,} Hz) "
            f"and {len(summary.unreadable)} unreadable; pass longer files or lower --target_length, "
            "--stacks_num or --layers_num")


class AudioChunks(Dataset):
    """Training windows of a preprocessed folder. Item i: (codes long (chunk_length,), speaker long scalar).

    A window is chunk_length = receptive_field + target_length consecutive samples of one recording.
    The windows of a recording start target_length apart, so every sample after its lead-in is a
    target of exactly one window, but for a last stretch shorter than target_length (the stored
    chunks, one after another, would leave the first receptive field of each chunk unscored). Where
    the receptive field or the recordings are unknown (format 1, the original's files), the windows
    are the stored chunks.

    Attributes: rate (Hz, None if unknown), chunk_length, levels, speakers (names, by index),
    receptive_field (as recorded by preprocess, or None), recording (recording index of each
    window). New-format codes stay memory-mapped.
    """

    def __init__(self, folder, levels=None):
        """levels: expected number of mu-law levels (UserError on mismatch); also how legacy values quantise."""
        if not os.path.isdir(folder):
            raise UserError(f"data folder {folder!r} not found; run preprocess.py --data AUDIO_FOLDER "
                            f"--output {folder} first")
        self.folder = folder
        if os.path.exists(os.path.join(folder, META_FILE)):
            self._load_meta()
            self._open_codes()
        else:
            self._load_legacy(levels or MAX_LEVELS)
        self._index_windows()
        if levels is not None and levels != self.levels:
            raise UserError(f"{folder!r} holds codes of {self.levels} mu-law levels, not {levels}; pass "
                            f"--levels {self.levels} or rerun preprocess.py --levels {levels}")

    def _load_meta(self):
        path = os.path.join(self.folder, META_FILE)
        try:
            with open(path) as f:
                meta = json.load(f)
        except (OSError, ValueError) as e:
            raise UserError(f"{path!r} is unreadable ({e}); rerun preprocess.py") from None
        if meta.get("format") not in READABLE_FORMATS:
            raise UserError(f"{path!r} has format {meta.get('format')}, this version reads formats "
                            f"{READABLE_FORMATS}; rerun preprocess.py")
        self.rate = meta["rate"]
        self.chunk_length = meta["chunk_length"]
        self.levels = meta["levels"]
        self.speakers = list(meta["speakers"])
        self.receptive_field = meta.get("receptive_field")
        self._chunks = meta["chunks"]
        self.chunk_speakers = self._load_array(SPEAKERS_FILE, (self._chunks,)).astype(np.int64)
        if meta["format"] == 1:  # without recording boundaries, each chunk counts as a recording
            self.recording_samples = np.full(self._chunks, self.chunk_length, dtype=np.int64)
        else:
            self.recording_samples = self._load_array(RECORDINGS_FILE, (meta["recordings"],))
            chunks = -(-self.recording_samples // self.chunk_length)
            if chunks.sum() != self._chunks or (self.recording_samples < self.chunk_length).any():
                raise UserError(f"{os.path.join(self.folder, RECORDINGS_FILE)!r} does not add up to the "
                                f"{self._chunks} chunks of the meta file; rerun preprocess.py")

    def _load_array(self, name, shape, mmap_mode=None):
        """np.load a file of this folder; UserError unless it has `shape`."""
        path = os.path.join(self.folder, name)
        try:
            array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UserError(f"{path!r} is missing or unreadable ({e}); rerun preprocess.py") from None
        if array.shape != shape:
            raise UserError(f"{path!r} has shape {array.shape}, its meta file says {shape}; rerun preprocess.py")
        return array

    def _open_codes(self):
        self.codes = self._load_array(CODES_FILE, (self._chunks, self.chunk_length), mmap_mode="r")

    def _load_legacy(self, levels):
        paths = sorted(os.path.join(self.folder, name) for name in os.listdir(self.folder)
                       if name.startswith(PREFIX) and not name.endswith("_label"))
        if not paths:
            raise UserError(f"{self.folder!r} holds no {PREFIX}* files; run preprocess.py --data AUDIO_FOLDER "
                            f"--output {self.folder} first")
        self.levels = levels
        rows = []
        for path in paths:
            for array in saved_arrays(path):
                codes, self.levels = legacy_codes(array, self.levels, path)
                rows.extend(codes)
        if not rows:
            raise UserError(f"{self.folder!r}: the {PREFIX}* files hold no chunk; rerun preprocess.py")
        if len({len(r) for r in rows}) > 1:
            raise UserError(f"{self.folder!r}: the {PREFIX}* files hold chunks of different lengths "
                            f"{sorted({len(r) for r in rows})}; rerun preprocess.py")
        # the original wrote no rate and guessed speakers from numbers in the path: one unknown speaker
        self.codes = np.stack(rows)
        self.chunk_length = self.codes.shape[1]
        self.rate = None
        self.speakers = ["unknown"]
        self.receptive_field = None
        self.chunk_speakers = np.zeros(len(self.codes), dtype=np.int64)
        self.recording_samples = np.full(len(self.codes), self.chunk_length, dtype=np.int64)

    def _index_windows(self):
        """Set the start of every window (a sample index into the codes read as one stream) and its recording."""
        L = self.chunk_length
        R = self.receptive_field
        stride = L - R if R and R < L else L  # a recording of one chunk has one window either way
        length = self.recording_samples                                     # real samples of each recording
        stored = -(-length // L) * L                                        # with the padded last chunk
        windows = (length - L) // stride + 1                                # per recording
        self.recording = np.repeat(np.arange(len(windows)), windows)        # (number of windows,)
        first_window = np.cumsum(windows) - windows
        k = np.arange(len(self.recording)) - first_window[self.recording]   # window k of its recording
        self.starts = (np.cumsum(stored) - stored)[self.recording] + k * stride
        self.speaker_ids = self.chunk_speakers[self.starts // L]

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        row, offset = divmod(int(self.starts[i]), self.chunk_length)
        # a window spans at most two chunks of its recording, which lie back to back
        codes = self.codes[row:row + 2].reshape(-1)[offset:offset + self.chunk_length]
        return torch.from_numpy(codes.astype(np.int64)), torch.tensor(self.speaker_ids[i])

    def __getstate__(self):
        # DataLoader workers started by spawn get a pickled copy: reopen the map, don't copy the data
        state = dict(self.__dict__)
        if isinstance(self.codes, np.memmap):
            del state["codes"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "codes" not in state:
            self._open_codes()


def saved_arrays(path):
    """Yield the arrays np.save'd one after another into file `path` (the original's format)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while f.tell() < size:
            try:
                yield np.load(f, allow_pickle=False)
            except (OSError, ValueError, EOFError) as e:
                raise UserError(f"{path!r} is not a sequence of saved numpy arrays ({e}); "
                                "rerun preprocess.py") from None


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


def train_val_split(dataset, val_fraction=0.05, seed=0, groups=None, speakers=None):
    """Split into (train, validation) Subsets by a seeded shuffle of groups; each side gets at least one item.

    groups: the group of each item (such as its recording); a group goes wholly to one side, so
    validation never scores a recording that training has seen. Groups are held out in shuffled order
    until they hold val_fraction of the items. speakers: the speaker of each item; a group is not held
    out if it is its speaker's last one left for training. Without groups, or where no group can be
    held out, the items themselves are shuffled. The same arguments give the same split on every machine.
    """
    n = len(dataset)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if n < 2:
        raise UserError(f"{n} chunk(s): a training and a validation split need at least 2; "
                        "preprocess more or longer audio")
    rng = np.random.default_rng(seed)
    is_val = np.zeros(n, dtype=bool)
    if groups is not None:
        is_val = held_out(np.asarray(groups), np.zeros(n) if speakers is None else np.asarray(speakers),
                          val_fraction * n, rng)
    if not is_val.any():
        n_val = min(max(round(n * val_fraction), 1), n - 1)
        is_val[rng.permutation(n)[:n_val]] = True
    # ascending indices read the memory map in order within each split
    return Subset(dataset, np.flatnonzero(~is_val).tolist()), Subset(dataset, np.flatnonzero(is_val).tolist())


def held_out(groups, speakers, wanted, rng):
    """Boolean mask of the items in the groups held out: shuffled groups until `wanted` items, skipping
    any group that is the last one its speaker keeps for training."""
    names, first, group_of, sizes = np.unique(groups, return_index=True, return_inverse=True, return_counts=True)
    speaker_of = speakers[first]
    left = dict(zip(*np.unique(speaker_of, return_counts=True)))  # groups each speaker keeps for training
    chosen, items = [], 0
    for g in rng.permutation(len(names)):
        if items >= wanted:
            break
        if left[speaker_of[g]] > 1:
            chosen.append(g)
            left[speaker_of[g]] -= 1
            items += sizes[g]
    return np.isin(group_of, chosen)
