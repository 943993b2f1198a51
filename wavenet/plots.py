"""PNG plots of training curves and layer statistics (matplotlib, no display needed)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_audio(samples, rate, path):
    """Waveform and spectrogram of one mono signal (floats in [-1, 1]) as a PNG."""
    fig, (wave, spec) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    t = [i / rate for i in range(len(samples))]
    wave.plot(t, samples, linewidth=0.5)
    wave.set_ylim(-1, 1)
    wave.set_ylabel("amplitude")
    spec.specgram(samples, NFFT=256, Fs=rate, noverlap=192, cmap="magma")
    spec.set_xlabel("time (s)")
    spec.set_ylabel("frequency (Hz)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
