"""Decoding recordings into chunks of mu-law codes, in worker processes that end with their parent."""

import ctypes
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import NamedTuple

import numpy as np

from .audio import AudioError, ImplausibleRate, load_audio, mu_law_encode
from .features import log_mel

TOO_SHORT = "shorter than one chunk"
PR_SET_PDEATHSIG = 1  # prctl option (linux/prctl.h): the signal a process gets when its parent dies


class FileChunks(NamedTuple):
    """What one audio file gives: codes uint8 (n, chunk_length) or None, its seconds, why it gave none,
    and how many of its codes are real (lead-in included) before the silence that pads the last chunk."""

    codes: np.ndarray | None
    seconds: float
    problem: str | None  # None, TOO_SHORT or the AudioError message
    samples: int = 0
    refused: str | None = None  # why its sample rate was refused (audio.rate_problem), if it was
    frames: np.ndarray | None = None  # float32 (features.MelSettings.frames_for(n * chunk_length), bands)


def chunk_file(path, rate, chunk_length, levels, lead_in=0, mel=None):
    """Load, mu-law encode and cut one file into consecutive chunks (silence pads the last one).

    lead_in silence samples go before the recording, so that the first chunk teaches the model
    to start from silence, as generation from scratch does. mel: features.MelSettings of the
    log-mel frames to compute over the same samples, lead-in and padding included. Runs in worker
    processes, so an unreadable file comes back as a problem instead of an exception.
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
    stream = np.concatenate([silence[0], samples, silence[1]])
    codes = mu_law_encode(stream, levels).astype(np.uint8).reshape(n, chunk_length)
    frames = None if mel is None else log_mel(stream, mel)
    return FileChunks(codes, len(samples) / rate, None, total, frames=frames)


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


def decode_files(paths, rate, chunk_length, levels, workers, lead_in=0, mel=None):
    """Yield (path, chunk_file's FileChunks) for each path, in order, from `workers` processes (1: this one)."""
    work = partial(chunk_file, rate=rate, chunk_length=chunk_length, levels=levels, lead_in=lead_in, mel=mel)
    if workers == 1:
        yield from zip(paths, map(work, paths))
        return
    # processes, not threads: decoding and resampling hold the GIL. pool.map returns results in
    # file order and raises a worker's unexpected exception here instead of dropping it.
    with ProcessPoolExecutor(
        max_workers=min(workers, len(paths)), initializer=_exit_with_parent, initargs=(os.getpid(),)
    ) as pool:
        yield from zip(paths, pool.map(work, paths))
