"""What a run shows on the terminal: progress bars (training, sampling, preprocessing), and the per-epoch table."""

import sys

from tqdm import tqdm

# Where stderr is not a terminal (a log file, a pipe), a bar cannot be redrawn in place: tqdm's carriage
# returns would pile hundreds of redraws into each line. There a bar writes a whole line at most this often,
# and a last one when it ends; a bar that ends sooner writes nothing.
LOG_INTERVAL = 10.0  # seconds
TERMINAL_INTERVAL = 0.5  # seconds between redraws on a terminal: at most two a second

HEADER = (
    f"{'epoch':>5} {'iteration':>9} {'train/nll':>10} {'val/nll':>10} {'train/bpd':>9} {'val/bpd':>9} {'elapsed':>8}"
    "  model snapshot"
)


def table_row(r):
    """One epoch record of log.json as a row under HEADER; the last column names the model snapshot the epoch
    wrote (blank where validation did not improve)."""
    return (
        f"{r['epoch']:>5} {r['iteration']:>9} {r['train_nll']:>10.4f} {r['val_nll']:>10.4f} "
        f"{r['train_bits_per_dim']:>9.4f} {r['val_bits_per_dim']:>9.4f} {r['elapsed']:>7.1f}s"
        f"  {r.get('model_snapshot') or ''}"
    ).rstrip()


class _Lines:
    """The file a bar writes to where stderr is no terminal: each redraw becomes one line of its own."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        line = text.replace("\r", "").rstrip()  # tqdm writes "\r" + bar (+ blanks), and "\n" or "\r" to end
        if line:
            self.stream.write(line + "\n")

    def flush(self):
        self.stream.flush()


def _is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def bar(iterable=None, desc=None, total=None, unit="it", initial=0, disable=False):
    """The project's progress bar (a tqdm) over `iterable`, or updated by hand with total=, on stderr.

    On a terminal it is redrawn in place at most twice a second and cleared when done, so the lines
    printed around it stay readable. Elsewhere (stderr to a log file or a pipe) it writes one whole
    line at most every LOG_INTERVAL seconds, and its last state when it ends.
    """
    stream = sys.stderr
    common = dict(desc=desc, total=total, unit=unit, initial=initial, disable=disable)
    if _is_terminal(stream):
        return tqdm(iterable, leave=False, dynamic_ncols=True, mininterval=TERMINAL_INTERVAL, **common)
    return tqdm(iterable, file=_Lines(stream), leave=True, mininterval=LOG_INTERVAL, delay=LOG_INTERVAL, **common)


def progress(batches, group, desc, initial=0, total=None):
    """A bar over a training or validation pass's `batches`, on the main process only (see `bar`)."""
    return bar(batches, desc=desc, initial=initial, total=total, disable=not group.is_main)
