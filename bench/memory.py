"""Peak memory (max RSS) of train.py run end to end on MNIST and CIFAR-10 with a small model: the 1 GB target.

    python bench/memory.py --data_dir ../shared/data    # MNIST from there; CIFAR-10 too, if it is there
    python bench/memory.py --data_dir ../shared/data --defaults   # also train.py's default architecture (slow)
    python bench/memory.py --quick                      # digits and a tiny synthetic CIFAR-10, seconds

Each row is train.py started as a user starts it, in a process of its own, and stopped with SIGTERM (it
writes a trainer snapshot and exits) once it has logged --iterations steps: loading both splits, the
training steps, log.json, loss.png and two snapshots are counted, validation is not (it comes at the
epoch's end; --iterations 0 runs the whole epoch, validation included). --defaults adds rows for
train.py's default architecture, stopped after --default_iterations steps (tens of seconds each on 2
cores). Where --data_dir holds no cifar-10-batches-py, bench/synthetic_cifar.py writes one in the
official format and size (random pixels) into a temporary folder. The two rows above the table are what
torch itself takes: importing it, and building an Adam optimizer, which imports torch._dynamo. See
bench/peak_rss.py for why a child's peak is measured the way it is.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile

from machine import cpu_model  # bench/machine.py, beside this script
from peak_rss import own_peak_bytes, run_child  # no torch here: this process's peak bounds the children's

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_GB = 1.0  # issue 12: peak RSS under 1 GB with a small model on MNIST and CIFAR-10
SMALL = ("-d", "16", "-n", "2", "--out_hidden_dim", "16", "--levels", "4")  # the small model
DEFAULTS = ()  # train.py's own: -d 128 -n 15 --out_hidden_dim 16 --levels 2
QUICK_PER_BATCH = 64  # images in each synthetic CIFAR-10 batch file with --quick
QUICK_ITERATIONS = 2  # training steps of each --quick run
TORCH_ONLY = {
    "import torch": "import torch",
    "import torch; build an Adam optimizer": "import torch; torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])",
}


def gb(n_bytes):
    return n_bytes / 2**30


class StopAfter:
    """while_running for run_child: SIGTERM to train.py once its log.json records `iterations` steps."""

    def __init__(self, out, iterations):
        self.log, self.iterations, self.sent = os.path.join(out, "log.json"), iterations, False

    def __call__(self, proc):
        if self.sent or not self.iterations or not os.path.exists(self.log):
            return
        try:
            with open(self.log) as f:
                done = json.load(f)[-1]["iteration"]
        except (OSError, ValueError, LookupError):  # written atomically; anything else: look again next time
            return
        if done >= self.iterations:
            proc.send_signal(signal.SIGTERM)
            self.sent = True


def train_peak(dataset, data_dir, model_flags, iterations, work):
    """(peak RSS in bytes, None) of one train.py run, or (None, why it failed and its output's last lines)."""
    out = tempfile.mkdtemp(prefix=f"{dataset}_", dir=work)
    every = [] if not iterations else ["--log_every", str(iterations), "--snapshot_every", str(iterations)]
    argv = [sys.executable, os.path.join(ROOT, "train.py"), "--dataset", dataset, "--data_dir", data_dir]
    argv += [*model_flags, "-e", "1", "-o", out, *every]
    stop = StopAfter(out, iterations)
    with open(os.path.join(work, f"{os.path.basename(out)}.log"), "w+") as log:
        status, peak = run_child(argv, log, while_running=stop)
        log.seek(0)
        output = log.read()
    # finished its one epoch, or stopped by us: the loop's Ctrl-C/SIGTERM error names the snapshot it wrote
    if status == 0 or (stop.sent and "error: interrupted at iteration" in output):
        return peak, None
    return None, f"train.py exited with status {status}:\n" + "\n".join(output.splitlines()[-5:])


def cifar_source(data_dir, quick, work):
    """(data dir, shown name) of the CIFAR-10 rows: --data_dir's, or a synthetic set written into `work`."""
    if not quick and os.path.isdir(os.path.join(data_dir, "cifar-10-batches-py")):
        return data_dir, "cifar"
    synthetic = os.path.join(work, "data")
    per_batch = ["--per_batch", str(QUICK_PER_BATCH)] if quick else []
    subprocess.run(  # in a child, so that this process never holds a batch
        [sys.executable, os.path.join(ROOT, "bench", "synthetic_cifar.py"), synthetic, *per_batch],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return synthetic, "cifar (synthetic)"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data_dir", default="data", help="train.py's --data_dir: MNIST/raw, maybe cifar-10-batches-py"
    )
    parser.add_argument("--iterations", type=int, default=100, help="training steps per run (0: one whole epoch)")
    parser.add_argument("--defaults", action="store_true", help="also train.py's default architecture (slow)")
    parser.add_argument(
        "--default_iterations", type=int, default=3, help="training steps of the default architecture's runs"
    )
    parser.add_argument("--quick", action="store_true", help="digits and a tiny synthetic CIFAR-10, for a smoke test")
    args = parser.parse_args()
    models = [("small", SMALL, QUICK_ITERATIONS if args.quick else args.iterations)]
    if args.defaults and not args.quick:
        models.append(("default", DEFAULTS, args.default_iterations))
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores{' (quick)' if args.quick else ''}")
    print(f"train.py, batch 16; small model: {' '.join(SMALL)}; default: train.py's own architecture")
    for name, code in TORCH_ONLY.items():
        _, peak = run_child([sys.executable, "-c", code], subprocess.DEVNULL)
        print(f"{name + ':':<40} {gb(peak):.2f} GB")
    failures = []
    with tempfile.TemporaryDirectory(prefix="bench_memory_") as work:
        cifar_dir, cifar_name = cifar_source(args.data_dir, args.quick, work)
        sets = [("digits" if args.quick else "mnist", args.data_dir), ("cifar", cifar_dir)]
        print(f"{'data set':<18} {'model':<8} {'iterations':>10} {'peak RSS':>9}  under {TARGET_GB:g} GB")
        for dataset, data_dir in sets:
            shown = cifar_name if dataset == "cifar" else dataset
            for model, flags, iterations in models:
                peak, failure = train_peak(dataset, data_dir, flags, iterations, work)
                steps = f"{iterations:,}" if iterations else "epoch"
                if failure:
                    failures.append(failure)
                    print(f"{shown:<18} {model:<8} {steps:>10} {'failed':>9}")
                else:
                    met = "yes" if gb(peak) < TARGET_GB else "no"
                    print(f"{shown:<18} {model:<8} {steps:>10} {gb(peak):>6.2f} GB  {met}")
    # every child's figure is at least this process's peak (see bench/peak_rss.py)
    print(f"this script's own peak: {gb(own_peak_bytes()):.2f} GB")
    for failure in failures:
        print(failure, file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
