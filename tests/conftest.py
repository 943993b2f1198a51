import os
import sys

# One thread per process: tests start subprocesses (torchrun ranks, scripts) beside the pytest
# process, and OpenMP threads that wait for a descheduled sibling make tiny models ~100x slower on
# a 2-core machine. Set before torch is imported, so subprocesses inherit it too.
os.environ["OMP_NUM_THREADS"] = "1"

import pytest  # noqa: E402
from helpers import (  # noqa: E402
    LAYERS,
    RATE,
    ROOT,
    STACKS,
    TARGET,
    TINY_PIXELCNN,
    TINY_WAVENET,
    TONE_FORMATS,
    write_tone,
)

sys.path.insert(0, ROOT)


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: longer than a CI run allows; run with -m slow")
    # tests/test_cuda.py's CUDA cases, which skip without a GPU; `make gpu-check` runs them
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one); run with -m cuda")


def pytest_collection_modifyitems(config, items):
    if config.getoption("-m"):
        return
    skip = pytest.mark.skip(reason="slow: run with `pytest -m slow`")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def world(tmp_path_factory):
    """Trained once for the whole run: a tiny Gated PixelCNN and a tiny speaker-conditioned WaveNet, the audio
    and corpus it learnt from, and a regular file. {name: path}:

    tmp: the folder that holds them all; tones: one recording of each of TONE_FORMATS, from speakers p225 and
    p226; data: tones preprocessed at RATE for TINY_WAVENET; pix, wn: the runs' --out folders (-e 1; the
    Gated PixelCNN at -b 64: 23 iterations an epoch); pix_model, wn_model: their newest model snapshots;
    file: a regular file. Tests read these and write elsewhere.
    """
    import train
    import train_wavenet
    from wavenet import files, preprocessing, receptive_field

    tmp = tmp_path_factory.mktemp("world")
    for i, (subtype, rate, channels) in enumerate(TONE_FORMATS):
        write_tone(tmp / "tones" / f"p{225 + i % 2}" / f"t{i}.wav", 0.3, rate, 200 + 50 * i, subtype, channels)
    field = receptive_field(STACKS, LAYERS)
    preprocessing.preprocess(str(tmp / "tones"), str(tmp / "data"), RATE, field + TARGET, receptive_field=field)
    train.main(TINY_PIXELCNN + ["-b", "64", "-e", "1", "-o", str(tmp / "pix")])
    train_wavenet.main(TINY_WAVENET + ["-b", "16", "-e", "1", "-d", str(tmp / "data"), "-o", str(tmp / "wn")])
    (tmp / "file").write_text("a regular file: nothing can be created under it")
    paths = {name: str(tmp / name) for name in ("tones", "data", "pix", "wn", "file")}
    paths.update(
        tmp=str(tmp), pix_model=files.newest(paths["pix"], "pixelcnn_"), wn_model=files.newest(paths["wn"], "wavenet_")
    )
    return paths
