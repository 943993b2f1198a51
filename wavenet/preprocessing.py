"""Building a corpus: audio files -> chunks of mu-law codes in a preprocessed folder (see corpus for its format).

The four output files are staged and then committed as a whole (corpus.commit): a run killed at any
moment leaves the previous output readable as it was, and the next run removes what it left behind.
Decoding workers end with this process, even when it is killed (_exit_with_parent).
"""

import ctypes
import errno
import json
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import numpy as np

from . import corpus
from .audio import (
    AUDIO_EXTENSIONS,
    MAX_RATE,
    MIN_RATE,
    AudioError,
    ImplausibleRate,
    load_audio,
    mu_law_encode,
    printable,
)
from .corpus import CODES_FILE, FORMAT, MAX_LEVELS, META_FILE, RECORDINGS_FILE, SPEAKERS_FILE
from .errors import UserError
from .report import bar as progress_bar

TOO_SHORT = "shorter than one chunk"
SHOW_UNREADABLE = 3  # unreadable files named in the summary line; the log names all of them
# what a full, failing or read-only disk answers a write (other OSErrors, from decoding, pass through)
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS)
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal a process gets when its parent dies

log = logging.getLogger(__name__)


class FileChunks(NamedTuple):
    """What one audio file gives: codes uint8 (n, chunk_length) or None, its seconds, why it gave none,
    and how many of its codes are real (lead-in included) before the silence that pads the last chunk."""

    codes: np.ndarray | None
    seconds: float
    problem: str | None  # None, TOO_SHORT or the AudioError message
    samples: int = 0
    refused: str | None = None  # why its sample rate was refused (audio.rate_problem), if it was


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
    speakers: list = field(default_factory=list)

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


def first_few(names):
    """The first SHOW_UNREADABLE of `names`, comma-separated, and how many more."""
    names = list(names)
    more = len(names) - SHOW_UNREADABLE
    return ", ".join(names[:SHOW_UNREADABLE]) + (f" and {more} more" if more > 0 else "")


def format_duration(seconds):
    """'0.06 h' for an hour's fraction and more, '12.3 s' below (where hours would print 0.00)."""
    return f"{seconds / 3600:.2f} h" if seconds >= 36 else f"{seconds:.1f} s"


def find_audio(data):
    """Sorted paths of the .wav and .flac files under folder `data` (recursively), or `data` itself if a file.

    Symbolic links are followed, but no folder is entered twice and no file is listed twice (a link
    loop, two links to one place, hard links): one warning line says how many were skipped.
    """
    if os.path.isfile(data):
        if not data.lower().endswith(AUDIO_EXTENSIONS):
            raise UserError(f"{data!r} is not a .wav or .flac file; pass it or the folder holding such files")
        return [data]
    if not os.path.isdir(data):
        raise UserError(f"data folder {data!r} not found; pass the folder holding the .wav/.flac files")
    found, seen, again = [], set(), {"folder": [], "file": []}  # seen: (st_dev, st_ino) of both
    folders = [data]
    while folders:  # depth first, in name order: the same path of several is kept on every run
        folder = folders.pop()
        try:
            status = os.stat(folder)
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue  # unreadable or vanished, as os.walk skips it
        if (status.st_dev, status.st_ino) in seen:
            again["folder"].append(folder)
            continue
        seen.add((status.st_dev, status.st_ino))
        subfolders = []
        for entry in entries:
            try:
                if entry.is_dir():
                    subfolders.append(entry.path)
                    continue
                status = entry.stat()
            except OSError:  # a broken link: listed, then reported unreadable
                status = None
            if not entry.name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            if status is not None and (status.st_dev, status.st_ino) in seen:
                again["file"].append(entry.path)
                continue
            if status is not None:
                seen.add((status.st_dev, status.st_ino))
            found.append(entry.path)
        folders.extend(reversed(subfolders))
    if again["folder"] or again["file"]:
        example = printable(os.path.relpath((again["folder"] or again["file"])[0], data))
        log.warning(
            "skipped %d folder(s) and %d file(s) under %s reached again by another path (a symbolic link "
            "loop, or two links to one place), such as %s: each is read once",
            len(again["folder"]),
            len(again["file"]),
            printable(data),
            example,
        )
    if not found:
        raise UserError(f"data folder {data!r} holds no .wav or .flac files (searched all subfolders)")
    return sorted(found)  # a fixed order makes reruns byte-identical


def speaker_of(path):
    """VCTK keeps each speaker in a folder (wav48/p225/p225_001.wav): the name of the file's folder, printable."""
    return printable(os.path.basename(os.path.dirname(os.path.abspath(path))))


