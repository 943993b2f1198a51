"""What several test files share: the repository's path, tiny model flags, tone files, the one-line-error check,
and loading a bench/ script as a module.

Imports nothing that loads torch: tests/conftest.py imports this module before it has pinned the thread count.
"""

import importlib.util
import json
import os

import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository: scripts run from here
SHARED_DATA = os.path.join(ROOT, "..", "shared", "data")


def load_bench_script(name):
    """bench/<name>.py imported as a module (bench/ is no package), so tests can call its functions."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(ROOT, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# A Gated PixelCNN that trains an epoch of the 8x8 digits in about a second; each test adds its -b, -e and -o.
TINY_PIXELCNN = ["--dataset", "digits", "-d", "8", "-n", "1", "--out_hidden_dim", "8", "--levels", "4"]

# A WaveNet of one stack of 4 layers on 8 kHz audio, cut into windows of receptive field + TARGET samples;
# each test adds its -b, -e, -d and -o.
RATE, STACKS, LAYERS, TARGET = 8000, 1, 4, 64
TINY_WAVENET = ["--stacks_num", str(STACKS), "--layers_num", str(LAYERS), "--hidden_dim", "8", "--out_hidden_dim", "8"]
# preprocess.py's flags that cut audio for TINY_WAVENET; each test adds its --data, --output and --workers
TINY_CHUNKS = [
    "--rate",
    str(RATE),
    "--stacks_num",
    str(STACKS),
    "--layers_num",
    str(LAYERS),
    "--target_length",
    str(TARGET),
]

# (subtype, rate, channels): the kinds of file preprocess.py must accept
TONE_FORMATS = [
    ("PCM_U8", 22050, 1),
    ("PCM_16", 44100, 1),
    ("PCM_24", 48000, 1),
    ("FLOAT", 16000, 2),
    ("PCM_16", 8000, 1),
]


def write_tone(path, seconds, rate, freq=300.0, subtype="PCM_16", channels=1):
    """Write a `freq` Hz sine of amplitude 0.3, `seconds` long at `rate` Hz, to `path` (a pathlib.Path; its
    folders are made). channels > 1: the same sine on every channel."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = 0.3 * np.sin(2 * np.pi * freq * np.arange(int(seconds * rate)) / rate)
    sf.write(str(path), np.stack([x] * channels, axis=1) if channels > 1 else x, rate, subtype=subtype)


def two_speaker_corpus(tmp):
    """Four tones from two speakers (p225, p226) in tmp/wav, preprocessed for TINY_WAVENET into tmp/data -> its path."""
    from wavenet import preprocessing, receptive_field  # here: this module loads no torch at import

    for i in range(4):
        write_tone(tmp / "wav" / f"p{225 + i % 2}" / f"{i}.wav", 0.5, RATE, 200 + 70 * i)
    field = receptive_field(STACKS, LAYERS)
    preprocessing.preprocess(str(tmp / "wav"), str(tmp / "data"), RATE, field + TARGET, receptive_field=field)
    return str(tmp / "data")


def assert_one_line_error(status, stderr, fragment, prefix="error: ", expected_status=2):
    """What a script prints for a user's mistake: exit status 2, no traceback, and the last line of `stderr` is
    its only line that holds `prefix` (argparse's `script.py: error: ...` counts) and holds `fragment`."""
    assert status == expected_status, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]  # tqdm redraws with \r
    assert [line for line in lines if prefix in line] == [lines[-1]], stderr
    assert fragment in lines[-1], lines[-1]


def read_log(out):
    """The records of a training run's log.json in its --out folder `out` (one per epoch, oldest first)."""
    with open(os.path.join(out, "log.json")) as f:
        return json.load(f)


def run_main(script, argv, monkeypatch=None):
    """Run SCRIPT.py's main(argv) in this process under cli.run, as `python SCRIPT.py` does; its exit status.

    With monkeypatch, sys.argv names the script, so that argparse's messages name it as they would.
    """
    import importlib
    import sys

    from wavenet import cli  # here, not at the top: conftest imports this module before torch loads

    module = importlib.import_module(script.removesuffix(".py"))
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "argv", [script])
    try:
        cli.run(lambda: module.main(argv))
    except SystemExit as e:
        return e.code
    return 0
