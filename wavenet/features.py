"""Log-mel features for WaveNet's local conditioning: one function for preprocessing and for inference.

A frame is the log of a mel-scaled magnitude spectrum, ln(max(mel, 1e-5)) as in Tacotron 2's and
HiFi-GAN's vocoders, over a Hann window centred on sample f * hop (librosa's center=True, with
silence beyond both ends). The audio is first padded with silence to a whole number of hops, so T
samples give ceil(T / hop) + 1 frames: every sample lies between two frames, which is what
`layers.FrameUpsampler` needs. A feature file for `infer_wavenet.py --mel FILE.npy` holds these
frames as float32 or float64 (frames, bands), before normalisation; generation gives (frames - 1) * hop samples.

`MelSettings` is everything that defines a frame; preprocessing stores it, with the per-band mean
and standard deviation of its corpus (`normalise`), in the folder's meta file, and training copies
both into the snapshot, so inference computes exactly the features the model was trained on.
"""

import logging
import math
import os
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from .errors import UserError

HOP_SECONDS = 0.0125  # 12.5 ms between frames, as in Tacotron 2 (200 samples at 16 kHz)
WINDOW_HOPS = 4  # a 50 ms analysis window
LOG_FLOOR = 1e-5  # the magnitude below which every value reads as silence: ln(1e-5) = -11.5
MAX_BANDS = 512  # more bands than any vocoder uses (80 is usual); a typo beyond would need gigabytes
FAR_OUTSIDE = 20.0  # normalised frames beyond this many corpus standard deviations: another scale, likely


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MelSettings:
    """What defines a log-mel frame; stored as a dict (`asdict`) in meta files and snapshots."""

    rate: int  # Hz of the audio
    bands: int  # mel bands per frame: the model's cin_channels
    hop: int  # samples between frame centres: the model's hop_length
    window: int  # samples in the Hann window
    fft: int  # FFT size: the window zero-padded to a power of two
    fmin: float = 0.0  # Hz of the lowest mel band's lower edge
    fmax: float | None = None  # Hz of the highest band's upper edge; None: rate / 2

    @classmethod
    def for_rate(cls, rate, bands, hop=None, window=None):
        """Defaults for `rate`: a 12.5 ms hop and a window of four hops; UserError for settings that cannot work."""
        hop = hop or max(1, round(rate * HOP_SECONDS))
        window = window or WINDOW_HOPS * hop
        if not 1 <= bands <= MAX_BANDS:
            raise UserError(f"--mel {bands}: pass 1 to {MAX_BANDS} bands (80 is usual)")
        if window > rate:
            raise UserError(
                f"--mel_window {window:,} samples is longer than a second at {rate:,} Hz; speech frames are 20-50 ms"
            )
        if hop > window:
            raise UserError(
                f"--mel_hop {hop:,} is longer than the {window:,}-sample window: samples between windows would "
                "never be analysed; pass a hop no longer than --mel_window"
            )
        settings = cls(rate, bands, hop, window, 1 << math.ceil(math.log2(window)))
        settings.check()
        return settings

    def check(self):
        """UserError where some mel band would hold no FFT bin (too many bands for the window)."""
        empty = int((mel_filters(self).max(axis=1) == 0).sum())
        if empty:
            raise UserError(
                f"{self.bands} mel bands over a {self.window}-sample window at {self.rate:,} Hz leave {empty} "
                "band(s) without a frequency bin; pass fewer bands to --mel or a longer --mel_window"
            )

    def frames_for(self, samples):
        """Frames that `log_mel` gives for `samples` samples."""
        return -(-samples // self.hop) + 1

    @classmethod
    def from_dict(cls, d):
        """The settings a meta file or snapshot stored (its extra keys, such as the statistics, ignored)."""
        return cls(**{name: d[name] for name in cls.__dataclass_fields__})


def mel_filters(settings):
    """The mel filter bank (bands, fft // 2 + 1), librosa's Slaney-normalised one."""
    import librosa

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Empty filters detected")  # MelSettings.check says it as an error
        return librosa.filters.mel(
            sr=settings.rate, n_fft=settings.fft, n_mels=settings.bands, fmin=settings.fmin, fmax=settings.fmax
        )


def log_mel(samples, settings):
    """float samples (T,) at settings.rate -> log-mel frames float32 (ceil(T / hop) + 1, bands)."""
    import librosa

    # float64 throughout: the frames of a recording then come out the same in float32 whether it
    # is analysed alone (inference) or with the padding preprocessing adds after it
    samples = np.asarray(samples, dtype=np.float64)
    padded = np.pad(samples, (0, -len(samples) % settings.hop))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "n_fft=.* is too large")  # a recording shorter than one window
        stft = librosa.stft(
            padded, n_fft=settings.fft, hop_length=settings.hop, win_length=settings.window, pad_mode="constant"
        )
    mel = mel_filters(settings).astype(np.float64) @ np.abs(stft)  # (bands, frames)
    return np.log(np.maximum(mel, LOG_FLOOR)).T.astype(np.float32)


def statistics(frame_sets):
    """Per-band mean and standard deviation over all frames of an iterable of (frames, bands) arrays."""
    count, total, squares = 0, 0.0, 0.0
    for frames in frame_sets:
        frames = frames.astype(np.float64)
        count += len(frames)
        total = total + frames.sum(0)
        squares = squares + (frames**2).sum(0)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 0))
    return mean.tolist(), np.maximum(std, 1e-3).tolist()  # a band constant over the corpus stays finite


