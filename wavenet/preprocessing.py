"""Building a corpus: audio files -> chunks of mu-law codes in a preprocessed folder (see corpus for its format).

The four output files are staged and then committed as a whole (corpus_commit.commit): a run killed at any
moment leaves the previous output readable as it was, and the next run removes what it left behind.
Decoding workers end with this process, even when it is killed (_exit_with_parent).
"""

import errno
import json
import logging
import os
from dataclasses import dataclass, field

import numpy as np

from . import corpus, corpus_commit
from .audio import (
    MAX_RATE,
    MIN_RATE,
    printable,
)
from .corpus import CODES_FILE, FEATURES_FILE, FORMAT, MAX_LEVELS, META_FILE, RECORDINGS_FILE, SPEAKERS_FILE
from .decoding import TOO_SHORT, decode_files
from .errors import UserError
from .features import MelSettings, statistics, stored_settings
from .recordings import find_audio, speakers_of
from .report import bar as progress_bar

SHOW_UNREADABLE = 3  # unreadable files named in the summary line; the log names all of them
SPEAKERS_SHOWN = 5  # speakers the speaker line lists by name; LibriSpeech has 2,484
# what a full, failing or read-only disk answers a write (other OSErrors, from decoding, pass through)
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)

log = logging.getLogger(__name__)


@dataclass
class PreprocessSummary:
    """Counts of one `preprocess` run."""

    files_found: int
    rate: int
    chunk_length: int
    files_read: int = 0  # decoded, including those shorter than one chunk
    seconds: float = 0.0  # length of the audio decoded
    chunks: int = 0
    too_short: list = field(default_factory=list)  # paths relative to the data folder (audio.printable)
    unreadable: list = field(default_factory=list)  # (relative path, reason)
    refused: list = field(default_factory=list)  # (relative path, reason): sample rates not resampled
    speakers: list = field(default_factory=list)  # names, in id order
    speaker_files: list = field(default_factory=list)  # files that gave chunks, per speaker of `speakers`
    speaker_level: int | None = None  # how speakers were picked (recordings.speakers_of)

    def add(self, name, result):
        """Count one file's FileChunks; `name` is its path relative to the data folder, printable."""
        if result.problem in (None, TOO_SHORT):
            self.files_read += 1
            self.seconds += result.seconds
        if result.codes is not None:
            self.chunks += len(result.codes)
        elif result.problem == TOO_SHORT:
            self.too_short.append(name)
        else:
            log.warning("skipped %s", result.problem)
            if result.refused:
                self.refused.append((name, result.refused))
            else:
                self.unreadable.append((name, result.problem))

    def format_summary(self):
        """One line: files read, hours of audio, chunks written, files skipped and why."""
        files = "file" if self.files_found == 1 else "files"
        line = (
            f"read {self.files_read} of {self.files_found} {files} ({format_duration(self.seconds)} "
            f"of audio at {self.rate:,} Hz), wrote {self.chunks:,} chunks of {self.chunk_length:,} "
            f"samples from {len(self.speakers)} speaker(s)"
        )
        skipped = len(self.too_short) + len(self.unreadable) + len(self.refused)
        if not skipped:
            return line
        reasons = []
        if self.too_short:
            reasons.append(f"{len(self.too_short)} {TOO_SHORT}")
        if self.unreadable:
            reasons.append(f"{len(self.unreadable)} unreadable ({first_few(name for name, _ in self.unreadable)})")
        if self.refused:
            shown = first_few(f"{name}: {why}" for name, why in self.refused)
            reasons.append(f"{len(self.refused)} refused ({shown})")
        return f"{line}; skipped {skipped}: {', '.join(reasons)}"

    __str__ = format_summary

    def format_speakers(self):
        """One line: how many speakers, how they were picked, the first SPEAKERS_SHOWN with their files."""
        n, level = len(self.speakers), self.speaker_level
        if level is None:
            rule = ", each the folder holding its files"
        elif level == 0:
            rule = " for all files (--speaker_level 0)"
        else:
            rule = f", each a folder {level} level{'' if level == 1 else 's'} below --data"
        shown = [
            f"{name} ({count} file{'' if count == 1 else 's'})"
            for name, count in zip(self.speakers[:SPEAKERS_SHOWN], self.speaker_files)
        ]
        more = f", ... ({n - SPEAKERS_SHOWN} more)" if n > SPEAKERS_SHOWN else ""
        return f"{n} speaker{'' if n == 1 else 's'}{rule}: {', '.join(shown)}{more}"


def first_few(names):
    """The first SHOW_UNREADABLE of `names`, comma-separated, and how many more."""
    names = list(names)
    more = len(names) - SHOW_UNREADABLE
    return ", ".join(names[:SHOW_UNREADABLE]) + (f" and {more} more" if more > 0 else "")


def format_duration(seconds):
    """'0.06 h' for an hour's fraction and more, '12.3 s' below (where hours would print 0.00)."""
    return f"{seconds / 3600:.2f} h" if seconds >= 36 else f"{seconds:.1f} s"


