"""Each command-line script run as a user would: a subprocess with tiny sizes on a tiny fixture."""

import os
import subprocess
import sys

import numpy as np
from helpers import ROOT, TINY_PIXELCNN
from PIL import Image

TINY_RUN = [*TINY_PIXELCNN, "-b", "128", "-e", "1"]


def script(name, *args):
    """Run a top-level script; returns the CompletedProcess (stdout and stderr as text)."""
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, name), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def test_train_then_infer_pixelcnn(tmp_path):
    out = tmp_path / "run"
    table = script("train.py", *TINY_RUN, "-o", out).stdout
    assert "val/bpd" in table.splitlines()[0] and len(table.splitlines()) == 2
    grid = tmp_path / "grid.png"
    printed = script("infer.py", "-m", out, "-c", "3", "--label", "7", "-o", grid, "--seed", "1").stdout
    assert str(grid) in printed
    image = Image.open(grid)
    assert image.format == "PNG"
    # 3 tiles of 8x8 digits enlarged 4x to 32x32, with 2-pixel borders
    assert image.size == (3 * 32 + 4 * 2, 3 * 32 + 4 * 2)
    again = tmp_path / "again.png"
    script("infer.py", "-m", out, "-c", "3", "--label", "7", "-o", again, "--seed", "1")
    assert np.array_equal(np.asarray(Image.open(again)), np.asarray(image)), "a seed fixes the samples"


def test_infer_writes_the_format_its_name_asks_for_at_any_size(tmp_path):
    out = tmp_path / "run"
    script("train.py", *TINY_RUN, "-o", out)
    jpg = tmp_path / "grid.jpg"
    script("infer.py", "-m", out, "-c", "2", "--height", "5", "--width", "9", "-o", jpg)
    image = Image.open(jpg)
    assert image.format == "JPEG"
    assert image.size == (2 * 9 * 3 + 3 * 2, 2 * 5 * 3 + 3 * 2)  # enlarged 32 // 9 = 3 times
