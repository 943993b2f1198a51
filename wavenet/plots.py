"""PNG plots of training curves and layer statistics (matplotlib, no display needed)."""

import math
import re

import matplotlib
import numpy as np

from .files import atomic_write

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

MIN_SPECTROGRAM = 16  # samples; a shorter signal gets its waveform and a note in place of the spectrogram


def save_png(fig, path, dpi):
    """Write `fig` to `path` as a PNG, atomically, and close it; a full disk gives files.WriteError."""
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)


def plot_losses(history, path):
    """Train and validation bits/dim against iteration, from the per-epoch records of log.json."""
    epochs = [r for r in history if "val_bits_per_dim" in r]
    if not epochs:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    its = [r["iteration"] for r in epochs]
    ax.plot(its, [r["train_bits_per_dim"] for r in epochs], "o-", label="train")
    ax.plot(its, [r["val_bits_per_dim"] for r in epochs], "o-", label="validation")
    ax.set_xlabel("iteration")
    ax.set_ylabel("bits/dim")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def plot_audio(samples, rate, path):
    """Waveform and spectrogram of one mono signal (floats in [-1, 1]) as a PNG."""
    fig, (wave, spec) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    t = [i / rate for i in range(len(samples))]
    wave.plot(t, samples, linewidth=0.5)
    wave.set_ylim(-1, 1)
    wave.set_ylabel("amplitude")
    if len(samples) >= MIN_SPECTROGRAM:
        nfft = min(256, 2 ** int(math.log2(len(samples))) // 2)  # at least two windows
        with np.errstate(divide="ignore"):  # digital silence has zero power: log10 gives -inf, drawn black
            spec.specgram(samples, NFFT=nfft, Fs=rate, noverlap=nfft * 3 // 4, cmap="magma")
        spec.set_ylabel("frequency (Hz)")
    else:
        spec.text(
            0.5, 0.5, f"{len(samples)} samples: too short for a spectrogram", ha="center", transform=spec.transAxes
        )
        spec.set_yticks([])
    spec.set_xlabel("time (s)")
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def recorded_parameters(history, which="data", pattern=""):
    """Names of the parameters that the last --stats record of log.json holds `which` statistics for.

    history: log.json records; which: "data" or "grad" (None for a parameter that got no gradient);
    pattern: a regular expression (text or compiled) that the names must contain. In model order.
    """
    records = [r for r in history if r.get("stats")]
    if not records:
        return []
    return [n for n, s in records[-1]["stats"].items() if s[which] and re.search(pattern, n)]


def plot_layer_stats(history, path, which="data", pattern=""):
    """The original's percentile plot: per parameter, its 7 sigma percentiles against iteration.

    history: log.json records with "stats" (from --stats); which: "data" or "grad";
    pattern: a regular expression that parameter names must contain. Returns the number of panels.
    """
    records = [r for r in history if r.get("stats")]
    names = recorded_parameters(history, which, pattern)
    if not names:
        return 0
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        its = [r["iteration"] for r in records if r["stats"].get(name, {}).get(which)]
        p = [r["stats"][name][which]["percentiles"] for r in records if r["stats"].get(name, {}).get(which)]
        band = list(zip(*p))  # 7 series: 0.13, 2.28, 15.87, 50, 84.13, 97.72, 99.87 percent
        for (lo, hi), alpha in zip(((0, 6), (1, 5), (2, 4)), (0.15, 0.3, 0.5)):
            ax.fill_between(its, band[lo], band[hi], color="C0", alpha=alpha, linewidth=0)
        ax.plot(its, band[3], color="C0", linewidth=1)
        ax.set_title(name, fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    fig.suptitle(
        f"{'weights and biases' if which == 'data' else 'gradients'}: median and 1/2/3-sigma "
        "percentile bands against iteration",
        fontsize=10,
    )
    fig.tight_layout()
    save_png(fig, path, dpi=80)
    return len(names)


def plot_log_mels(panels, hop_seconds, path):
    """Log-mel spectrograms stacked on one time axis and one colour scale, e.g. an original and its resyntheses.

    panels: [(title, frames (F, bands) natural-log mel energies)]; hop_seconds: time between frames.
    """
    low = min(float(np.min(frames)) for _, frames in panels)
    high = max(float(np.max(frames)) for _, frames in panels)
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 1.9 * len(panels)), sharex=True, squeeze=False)
    for ax, (title, frames) in zip(axes[:, 0], panels):
        extent = (0, len(frames) * hop_seconds, 0, frames.shape[1])
        image = ax.imshow(frames.T, origin="lower", aspect="auto", cmap="magma", vmin=low, vmax=high, extent=extent)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mel band")
    axes[-1, 0].set_xlabel("time (s)")
    fig.colorbar(image, ax=axes[:, 0].tolist(), label="ln mel energy", fraction=0.03)
    save_png(fig, path, dpi=100)