@dataclass(frozen=True)
class PreprocessJob:
    """What one `preprocess` run writes, whatever the folders: its arguments after `data` and `output`."""

    rate: int  # Hz; files at other rates are resampled
    chunk_length: int  # codes per chunk: a training window, windows.WindowGeometry(...).length
    workers: int = 1  # processes decoding files (1: this process)
    flush_every: int = 100  # chunks buffered between writes
    levels: int = 256  # mu-law levels, stored one byte per code
    receptive_field: int | None = None  # recorded in the meta file; that much silence leads each file in
    # which folder names a file's speaker (recordings.speakers_of); the meta file records it, except the
    # default None (each file's folder), so that such folders stay byte for byte what they were before it
    speaker_level: int | None = None
    mel: MelSettings | None = None  # the log-mel frames to store beside the codes (None: none)

    def __post_init__(self):
        if not 2 <= self.levels <= MAX_LEVELS:
            raise UserError(f"levels {self.levels}: codes are stored in one byte, pass 2..{MAX_LEVELS}")
        if min(self.rate, self.chunk_length, self.workers, self.flush_every) <= 0:
            raise ValueError(
                f"rate, chunk_length, workers and flush_every must be positive, got "
                f"{self.rate}, {self.chunk_length}, {self.workers}, {self.flush_every}"
            )
        if self.speaker_level is not None and self.speaker_level < 0:
            raise ValueError(f"speaker_level must be None or >= 0, got {self.speaker_level}")
        if not MIN_RATE <= self.rate <= MAX_RATE:
            raise UserError(f"--rate {self.rate:,}: pass a sample rate from {MIN_RATE:,} to {MAX_RATE:,} Hz")


def preprocess(data, output, rate, chunk_length, **options):
    """Turn the audio under `data` into chunks of `chunk_length` mu-law codes in folder `output`.

    rate, chunk_length and the options: PreprocessJob's fields, with its defaults. Returns a
    PreprocessSummary; raises UserError if nothing is usable or a file lies above speaker_level. The
    four files are committed as a whole (see corpus), so the folder keeps its previous output, whole,
    until the new one is complete.
    """
    job = PreprocessJob(rate, chunk_length, **options)
    files = find_audio(data)
    speakers = speakers_of(files, data, job.speaker_level)  # before any decoding: a too shallow file ends the run now
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:
        raise UserError(f"output folder {output!r}: cannot create it ({e.strerror})") from None
    removed = corpus_commit.remove_stale(output)
    if removed:
        log.warning("removed what interrupted preprocess runs left in %s: %s", printable(output), ", ".join(removed))
    try:
        staging = corpus_commit.make_staging(output)
    except OSError as e:
        raise UserError(f"output folder {output!r}: cannot write in it ({e.strerror}); pick another --output") from None
    try:
        summary = write_staged(data, files, speakers, staging, job)
        corpus_commit.commit(output, staging)
    except BaseException:
        corpus_commit.discard(staging)  # Ctrl-C or an error: the previous output stays, and nothing else
        raise
    return summary


