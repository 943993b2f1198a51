"""mu-law companding and sound-file reading/writing (wavenet/audio.py)."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from wavenet.audio import AudioError, load_audio, mu_law_decode, mu_law_encode, write_wav
from wavenet.errors import UserError

RATE = 16000


def sine(rate, seconds=1.0, freq=440.0, amplitude=0.5):
    t = np.arange(int(rate * seconds)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def peak_frequency(x, rate):
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()]


def rms(x):
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


@pytest.mark.parametrize("levels", [256, 16, 2])
def test_every_code_round_trips(levels):
    codes = np.arange(levels)
    assert np.array_equal(mu_law_encode(mu_law_decode(codes, levels), levels), codes)
    t = torch.arange(levels)
    assert torch.equal(mu_law_encode(mu_law_decode(t, levels), levels), t)


@pytest.mark.parametrize("levels", [256, 16])
def test_silence_is_the_middle_code(levels):
    # WaveNet pads with levels // 2 before the first sample: it must be the code of 0.0
    assert mu_law_encode(np.array([0.0]), levels)[0] == levels // 2
    assert mu_law_decode(np.array([levels // 2]), levels)[0] == pytest.approx(0.0, abs=0.02)


def test_encode_clips_out_of_range_input():
    codes = mu_law_encode(np.array([-7.0, -1.0, -1.0001, 1.0, 1.5, 300.0]))
    assert codes.tolist() == [0, 0, 0, 255, 255, 255]


def test_decode_of_encode_error_is_half_a_bin_in_the_companded_domain():
    x = np.linspace(-1, 1, 100001)
    mu = 255
    compand = lambda v: np.sign(v) * np.log1p(mu * np.abs(v)) / math.log1p(mu)
    error = np.abs(compand(mu_law_decode(mu_law_encode(x))) - compand(x))
    assert error.max() <= 1 / mu + 1e-9  # bins are 2/mu wide in the companded domain
    # so quiet samples are kept far more precisely than loud ones
    quiet = np.abs(x) < 0.01
    assert np.abs(mu_law_decode(mu_law_encode(x[quiet])) - x[quiet]).max() < 1e-3


def test_numpy_and_torch_agree():
    x = np.random.default_rng(0).uniform(-1.2, 1.2, 5000)
    assert np.array_equal(mu_law_encode(torch.from_numpy(x)).numpy(), mu_law_encode(x))
    codes = np.arange(256)
    assert np.allclose(mu_law_decode(torch.from_numpy(codes)).numpy(), mu_law_decode(codes), atol=1e-6)


@pytest.mark.parametrize(
    "subtype,rate,ext",
    [
        ("PCM_U8", 22050, "wav"),
        ("PCM_16", 44100, "wav"),
        ("PCM_24", 48000, "wav"),
        ("FLOAT", 16000, "wav"),
        ("PCM_24", 48000, "flac"),
    ],
)
def test_load_resamples_keeping_energy_and_pitch(tmp_path, subtype, rate, ext):
    path = str(tmp_path / f"tone.{ext}")
    sf.write(path, sine(rate), rate, subtype=subtype)
    x = load_audio(path, RATE)
    assert x.dtype == np.float32 and x.ndim == 1
    assert abs(len(x) - RATE) <= 1
    assert abs(peak_frequency(x, RATE) - 440) <= 2
    assert rms(x) == pytest.approx(0.5 / math.sqrt(2), rel=0.05)


def test_stereo_is_averaged_to_mono(tmp_path):
    path = str(tmp_path / "stereo.wav")
    sf.write(path, np.stack([sine(22050, amplitude=0.6), sine(22050, amplitude=0.2)], axis=1), 22050, subtype="PCM_16")
    x = load_audio(path, RATE)
    assert x.ndim == 1
    assert rms(x) == pytest.approx(0.4 / math.sqrt(2), rel=0.05)
    assert abs(peak_frequency(x, RATE) - 440) <= 2


def test_float_beyond_full_scale_is_clipped(tmp_path):
    path = str(tmp_path / "loud.wav")
    sf.write(path, 3 * sine(RATE), RATE, subtype="FLOAT")
    x = load_audio(path, RATE)
    assert x.max() == 1.0 and x.min() == -1.0


def test_broken_files_raise_audio_error_naming_the_file(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(str(good), sine(RATE), RATE, subtype="PCM_16")
    truncated = tmp_path / "truncated.wav"
    truncated.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    noise = tmp_path / "noise.wav"
    noise.write_bytes(np.random.default_rng(0).bytes(4000))
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.array([0.0, np.nan, 0.5]), RATE, subtype="FLOAT")
    for path in (truncated, noise, nan, tmp_path / "missing.wav"):
        with pytest.raises(AudioError, match=path.name) as e:
            load_audio(str(path), RATE)
        assert isinstance(e.value, UserError) and "\n" not in str(e.value)


def test_write_wav_is_16_bit_and_clips_instead_of_wrapping(tmp_path):
    path = str(tmp_path / "out.wav")
    x = np.concatenate([sine(RATE, 0.1), [2.0, -2.0]])
    write_wav(path, torch.from_numpy(x).float(), RATE)
    info = sf.info(path)
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_16", RATE, 1)
    pcm, _ = sf.read(path, dtype="int16")
    assert pcm[-2:].tolist() == [32767, -32767]
    assert np.abs(pcm[:-2] / 32767 - x[:-2]).max() <= 1 / 32767
