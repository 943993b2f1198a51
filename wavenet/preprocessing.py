"""Building a corpus: audio files -> chunks of mu-law codes in a preprocessed folder (see corpus for its format)."""

import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from .audio import AUDIO_EXTENSIONS, AudioError, load_audio, mu_law_encode
from .corpus import CODES_FILE, FORMAT, MAX_LEVELS, META_FILE, RECORDINGS_FILE, SPEAKERS_FILE
from .errors import UserError
from .files import atomic_write

TOO_SHORT = "shorter than one chunk"
SHOW_UNREADABLE = 3  # unreadable files named in the summary line; the log names all of them

log = logging.getLogger(__name__)


class FileChunks(NamedTuple):
    """What one audio file gives: codes uint8 (n, chunk_length) or None, its seconds, why it gave none,
    and how many of its codes are real (lead-in included) before the silence that pads the last chunk."""

    codes: np.ndarray | None
    seconds: float
    problem: str | None  # None, TOO_SHORT or the AudioError message
    samples: int = 0


@dataclass
class PreprocessSummary:
    """Counts of one `preprocess` run."""

    files_found: int
    rate: int
    chunk_length: int
    files_read: int = 0  # decoded, including those shorter than one chunk
    seconds: float = 0.0  # length of the audio decoded
    chunks: int = 0
    too_short: list = field(default_factory=list)  # paths relative to the data folder
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
        line = (
            f"read {self.files_read} of {self.files_found} {files} ({format_duration(self.seconds)} "
            f"of audio at {self.rate:,} Hz), wrote {self.chunks:,} chunks of {self.chunk_length:,} "
            f"samples from {len(self.speakers)} speaker(s)"
        )
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
    found = [
        os.path.join(root, name)
        for root, _, names in os.walk(data, followlinks=True)
        for name in names
        if name.lower().endswith(AUDIO_EXTENSIONS)
    ]
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


def preprocess(data, output, rate, chunk_length, workers=1, flush_every=100, levels=256, receptive_field=None):
    """Turn the audio under `data` into chunks of `chunk_length` mu-law codes in folder `output`.

    chunk_length: the length of a training window, windows.WindowGeometry(receptive_field,
    target_length).length, computed by the caller. workers: processes decoding files (1 runs in this
    process). flush_every: chunks buffered between writes. receptive_field: recorded in the meta file,
    and that much silence leads each file in. Returns a PreprocessSummary; raises UserError if nothing
    is usable.
    """
    if not 2 <= levels <= MAX_LEVELS:
        raise UserError(f"levels {levels}: codes are stored in one byte, pass 2..{MAX_LEVELS}")
    if rate <= 0 or chunk_length <= 0 or workers <= 0 or flush_every <= 0:
        raise ValueError(
            f"rate, chunk_length, workers and flush_every must be positive, got "
            f"{rate}, {chunk_length}, {workers}, {flush_every}"
        )
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
            for path, result in decode_files(files, rate, chunk_length, levels, workers, lead_in=receptive_field or 0):
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
    }
    # written last: a folder with a meta file is complete
    atomic_write(
        os.path.join(output, META_FILE), lambda f: f.write((json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    )
    return summary


def nothing_usable(data, summary):
    """The UserError message when no file gave a chunk."""
    seconds = summary.chunk_length / summary.rate
    if not summary.too_short:
        names = ", ".join(name for name, _ in summary.unreadable[:SHOW_UNREADABLE])
        more = ", ..." if len(summary.unreadable) > SHOW_UNREADABLE else ""
        return (
            f"no chunk from {data!r}: none of its {summary.files_found} files could be read as audio "
            f"({names}{more}); replace them or convert them to .wav or .flac"
        )
    return (
        f"no chunk from {data!r}: of {summary.files_found} files, {len(summary.too_short)} are shorter "
        f"than one chunk ({summary.chunk_length:,} samples = {seconds:.2f} s at {summary.rate:,} Hz) "
        f"and {len(summary.unreadable)} unreadable; pass longer files or lower --target_length, "
        "--stacks_num or --layers_num"
    )
