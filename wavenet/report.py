"""The per-epoch table a training run prints: one header, then one row per epoch record."""

HEADER = (
    f"{'epoch':>5} {'iteration':>9} {'train/nll':>10} {'val/nll':>10} {'train/bpd':>9} {'val/bpd':>9} {'elapsed':>8}"
)


def table_row(r):
    """One epoch record of log.json as a row under HEADER."""
    return (
        f"{r['epoch']:>5} {r['iteration']:>9} {r['train_nll']:>10.4f} {r['val_nll']:>10.4f} "
        f"{r['train_bits_per_dim']:>9.4f} {r['val_bits_per_dim']:>9.4f} {r['elapsed']:>7.1f}s"
    )
