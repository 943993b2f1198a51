"""Audio math and files: mu-law companding (WaveNet paper, section 2.2), reading and writing sound files.

Codes: mu = levels - 1; a sample x in [-1, 1] is companded to f = sign(x) ln(1 + mu|x|) / ln(1 + mu)
and rounded to the nearest of `levels` evenly spaced values of f, q = floor((f + 1) / 2 * mu + 0.5).
So 0.0 maps to levels // 2 (the silence code WaveNet assumes before the first sample), and decoding
takes q back to the centre of its bin, which encodes to q again.
"""

import io
import math
import os
import struct

import librosa
import numpy as np
import soundfile as sf
import torch

from .errors import UserError
from .files import atomic_write

AUDIO_EXTENSIONS = (".wav", ".flac")
RESAMPLER = "soxr_hq"  # band-limited and fast; keeps energy and pitch (tested)
PCM16_MAX = 32767  # 16-bit PCM full scale; clip first, or out-of-range values wrap around
# Sample rates a recording can plausibly have: below 1 kHz no speech is intelligible, and 384 kHz is
# the highest rate audio interfaces record. A header outside claims nonsense (1 Hz would turn 1 s of
# audio into hours when resampled), so the file is refused instead of resampled.
MIN_RATE, MAX_RATE = 1_000, 384_000
# Upsampling by more than this (8 kHz to 256 kHz) invents over 97% of the samples and multiplies
# memory and disk by as much: a mistaken --rate, not a wish
MAX_UPSAMPLING = 32


class AudioError(UserError):
    """A sound file that cannot be read: missing, not audio, truncated or holding NaNs."""


class ImplausibleRate(AudioError):
    """A sound file whose sample rate is absurd, or would be upsampled absurdly; `reason` says which."""

    def __init__(self, path, reason):
        self.reason = reason
        super().__init__(f"{printable(path)}: {reason}; refused rather than resampled")


def printable(path):
    """`path` as text that can always be printed and stored as JSON: bytes of a file name that are
    not valid UTF-8 (held as surrogates by Python, such as 0xff) are shown as \\xff."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def rate_problem(file_rate, rate):
    """Why audio at `file_rate` Hz can't be resampled to `rate` Hz, or None where it can."""
    if not MIN_RATE <= file_rate <= MAX_RATE:
        return f"sample rate {file_rate:,} Hz is implausible (expected {MIN_RATE:,}..{MAX_RATE:,})"
    if rate > MAX_UPSAMPLING * file_rate:
        return (
            f"resampling {file_rate:,} Hz to {rate:,} Hz would upsample {rate / file_rate:.0f}x "
            f"(at most {MAX_UPSAMPLING}x)"
        )
    return None


def mu_law_encode(x, levels=256):
    """x: audio in [-1, 1] (clipped first), numpy array or tensor of any shape.

    Returns integer codes 0..levels-1 of the same shape (int64 array or long tensor); 0.0 -> levels // 2.
    """
    mu = levels - 1
    if torch.is_tensor(x):
        x = x.to(torch.float64).clamp(-1, 1)
        f = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
        return torch.floor((f + 1) / 2 * mu + 0.5).long()
    x = np.clip(np.asarray(x, dtype=np.float64), -1, 1)
    f = np.sign(x) * np.log1p(mu * np.abs(x)) / math.log1p(mu)
    return np.floor((f + 1) / 2 * mu + 0.5).astype(np.int64)


def mu_law_decode(codes, levels=256):
    """codes: integers 0..levels-1, numpy array or tensor of any shape.

    Returns audio in [-1, 1] of the same shape (float64 array, or float32 tensor on the codes' device).
    """
    mu = levels - 1
    if torch.is_tensor(codes):
        y = 2 * codes.to(torch.float64) / mu - 1
        return (torch.sign(y) * torch.expm1(y.abs() * math.log1p(mu)) / mu).float()
    y = 2 * np.asarray(codes, dtype=np.float64) / mu - 1
    # (1 + mu)^|y| - 1, written with expm1 for accuracy near silence
    return np.sign(y) * np.expm1(np.abs(y) * math.log1p(mu)) / mu


def load_audio(path, rate):
    """Read a .wav or .flac file (any PCM or float subtype; channels averaged to mono).

    Returns float32 samples [T] at `rate` Hz, clipped to [-1, 1]. Raises AudioError naming the file
    (ImplausibleRate where its sample rate or the upsampling to `rate` is absurd, see rate_problem).
    """
    name = printable(path)
    if not os.path.isfile(path):
        raise AudioError(f"{name}: no such file")
    try:
        check_wav_length(path)
        # bytes: soundfile encodes a str path strictly, which fails on names that are not valid UTF-8
        with sf.SoundFile(os.fsencode(path)) as f:
            file_rate = f.samplerate
            if problem := rate_problem(file_rate, rate):
                raise ImplausibleRate(path, problem)
            samples = f.read(dtype="float32", always_2d=True)  # (T, channels)
    except sf.LibsndfileError as e:
        raise AudioError(f"{name}: cannot read it as audio ({e.error_string.rstrip('.')})") from None
    except (sf.SoundFileError, OSError) as e:
        raise AudioError(f"{name}: cannot read it as audio ({getattr(e, 'strerror', None) or e})") from None
    samples = samples.mean(axis=1)
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: holds NaN or infinite samples")
    if file_rate != rate and len(samples):
        # float input: resampling integer PCM directly is where old scipy returned silence
        samples = librosa.resample(samples, orig_sr=file_rate, target_sr=rate, res_type=RESAMPLER)
    # float files may exceed full scale, and resampling can overshoot at clipped peaks
    return np.clip(samples, -1, 1).astype(np.float32, copy=False)


def check_wav_length(path):
    """Raise AudioError when a RIFF/WAVE file's data chunk promises more bytes than the file holds.

    libsndfile silently reads what is there, so a half-copied file would pass as a shorter recording.
    """
    if not path.lower().endswith(".wav"):
        return
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return  # not plain RIFF/WAVE (RF64, W64, garbage): left to libsndfile
        while True:
            chunk = f.read(8)
            if len(chunk) < 8:
                return
            chunk_id, chunk_size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF mark a length the writer did not know (streamed files)
                if chunk_size not in (0, 0xFFFFFFFF) and f.tell() + chunk_size > size:
                    raise AudioError(
                        f"{printable(path)}: truncated, the header promises {chunk_size} bytes of "
                        f"audio but the file holds {size - f.tell()}"
                    )
                return
            f.seek(chunk_size + chunk_size % 2, os.SEEK_CUR)  # chunks are padded to even sizes


def write_wav(path, samples, rate):
    """Write mono samples [T] (array or tensor, nominally in [-1, 1]) atomically as 16-bit PCM .wav."""
    if torch.is_tensor(samples):
        samples = samples.detach().cpu().numpy()
    pcm = np.round(np.clip(np.asarray(samples, dtype=np.float64), -1, 1) * PCM16_MAX).astype(np.int16)
    # into memory first: soundfile would swallow a full disk's OSError (printing its traceback) and
    # fail on an assertion instead, while a plain write lets atomic_write report it
    buffer = io.BytesIO()
    sf.write(buffer, pcm, rate, format="WAV", subtype="PCM_16")
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))
