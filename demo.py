"""The README's demo: both models end to end on data that needs no download, in a few minutes on a CPU.

Gated PixelCNN trains on scikit-learn's 8x8 digits and samples a grid, then the shipped MNIST
model (trained beforehand, in assets/models/) samples one too; WaveNet learns a 500 Hz tone written
here, and generates it back. Every step runs the
project's own scripts exactly as a user would, and prints the command first.
Each demo starts afresh: it first removes what an earlier demo wrote into --out.
"""

import argparse
import os
import shutil
import subprocess
import sys

import numpy as np

from wavenet import cli
from wavenet.audio import write_wav

TONE_HZ = 500
TONE_RATE = 8000
# a model trained on real MNIST beforehand (README, "Shipped models"): what about 80 minutes of training buy
SHIPPED_MNIST = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets", "models", "mnist_levels2.pt")


def run(*args):
    """Run one of the project's scripts with this Python, echoing the command.

    A failing script has printed its own `error: ...` line: the demo adds one line saying it stopped
    there and exits with the script's status. On Ctrl-C, which reaches the script too, it waits for the
    script to stop on its own (a trainer snapshots first) and lets KeyboardInterrupt end the demo.
    """
    command = [sys.executable, *map(str, args)]
    print("\n$ " + " ".join(command[1:]), flush=True)
    child = subprocess.Popen(command)
    try:
        status = child.wait()
    except KeyboardInterrupt:
        child.wait()  # a second Ctrl-C interrupts this wait too and leaves the script to finish alone
        raise
    if status < 0:  # killed by a signal: report it and exit as a shell would, 128 + the signal number
        print(f"demo stopped: {args[0]} was killed by signal {-status}", file=sys.stderr)
        sys.exit(128 - status)
    if status:
        print(f"demo stopped: {args[0]} failed (exit {status})", file=sys.stderr)
        sys.exit(status)


def write_tones(folder, files=4, seconds=2.0, hz=TONE_HZ):
    """Recordings of one speaker: an `hz` sine at a random phase, with a little noise.

    Its loudness swells and fades between 0.4 and 0.8 once a second, so every recording covers
    the same loudnesses and a held-out one tests what the model learnt, not what it memorised.
    """
    speaker = os.path.join(folder, "tone")
    os.makedirs(speaker, exist_ok=True)
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * TONE_RATE)) / TONE_RATE
    for i in range(files):
        loudness = 0.6 + 0.2 * np.sin(2 * np.pi * t + rng.uniform(0, 2 * np.pi))
        wave = loudness * np.sin(2 * np.pi * hz * t + rng.uniform(0, 2 * np.pi))
        write_wav(os.path.join(speaker, f"tone_{i:03d}.wav"), wave + 0.02 * rng.standard_normal(len(t)), TONE_RATE)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter)
    parser.add_argument("--out", default="demo", help="Folder for everything the demo writes")
    out = parser.parse_args().out
    names = (
        "pixelcnn",
        "pixelcnn_samples.png",
        "shipped_mnist_samples.png",
        "tones",
        "tones_data",
        "wavenet",
        "wavenet_samples",
    )
    paths = [os.path.join(out, name) for name in names]
    pixelcnn, grid, shipped_grid, tones, data, wavenet, audio = paths
    # the trainers refuse an --out folder that holds a run, so that two runs never mix
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)

    run(
        "train.py",
        "--dataset",
        "digits",
        "--levels",
        "4",
        "-d",
        "32",
        "-n",
        "4",
        "--out_hidden_dim",
        "32",
        "-b",
        "32",
        "-e",
        "20",
        "-o",
        pixelcnn,
    )
    run("infer.py", "-m", pixelcnn, "-c", "10", "-o", grid)
    run("infer.py", "-m", SHIPPED_MNIST, "-c", "10", "--seed", "0", "-o", shipped_grid)

    write_tones(tones)
    arch = ["--stacks_num", "1", "--layers_num", "6"]
    run(
        "preprocess.py",
        "--data",
        tones,
        "--output",
        data,
        "--rate",
        TONE_RATE,
        *arch,
        "--target_length",
        "256",
        "--workers",
        "2",
    )
    run(
        "train_wavenet.py",
        "-d",
        data,
        *arch,
        "--hidden_dim",
        "16",
        "--out_hidden_dim",
        "16",
        "-b",
        "8",
        "-e",
        "40",
        "--learning_rate",
        "0.003",
        "-o",
        wavenet,
    )
    run("infer_wavenet.py", "-m", wavenet, "-c", "2", "--length", TONE_RATE, "-o", audio, "--plot")

    print(
        f"\nGated PixelCNN samples (row r: label r): {grid} from the 8x8 digits model trained just now, "
        f"{shipped_grid} from the shipped MNIST model {os.path.relpath(SHIPPED_MNIST)}\n"
        f"WaveNet samples ({TONE_HZ} Hz tone): {audio}/sample_0.wav, sample_1.wav (with PNG plots)\n"
        f"Training logs and curves: {pixelcnn}/, {wavenet}/"
    )


if __name__ == "__main__":
    cli.run(main)