def normalise(frames, stored):
    """Log-mel frames (..., frames, bands) -> what the model takes: per band, minus the corpus mean, over its std.

    stored: the dict of a meta file or snapshot ("mean" and "std" lists of bands values).
    """
    mean = np.asarray(stored["mean"], dtype=np.float32)
    std = np.asarray(stored["std"], dtype=np.float32)
    return (frames - mean) / std


def stored_settings(settings, mean, std, lead_in):
    """The dict a meta file and a snapshot store: the settings, the corpus statistics, and the
    silence preprocessing put before each recording (its frames include it)."""
    return {**asdict(settings), "mean": list(mean), "std": list(std), "lead_in": int(lead_in)}


def recording_frames(samples, stored):
    """A recording's log-mel frames as preprocessing computed them: with its lead-in of silence first."""
    lead_in = np.zeros(stored["lead_in"], np.float32)
    return log_mel(np.concatenate([lead_in, samples]), MelSettings.from_dict(stored))


def read_npy(path, name, what):
    """The array of .npy file `path` (`name`: as printed); UserError saying to pass `what` where the file
    holds no array of numbers: not a .npy file (an .npz, random bytes) or one of pickled objects, which are
    never loaded (unpickling can run any code)."""
    if not os.path.isfile(path):
        raise UserError(f"--mel {name}: no such file")  # as load_audio says it of a .wav
    not_numbers = f"--mel {name} is not a .npy array of numbers (pickled objects are never loaded); pass {what}"
    try:
        with open(path, "rb") as f:
            if f.read(len(np.lib.format.MAGIC_PREFIX)) != np.lib.format.MAGIC_PREFIX:
                raise UserError(not_numbers)
            f.seek(0)
            version = np.lib.format.read_magic(f)
            # version 3.0 differs from 2.0 only in the text encoding of the header, which 2.0's reader accepts
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            _, _, dtype = header(f)
        if dtype.hasobject:
            raise UserError(not_numbers)
        return np.load(path, allow_pickle=False)
    except OSError as e:
        raise UserError(f"--mel {name}: cannot read the file ({e.strerror or e})") from None
    except ValueError as e:  # a torn header or fewer bytes than the header promises
        raise UserError(f"--mel {name}: cannot read it as a .npy array ({e}); is the file complete?") from None


def read_feature_file(path, stored, resample=False):
    """Frames for `infer_wavenet.py --mel FILE` -> (normalised frames float32 (bands, F), lead-in, samples).

    FILE.wav/.flac: its recording_frames, to resynthesise its `samples` samples after `lead_in` of
    silence; at another rate than the model's it is a UserError unless `resample`. FILE.npy: log-mel
    frames (F, bands) float32 or float64 computed as `log_mel` does (another model's output, say), from
    sample 0 (lead-in 0; samples None: all the frames cover). UserError for anything else.
    """
    from .audio import AUDIO_EXTENSIONS, AudioError, load_audio, printable

    settings = MelSettings.from_dict(stored)
    name = printable(path)
    if path.lower().endswith(AUDIO_EXTENSIONS):
        import soundfile as sf

        try:
            file_rate = sf.info(os.fsencode(path)).samplerate
        except (sf.LibsndfileError, OSError, RuntimeError):
            file_rate = settings.rate  # load_audio names the problem
        if file_rate != settings.rate and not resample:
            raise UserError(
                f"--mel {name} is at {file_rate:,} Hz but the model was trained on {settings.rate:,} Hz features; "
                f"add --mel_resample to resample it to {settings.rate:,} Hz as preprocess.py did"
            )
        try:
            samples = load_audio(path, settings.rate)
        except AudioError as e:
            raise UserError(f"--mel {e}") from None
        if not len(samples):
            raise UserError(f"--mel {name} holds no samples; pass a recording to resynthesise")
        frames = normalise(recording_frames(samples, stored), stored).T.copy()
        return frames, stored["lead_in"], len(samples)
    if not path.lower().endswith(".npy"):
        raise UserError(f"--mel {name}: expected a .wav or .flac recording or a .npy file of log-mel frames")
    what = f"log-mel frames (frames, {settings.bands}) float32 or float64 as wavenet.features.log_mel writes them"
    frames = read_npy(path, name, what)
    if frames.dtype not in (np.float32, np.float64) or frames.ndim != 2 or frames.shape[1] != settings.bands:
        raise UserError(f"--mel {name} holds {frames.dtype} {frames.shape}; the model needs {what}")
    if len(frames) < 2:
        raise UserError(f"--mel {name} holds {len(frames)} frame(s); at least 2 condition a sample ({what})")
    if not np.isfinite(frames).all():
        raise UserError(f"--mel {name} holds NaN or infinite values; the model needs {what}")
    frames = normalise(frames.astype(np.float32), stored)
    if np.abs(frames).max() > FAR_OUTSIDE:
        log.warning(
            "--mel %s: its frames lie up to %.0f standard deviations from the training corpus's; were they "
            "computed as wavenet.features.log_mel does (natural log of the magnitude mel, floor 1e-5)?",
            name,
            np.abs(frames).max(),
        )
    return frames.T.copy(), 0, None
