"""Benchmark Gated PixelCNN sampling: the cached path against the original's naive loop.

    python bench/sampling_pixelcnn.py           # infer.py's defaults: 100 images of 28x28x3
    python bench/sampling_pixelcnn.py --quick   # a tiny model, seconds

The naive loop runs one full forward pass per sub-pixel; at full size that is
hours, so it runs for --naive_steps sub-pixels of the full-size grid and its
total is extrapolated (every pass costs the same). Both runs use the same seed,
and the sub-pixels they both drew are compared. A randomly initialised model
costs as much as a trained one.
"""

import argparse
import os
import resource
import sys
import time

import torch
from machine import cpu_model  # bench/machine.py, beside this script

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wavenet.models import GatedPixelCNN  # noqa: E402
from wavenet.pixelcnn_sampling import sample_images  # noqa: E402

TARGET_SECONDS = 120  # the budget for infer.py's defaults on 2 CPU cores
TARGET_SPEEDUP = 100  # cached must beat naive by at least this factor
TARGET_MEMORY_MB = 2048


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Tiny model and images; the naive loop runs to the end instead of extrapolating",
    )
    parser.add_argument("--hidden_dim", "-d", type=int, default=128, help="Number of hidden dimensions")
    parser.add_argument("--out_hidden_dim", type=int, default=16, help="Hidden dimensions of the output head")
    parser.add_argument("--blocks_num", "-n", type=int, default=15, help="Number of blocks after the first")
    parser.add_argument("--levels", type=int, default=256, help="Quantisation levels per sub-pixel")
    parser.add_argument("--count", "-c", type=int, default=10, help="Images per side: count**2 images")
    parser.add_argument("--height", type=int, default=28, help="Image height")
    parser.add_argument("--width", type=int, default=28, help="Image width")
    parser.add_argument("--channels", type=int, default=3, help="Colour channels")
    parser.add_argument("--num_classes", type=int, default=10, help="Class labels (0: unconditional)")
    parser.add_argument(
        "--naive_steps", type=int, default=3, help="Sub-pixels the naive loop draws before its total is extrapolated"
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the weights and the draws")
    args = parser.parse_args()
    if args.quick:
        args.hidden_dim, args.out_hidden_dim, args.blocks_num, args.levels = 16, 8, 2, 16
        args.count, args.height, args.width = 2, 8, 8
        args.naive_steps = args.channels * args.height * args.width
    return args


def peak_memory_mb():
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed_sampling(model, images, args, label, method, stop_after=None):
    """(samples, wall seconds, process CPU seconds) for one sample_images call, seeded with args.seed.

    CPU seconds count every thread; next to wall seconds they show when other
    processes were competing for the cores.
    """
    generator = torch.Generator().manual_seed(args.seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    samples = sample_images(
        model, images, args.height, args.width, label, generator, method=method, progress=False, stop_after=stop_after
    )
    return samples, time.perf_counter() - start, time.process_time() - cpu_start


def raster(samples):
    """(N, C, H, W) -> (N, H*W*C) in generation order."""
    return samples.permute(0, 2, 3, 1).reshape(samples.shape[0], -1)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = GatedPixelCNN(
        args.channels, args.hidden_dim, args.blocks_num, args.out_hidden_dim, args.levels, args.num_classes
    )
    images = args.count**2
    label = torch.arange(images) % args.num_classes if args.num_classes else None
    subpixels = images * args.channels * args.height * args.width
    steps = args.channels * args.height * args.width  # sub-pixels per image = naive forward passes
    naive_steps = min(args.naive_steps, steps)
    load_before = os.getloadavg()[0]

    cached, cached_s, cached_cpu = timed_sampling(model, images, args, label, "cached")
    cached_mb = peak_memory_mb()
    naive, naive_part_s, naive_part_cpu = timed_sampling(model, images, args, label, "naive", stop_after=naive_steps)
    naive_s = naive_part_s / naive_steps * steps
    naive_cpu = naive_part_cpu / naive_steps * steps
    naive_mb = peak_memory_mb()
    same = torch.equal(raster(cached)[:, :naive_steps], raster(naive)[:, :naive_steps])

    print(
        f"model: GatedPixelCNN(in_channels={args.channels}, hidden_dim={args.hidden_dim}, "
        f"blocks_num={args.blocks_num}, out_hidden_dim={args.out_hidden_dim}, levels={args.levels}, "
        f"num_classes={args.num_classes}); {images} images of {args.height}x{args.width}x{args.channels}"
    )
    print(
        f"cpu: {cpu_model()}; torch threads: {torch.get_num_threads()}; torch {torch.__version__}; "
        f"load average before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}"
    )
    naive_note = "measured" if naive_steps == steps else f"extrapolated from {naive_steps} of {steps} sub-pixels"
    print(
        f"{'method':<8} {'images':>6} {'seconds':>10} {'CPU s':>10} {'sub-pixels/s':>13} {'vs naive':>9} "
        f"{'peak MB':>8}  note"
    )
    print(
        f"{'naive':<8} {images:>6} {naive_s:>10.1f} {naive_cpu:>10.1f} {subpixels / naive_s:>13.1f} "
        f"{1:>8.0f}x {naive_mb:>8.0f}  {naive_note}"
    )
    print(
        f"{'cached':<8} {images:>6} {cached_s:>10.1f} {cached_cpu:>10.1f} {subpixels / cached_s:>13.1f} "
        f"{naive_s / cached_s:>8.0f}x {cached_mb:>8.0f}  measured (peak before the naive run)"
    )
    print(f"same draws on both paths for the first {naive_steps} sub-pixels of every image: {same}")
    if not args.quick:
        ok = cached_s < TARGET_SECONDS and naive_s / cached_s >= TARGET_SPEEDUP and cached_mb < TARGET_MEMORY_MB
        print(
            f"target (< {TARGET_SECONDS} s, >= {TARGET_SPEEDUP}x naive, < {TARGET_MEMORY_MB} MB): "
            f"{'met' if ok else 'NOT met'}"
        )


if __name__ == "__main__":
    main()
