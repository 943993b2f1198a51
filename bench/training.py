"""Training throughput of both models against the original's naive algorithm, measured in the same run.

    python bench/training.py            # default architectures (a few minutes on 2 cores)
    python bench/training.py --quick    # tiny sizes, seconds (keeps the script working in CI)

Each method runs in its own process, and its peak memory (peak RSS) is that process's own: VmHWM,
not ru_maxrss, which in a spawned child starts at this process's peak (see bench/peak_rss.py).
The roofline columns count the FLOPs of one step (torch's FlopCounterMode: convolutions and matrix
products, forward and backward) and divide the machine's matrix-multiply peak, measured in the same
run for fp32 and for bf16, by them: no implementation of that step can run faster than this bound.
Naive PixelCNN = the original's layout: full k x k masked convolutions in both stacks (the
masks multiply zeros), the vertical stack shifted in every block. Naive WaveNet = the original's
training pass: a one-hot float input and every output position computed, then masked.
"""

import argparse
import multiprocessing as mp
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from machine import cpu_model  # bench/machine.py, beside this script
from peak_rss import own_peak_bytes
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from wavenet import GatedPixelCNN, WaveNet  # noqa: E402
from wavenet.layers import center_tap_mask, channel_groups, gated_activation  # noqa: E402


class MaskedConv2d(nn.Conv2d):
    """The original's masked k x k convolution: every tap below/right of the centre is a multiplied zero."""

    def __init__(self, cin, cout, k, mask_type, groups, vertical, gated_out=False):
        super().__init__(cin, cout, k, padding=k // 2)
        mask = torch.ones_like(self.weight)
        mask[:, :, k // 2 + 1 :] = 0  # rows below
        if not vertical:
            mask[:, :, : k // 2] = 0  # a horizontal stack sees only its own row
            mask[:, :, k // 2, k // 2 + 1 :] = 0
            mask[:, :, k // 2, k // 2] = center_tap_mask(
                channel_groups(cout, groups, gated=gated_out), channel_groups(cin, groups), mask_type
            )
        self.register_buffer("mask", mask)

    def forward(self, x):
        return F.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)


class NaivePixelCNN(nn.Module):
    """The original's Gated PixelCNN computation: full masked kernels, vertical shift in every block."""

    def __init__(self, C, hidden, blocks, out_hidden, levels, num_classes=10):
        super().__init__()
        self.C, self.levels = C, levels
        self.v = nn.ModuleList()
        self.h = nn.ModuleList()
        self.link = nn.ModuleList()
        self.out = nn.ModuleList()
        self.emb = nn.ModuleList()
        for b in range(blocks + 1):
            cin, k, m = (C, 7, "A") if b == 0 else (hidden, 3, "B")
            self.v.append(MaskedConv2d(cin, 2 * hidden, k, m, C, vertical=True))
            self.h.append(MaskedConv2d(cin, 2 * hidden, k, m, C, vertical=False, gated_out=True))
            self.link.append(nn.Conv2d(2 * hidden, 2 * hidden, 1))
            self.out.append(MaskedConv2d(hidden, hidden, 1, "B", C, vertical=False))
            self.emb.append(nn.Embedding(num_classes, 4 * hidden))
        self.head1 = nn.Conv2d(hidden, out_hidden, 1)
        self.head2 = nn.Conv2d(out_hidden, levels * C, 1)

    def forward(self, x, label):
        B, C, H, W = x.shape
        v = h = 2 * x - 1
        for i in range(len(self.v)):
            cv, ch = self.emb[i](label)[:, :, None, None].chunk(2, dim=1)
            vp = F.pad(self.v[i](v), (0, 0, 1, 0))[:, :, :-1]  # shifted down in every block
            hp = self.h[i](h) + self.link[i](vp)
            v = gated_activation(vp, cv)
            hn = self.out[i](gated_activation(hp, ch))
            h = hn if i == 0 else h + hn
        return self.head2(F.relu(self.head1(F.relu(h)))).view(B, self.levels, C, H, W)


def pixelcnn_step(naive, size, amp):
    hidden, blocks, levels, batch, hw = size
    torch.manual_seed(0)
    cls = NaivePixelCNN if naive else GatedPixelCNN
    model = cls(3, hidden, blocks, 16, levels)
    q = torch.randint(0, levels, (batch, 3, hw, hw))
    label = torch.randint(0, 10, (batch,))
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            logits = model(q.float() / (levels - 1), label)
        loss = F.cross_entropy(logits.float(), q)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step, batch


def wavenet_step(naive, size, amp):
    hidden, stacks, layers, batch, scored = size
    torch.manual_seed(0)
    model = WaveNet(256, hidden, hidden, stacks, layers)
    codes = torch.randint(0, 256, (batch, model.receptive_field + scored))
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            if naive:  # the original: one-hot floats in, all positions out, the first R masked away
                logits = model(F.one_hot(codes, 256).permute(0, 2, 1).float())[..., -scored:]
            else:
                logits = model(codes, output_length=scored)
        loss = F.cross_entropy(logits.float(), codes[:, -scored:])
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step, batch * scored


def measure(kind, naive, amp, size, seconds, threads, queue):
    torch.set_num_threads(threads)
    step, items = (pixelcnn_step if kind == "pixelcnn" else wavenet_step)(naive, size, amp)
    step()  # warm-up
    with FlopCounterMode(display=False) as counter:
        step()
    flops = counter.get_total_flops() / items
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    rate = items * steps / (time.perf_counter() - start)
    queue.put((rate, own_peak_bytes() / 2**30, flops))


def matmul_peak(dtype, seconds, m=4096, k=1024, n=1024):
    """FLOP/s of a large square-ish (m, k) x (k, n) matrix product in `dtype` on this process's threads."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b  # warm-up
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < seconds:
        a @ b
        steps += 1
    return 2 * m * k * n * steps / (time.perf_counter() - start)


def run(kind, naive, amp, size, seconds, threads):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    p = ctx.Process(target=measure, args=(kind, naive, amp, size, seconds, threads, queue))
    p.start()
    result = queue.get()
    p.join()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--seconds", type=float, default=20.0, help="time per method")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    args = parser.parse_args()
    seconds = 0.1 if args.quick else args.seconds
    # --quick: a product 64x smaller, since a CPU without bf16 matrix units multiplies bf16 at ~1 GFLOP/s
    shape = (1024, 256, 256) if args.quick else (4096, 1024, 1024)
    cases = {  # default architectures of train.py (levels 256) and train_wavenet.py
        "pixelcnn": ((16, 2, 256, 4, 8) if args.quick else (128, 15, 256, 16, 28), "images/s"),
        "wavenet": ((8, 1, 4, 2, 64) if args.quick else (32, 5, 10, 8, 1600), "scored samples/s"),
    }
    torch.set_num_threads(args.threads)
    peak = {
        amp: matmul_peak(torch.bfloat16 if amp else torch.float32, min(seconds, 2.0), *shape) for amp in (False, True)
    }
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{args.threads} threads{' (quick)' if args.quick else ''}"
    )
    print(f"matrix-multiply peak: {peak[False] / 1e9:,.0f} GFLOP/s fp32, {peak[True] / 1e9:,.0f} GFLOP/s bf16")
    print(
        f"{'model':<9} {'method':<16} {'throughput':>12} {'unit':<17} {'vs naive':>8} {'peak RSS':>9} "
        f"{'GFLOP/item':>10} {'roofline':>12} {'of roofline':>11}"
    )
    for kind, (size, unit) in cases.items():
        naive = run(kind, True, False, size, seconds, args.threads)
        ours = run(kind, False, False, size, seconds, args.threads)
        amp = run(kind, False, True, size, seconds, args.threads)
        for name, is_amp, (rate, rss, flops) in (
            ("naive (original)", False, naive),
            ("this project", False, ours),
            ("this, --amp", True, amp),
        ):
            bound = peak[is_amp] / flops
            print(
                f"{kind:<9} {name:<16} {rate:>12,.1f} {unit:<17} {rate / naive[0]:>7.2f}x {rss:>7.2f}GB "
                f"{flops / 1e9:>10.3g} {bound:>12,.1f} {rate / bound:>10.0%}"
            )


if __name__ == "__main__":
    main()