def chunk_file(path, rate, chunk_length, levels, lead_in=0):
    """Load, mu-law encode and cut one file into consecutive chunks (silence pads the last one).

    lead_in silence samples go before the recording, so that the first chunk teaches the model
    to start from silence, as generation from scratch does. Runs in worker processes, so an
    unreadable file comes back as a problem instead of an exception.
    """
    try:
        samples = load_audio(path, rate)
    except ImplausibleRate as e:
        return FileChunks(None, 0.0, str(e), refused=e.reason)
    except AudioError as e:
        return FileChunks(None, 0.0, str(e))
    total = lead_in + len(samples)
    if total < chunk_length:
        return FileChunks(None, len(samples) / rate, TOO_SHORT)
    n = -(-total // chunk_length)  # chunks, the last one padded
    silence = np.zeros(lead_in, samples.dtype), np.zeros(n * chunk_length - total, samples.dtype)
    codes = mu_law_encode(np.concatenate([silence[0], samples, silence[1]]), levels)
    return FileChunks(codes.astype(np.uint8).reshape(n, chunk_length), len(samples) / rate, None, total)


def _exit_with_parent(parent):
    """ProcessPoolExecutor initializer: the worker ends when process `parent` does, even by SIGKILL.

    A killed preprocess would otherwise leave its workers (hundreds of MB each) alive, waiting for
    work that never comes. On Linux the kernel sends SIGTERM at the parent's death (prctl); elsewhere
    a thread polls os.getppid(). Either way the check afterwards catches a parent that died first.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not a handler inherited from the parent
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    else:

        def watch():
            while os.getppid() == parent:
                time.sleep(1)
            os._exit(1)

        threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:
        os._exit(1)


def decode_files(paths, rate, chunk_length, levels, workers, lead_in=0):
    """Yield (path, chunk_file's FileChunks) for each path, in order, from `workers` processes (1: this one)."""
    work = partial(chunk_file, rate=rate, chunk_length=chunk_length, levels=levels, lead_in=lead_in)
    if workers == 1:
        yield from zip(paths, map(work, paths))
        return
    # processes, not threads: decoding and resampling hold the GIL. pool.map returns results in
    # file order and raises a worker's unexpected exception here instead of dropping it.
    with ProcessPoolExecutor(
        max_workers=min(workers, len(paths)), initializer=_exit_with_parent, initargs=(os.getpid(),)
    ) as pool:
        yield from zip(paths, pool.map(work, paths))


def preprocess(data, output, rate, chunk_length, workers=1, flush_every=100, levels=256, receptive_field=None):
    """Turn the audio under `data` into chunks of `chunk_length` mu-law codes in folder `output`.

    chunk_length: the length of a training window, windows.WindowGeometry(receptive_field,
    target_length).length, computed by the caller. workers: processes decoding files (1 runs in this
    process). flush_every: chunks buffered between writes. receptive_field: recorded in the meta file,
    and that much silence leads each file in. Returns a PreprocessSummary; raises UserError if nothing
    is usable. The four files are committed as a whole (see corpus), so the folder keeps its previous
    output, whole, until the new one is complete.
    """
    if not 2 <= levels <= MAX_LEVELS:
        raise UserError(f"levels {levels}: codes are stored in one byte, pass 2..{MAX_LEVELS}")
    if rate <= 0 or chunk_length <= 0 or workers <= 0 or flush_every <= 0:
        raise ValueError(
            f"rate, chunk_length, workers and flush_every must be positive, got "
            f"{rate}, {chunk_length}, {workers}, {flush_every}"
        )
    if not MIN_RATE <= rate <= MAX_RATE:
        raise UserError(f"--rate {rate:,}: pass a sample rate from {MIN_RATE:,} to {MAX_RATE:,} Hz")
    files = find_audio(data)
    try:
        os.makedirs(output, exist_ok=True)
    except OSError as e:
        raise UserError(f"output folder {output!r}: cannot create it ({e.strerror})") from None
    removed = corpus.remove_stale(output)
    if removed:
        log.warning("removed what interrupted preprocess runs left in %s: %s", printable(output), ", ".join(removed))
    try:
        staging = corpus.make_staging(output)
    except OSError as e:
        raise UserError(f"output folder {output!r}: cannot write in it ({e.strerror}); pick another --output") from None
    try:
        summary = write_staged(data, files, staging, rate, chunk_length, workers, flush_every, levels, receptive_field)
        corpus.commit(output, staging)
    except BaseException:
        corpus.discard(staging)  # Ctrl-C or an error: the previous output stays, and nothing else
        raise
    return summary


def write_staged(data, files, staging, rate, chunk_length, workers, flush_every, levels, receptive_field):
    """Decode `files` and write the four output files into folder `staging`, each fsynced, meta last."""
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
        with progress_bar(total=len(files), unit="file", desc="preprocess") as bar:
            for path, result in decode_files(files, rate, chunk_length, levels, workers, lead_in=receptive_field or 0):
                bar.update()
                summary.add(printable(os.path.relpath(path, base)), result)
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

    write_file(os.path.join(staging, CODES_FILE), write_codes)
    summary.speakers = sorted({name for name, _, _ in file_speakers})
    index = {name: i for i, name in enumerate(summary.speakers)}
    if len(index) > np.iinfo(np.int16).max:
        raise UserError(f"{len(index)} speaker folders: at most {np.iinfo(np.int16).max} are supported")
    speaker_ids = np.concatenate([np.full(n, index[name], dtype=np.int16) for name, n, _ in file_speakers])
    write_file(os.path.join(staging, SPEAKERS_FILE), lambda f: np.save(f, speaker_ids))
    recordings = np.array([samples for _, _, samples in file_speakers], dtype=np.int64)
    write_file(os.path.join(staging, RECORDINGS_FILE), lambda f: np.save(f, recordings))
    meta = {
        "format": FORMAT,
        "rate": rate,
        "chunk_length": chunk_length,
        "levels": levels,
        "receptive_field": receptive_field,
        "speakers": summary.speakers,
        "chunks": summary.chunks,
        "recordings": len(recordings),
        "files_read": summary.files_read,
        "seconds": round(summary.seconds, 3),
        "too_short": summary.too_short,
        "unreadable": [name for name, _ in summary.unreadable],
        "refused": [name for name, _ in summary.refused],
        "files": corpus.commit_record(staging),  # what this meta file commits: readers check it
    }
    text = json.dumps(meta, indent=1, sort_keys=True) + "\n"
    write_file(os.path.join(staging, META_FILE), lambda f: f.write(text.encode()))
    return summary


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
