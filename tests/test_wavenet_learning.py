"""WaveNet end to end on a tone: preprocess, train briefly, generate; the tone comes back."""

import os

import numpy as np
import soundfile as sf
from helpers import read_log

import infer_wavenet
import preprocess
import train_wavenet
from demo import TONE_HZ, write_tones
from demo import TONE_RATE as RATE

ARCH = ["--stacks_num", "1", "--layers_num", "5"]


def spectrum(samples, rate):
    """(frequencies, power) of a Hann-windowed signal."""
    power = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    return np.fft.rfftfreq(len(samples), 1 / rate), power


def test_wavenet_learns_a_tone(tmp_path):
    write_tones(str(tmp_path / "tones"), files=6, seconds=1.0)
    data, out, samples = (str(tmp_path / name) for name in ("data", "run", "samples"))
    preprocess.main(
        ["--data", str(tmp_path / "tones"), "--output", data, "--rate", str(RATE), *ARCH]
        + ["--target_length", "128", "--workers", "1"]
    )
    # 10 epochs at 5e-3 (390 steps): seeds 0-5 all pass, val_nll / first train_nll 0.44-0.46; the earlier
    # 40 epochs at 3e-3 took 3x as long and one of seeds 0-2 drew a sample off the tone
    sizes = ["--hidden_dim", "16", "--out_hidden_dim", "16", "-b", "8"]
    train_wavenet.main(["-d", data, *ARCH, *sizes, "-e", "10", "--learning_rate", "0.005", "-o", out])
    log = read_log(out)
    assert log[-1]["val_nll"] < 0.5 * log[0]["train_nll"]
    infer_wavenet.main(["-m", out, "-c", "2", "--length", "2000", "-o", samples, "--seed", "0"])
    for i in range(2):
        audio, rate = sf.read(os.path.join(samples, f"sample_{i}.wav"))
        assert rate == RATE and len(audio) == 2000
        assert np.sqrt(np.mean(audio**2)) > 0.1, "not silence"
        freqs, power = spectrum(audio, RATE)
        assert abs(freqs[power.argmax()] - TONE_HZ) < 20
        # a tone, not noise with a faint peak: most of the energy sits next to 500 Hz
        assert power[abs(freqs - TONE_HZ) < 20].sum() > 0.5 * power.sum()
