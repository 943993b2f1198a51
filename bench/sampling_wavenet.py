"""Benchmark WaveNet sampling: the original's full recomputation against the cached torch and numba paths.

    python bench/sampling_wavenet.py           # the default WaveNet: 5 stacks x 10 layers, 32 channels, 256 levels
    python bench/sampling_wavenet.py --quick   # a small model, seconds

Rates are samples per second once the caches are built (building them is one
forward pass over the prime). The naive loop's cost grows with the output, since
every sample is a forward pass over everything so far: it runs --naive_steps
samples at the start and at the end of a --length output, and its rate over the
whole output is extrapolated linearly between the two. "per CPU-s" divides by
the CPU time of the process instead of the wall time: the two differ when other
jobs share the machine. A randomly initialised model costs as much as a trained one.
"""

import argparse
import os
import sys
import time

import numba
import torch
from machine import cpu_model  # bench/machine.py, beside this script

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wavenet.models import WaveNet  # noqa: E402
from wavenet.wavenet_sampling import SESSIONS  # noqa: E402

TARGET_ONE_STREAM = 16_000  # samples/s of one stream on one core (numba)
TARGET_STREAMS = 50_000  # samples/s in all for --streams streams on --numba_threads cores


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="A small model and short runs, for a smoke test")
    parser.add_argument("--hidden_dim", type=int, default=32, help="Residual channels")
    parser.add_argument("--out_hidden_dim", type=int, default=32, help="Skip channels, the width of the head")
    parser.add_argument("--stacks_num", "-s", type=int, default=5, help="Number of stacks")
    parser.add_argument("--layers_num", "-l", type=int, default=10, help="Number of layers per stack")
    parser.add_argument("--levels", type=int, default=256, help="Mu-law levels")
    parser.add_argument("--length", type=int, default=16_000, help="Output length the naive rate is averaged over")
    parser.add_argument("--naive_steps", type=int, default=3, help="Samples timed at each end of the naive run")
    parser.add_argument("--torch_steps", type=int, default=200, help="Samples timed on the torch path")
    parser.add_argument("--numba_steps", type=int, default=32_000, help="Samples per stream timed with numba")
    parser.add_argument("--streams", type=int, default=10, help="Streams of the multi-threaded numba run")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of the naive and torch runs (1: a per-core comparison)"
    )
    parser.add_argument("--numba_threads", type=int, default=2, help="numba threads of the multi-stream run")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights and the draws")
    args = parser.parse_args()
    if args.quick:
        args.hidden_dim, args.out_hidden_dim, args.stacks_num, args.layers_num = 16, 16, 2, 5
        args.length, args.naive_steps, args.torch_steps, args.numba_steps = 1000, 2, 20, 2000
    return args


def timed(model, method, prime, steps, seed):
    """Open a session on prime (B, P) and time `steps` samples -> (codes (B, steps), wall s, CPU s)."""
    session = SESSIONS[method](model, prime, None)
    generator = torch.Generator().manual_seed(seed)
    wall, cpu = time.perf_counter(), time.process_time()
    codes = session.sample(steps, 1.0, generator)
    return codes, time.perf_counter() - wall, time.process_time() - cpu


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = WaveNet(args.levels, args.hidden_dim, args.out_hidden_dim, args.stacks_num, args.layers_num).eval()
    nothing = torch.empty(1, 0, dtype=torch.long)
    load_before = os.getloadavg()[0]
    rows = []
    with torch.no_grad():
        numba.set_num_threads(1)
        start = time.perf_counter()
        timed(model, "numba", nothing, 2, args.seed)
        compile_s = time.perf_counter() - start

        # the naive cost per sample grows linearly with the output: average its two ends
        first, wall0, cpu0 = timed(model, "naive", nothing, args.naive_steps, args.seed)
        late = torch.randint(0, args.levels, (1, args.length - args.naive_steps))
        _, wall1, cpu1 = timed(model, "naive", late, args.naive_steps, args.seed)
        naive_rate = 2 * args.naive_steps / (wall0 + wall1)
        rows.append(
            ("naive (original), extrapolated", 1, args.threads, naive_rate, 2 * args.naive_steps / (cpu0 + cpu1))
        )

        cached, wall, cpu = timed(model, "torch", nothing, args.torch_steps, args.seed)
        rows.append(("torch incremental", 1, args.threads, args.torch_steps / wall, args.torch_steps / cpu))

        compiled, wall, cpu = timed(model, "numba", nothing, args.numba_steps, args.seed)
        rows.append(("numba", 1, 1, args.numba_steps / wall, args.numba_steps / cpu))

        numba.set_num_threads(args.numba_threads)
        streams = nothing.expand(args.streams, -1)
        _, wall, cpu = timed(model, "numba", streams, args.numba_steps // 2, args.seed)
        samples = args.streams * (args.numba_steps // 2)
        rows.append(("numba", args.streams, args.numba_threads, samples / wall, samples / cpu))

    n = args.naive_steps
    same = torch.equal(first, cached[:, :n]) and torch.equal(cached, compiled[:, : args.torch_steps])
    print(
        f"model: WaveNet(levels={args.levels}, hidden_dim={args.hidden_dim}, out_hidden_dim={args.out_hidden_dim}, "
        f"stacks_num={args.stacks_num}, layers_num={args.layers_num}, kernel_width=2), "
        f"receptive field {model.receptive_field}"
    )
    print(
        f"cpu: {cpu_model()}, {os.cpu_count()} cores; torch {torch.__version__} ({args.threads} threads); "
        f"numba {numba.__version__}; load average before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}"
    )
    print(f"numba first call (compile or cache load): {compile_s:.1f} s")
    print(f"{'method':<31} {'streams':>7} {'threads':>7} {'samples/s':>10} {'per CPU-s':>10} {'vs naive':>9}")
    for name, count, threads, rate, cpu_rate in rows:
        print(f"{name:<31} {count:>7} {threads:>7} {rate:>10.1f} {cpu_rate:>10.1f} {rate / naive_rate:>8.0f}x")
    print(f"same draws on every path (naive: first {n}, torch: first {args.torch_steps} samples): {same}")
    if not args.quick:
        ok = rows[2][3] >= TARGET_ONE_STREAM and rows[3][3] >= TARGET_STREAMS
        print(
            f"target (numba >= {TARGET_ONE_STREAM} samples/s for 1 stream on 1 thread, >= {TARGET_STREAMS} "
            f"for {args.streams} streams on {args.numba_threads}): {'met' if ok else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