def write_staged(data, files, speakers, staging, job):
    """Decode `files` and write the output files of PreprocessJob `job` into folder `staging`, each fsynced,
    meta last. speakers: the speaker name of each file, named by job.speaker_level (recordings.speakers_of).
    """
    rate, chunk_length, mel, lead_in = job.rate, job.chunk_length, job.mel, job.receptive_field or 0
    base = data if os.path.isdir(data) else os.path.dirname(data)
    speaker_by_path = dict(zip(files, speakers))
    summary = PreprocessSummary(
        files_found=len(files), rate=rate, chunk_length=chunk_length, speaker_level=job.speaker_level
    )
    file_speakers = []  # (speaker name, chunks, samples, file name) per file that gave chunks, in file order

    frame_counts = []  # with mel: how many frames each file gave (for the statistics)

    def write_codes(f, features=None):
        codes = NpyRows(f, np.uint8, chunk_length)
        frames = None if features is None else NpyRows(features, np.float32, mel.bands)
        pending, pending_rows = [], 0
        decoded = decode_files(files, rate, chunk_length, job.levels, job.workers, lead_in=lead_in, mel=mel)
        with progress_bar(total=len(files), unit="file", desc="preprocess") as bar:
            for path, result in decoded:
                bar.update()
                name = printable(os.path.relpath(path, base))
                summary.add(name, result)
                if result.codes is None:
                    continue
                pending.append(result.codes)
                pending_rows += len(result.codes)
                file_speakers.append((speaker_by_path[path], len(result.codes), result.samples, name))
                if frames is not None:
                    frames.append(result.frames)
                    frame_counts.append(len(result.frames))
                if pending_rows >= job.flush_every:
                    codes.append(np.concatenate(pending))
                    pending, pending_rows = [], 0
        if summary.chunks == 0:
            raise UserError(nothing_usable(data, summary))
        if pending:
            codes.append(np.concatenate(pending))
        codes.close()
        if frames is not None:
            frames.close()

    if mel is None:
        write_file(os.path.join(staging, CODES_FILE), write_codes)
    else:
        # both files grow in the one pass over the recordings
        write_file(
            os.path.join(staging, CODES_FILE),
            lambda f: write_file(os.path.join(staging, FEATURES_FILE), lambda g: write_codes(f, g)),
        )
    summary.speakers = sorted({name for name, *_ in file_speakers})
    index = {name: i for i, name in enumerate(summary.speakers)}
    summary.speaker_files = [0] * len(index)
    for name, *_ in file_speakers:
        summary.speaker_files[index[name]] += 1
    if len(index) > np.iinfo(np.int16).max:
        raise UserError(f"{len(index)} speaker folders: at most {np.iinfo(np.int16).max} are supported")
    speaker_ids = np.concatenate([np.full(n, index[name], dtype=np.int16) for name, n, *_ in file_speakers])
    write_file(os.path.join(staging, SPEAKERS_FILE), lambda f: np.save(f, speaker_ids))
    recordings = np.array([samples for _, _, samples, _ in file_speakers], dtype=np.int64)
    write_file(os.path.join(staging, RECORDINGS_FILE), lambda f: np.save(f, recordings))
    meta = {
        "format": FORMAT,
        "rate": rate,
        "chunk_length": chunk_length,
        "levels": job.levels,
        "receptive_field": job.receptive_field,
        "speakers": summary.speakers,
        "chunks": summary.chunks,
        "recordings": len(recordings),
        "recording_files": [name for *_, name in file_speakers],  # so a run can name what it holds out
        "files_read": summary.files_read,
        "seconds": round(summary.seconds, 3),
        "too_short": summary.too_short,
        "unreadable": [name for name, _ in summary.unreadable],
        "refused": [name for name, _ in summary.refused],
        "files": corpus.commit_record(staging),  # what this meta file commits: readers check it
    }
    if job.speaker_level is not None:
        meta["speaker_level"] = job.speaker_level
    if mel is not None:
        stored = np.load(os.path.join(staging, FEATURES_FILE), mmap_mode="r")
        bounds = np.cumsum([0, *frame_counts])
        mean, std = statistics(stored[a:b] for a, b in zip(bounds[:-1], bounds[1:]))
        meta["features"] = stored_settings(mel, mean, std, lead_in=lead_in)
    text = json.dumps(meta, indent=1, sort_keys=True) + "\n"
    write_file(os.path.join(staging, META_FILE), lambda f: f.write(text.encode()))
    return summary


class NpyRows:
    """A .npy file of rows of `dtype`, `width` values each, written a block of rows at a time.

    The .npy header has room for any row count (numpy pads it for in-place growth), so it is written
    with 0 rows first and rewritten with the final count by `close`.
    """

    def __init__(self, f, dtype, width):
        self.f, self.header, self.rows = f, {"descr": np.dtype(dtype).str, "fortran_order": False}, 0
        self.dtype, self.width = np.dtype(dtype), width
        np.lib.format.write_array_header_1_0(f, {**self.header, "shape": (0, width)})
        self.data_start = f.tell()

    def append(self, block):
        """Write rows (n, width)."""
        self.f.write(np.ascontiguousarray(block, dtype=self.dtype).tobytes())
        self.rows += len(block)

    def close(self):
        self.f.seek(0)
        np.lib.format.write_array_header_1_0(self.f, {**self.header, "shape": (self.rows, self.width)})
        assert self.f.tell() == self.data_start, "the .npy header changed size"
        self.f.seek(0, os.SEEK_END)


def write_file(path, write):
    """Call write(file_object) on new file `path`, then fsync it; UserError if the disk refuses it.

    The staging folder is private to this run, so a plain write suffices: the commit makes it atomic.
    """
    try:
        with open(path, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if e.errno not in DISK_ERRORS:
            raise
        raise UserError(
            f"cannot write {printable(path)!r} ({e.strerror}); free some space or pick another --output"
        ) from None


def nothing_usable(data, summary):
    """The UserError message when no file gave a chunk."""
    seconds = summary.chunk_length / summary.rate
    unread = [name for name, _ in summary.unreadable] + [f"{name} ({why})" for name, why in summary.refused]
    if not summary.too_short:
        return (
            f"no chunk from {data!r}: none of its {summary.files_found} files could be read as audio "
            f"({first_few(unread)}); replace them or convert them to .wav or .flac"
        )
    return (
        f"no chunk from {data!r}: of {summary.files_found} files, {len(summary.too_short)} are shorter "
        f"than one chunk ({summary.chunk_length:,} samples = {seconds:.2f} s at {summary.rate:,} Hz) "
        f"and {len(unread)} unreadable; pass longer files or lower --target_length, "
        "--stacks_num or --layers_num"
    )
