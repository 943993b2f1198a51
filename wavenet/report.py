"""What a training run shows on the terminal: progress bars, and the per-epoch table (one row per epoch)."""

from tqdm import tqdm

HEADER = (
    f"{'epoch':>5} {'iteration':>9} {'train/nll':>10} {'val/nll':>10} {'train/bpd':>9} {'val/bpd':>9} {'elapsed':>8}"
)


def table_row(r):
    """One epoch record of log.json as a row under HEADER."""
    return (
        f"{r['epoch']:>5} {r['iteration']:>9} {r['train_nll']:>10.4f} {r['val_nll']:>10.4f} "
        f"{r['train_bits_per_dim']:>9.4f} {r['val_bits_per_dim']:>9.4f} {r['elapsed']:>7.1f}s"
    )


def progress(batches, group, desc, initial=0, total=None):
    """A tqdm bar over `batches` on the main process only, cleared when done so the table stays readable.

    mininterval: at most two refreshes a second, so a log file gets few lines of bar.
    """
    return tqdm(
        batches,
        desc=desc,
        initial=initial,
        total=total,
        leave=False,
        disable=not group.is_main,
        dynamic_ncols=True,
        mininterval=0.5,
    )
