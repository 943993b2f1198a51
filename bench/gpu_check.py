"""A short benchmark table on one CUDA GPU (issue 16): training, sampling and generation, with peak GPU memory.

    python bench/gpu_check.py                        # the default architectures, about 3 minutes on one GPU
    python bench/gpu_check.py --quick --device cpu   # tiny sizes on the CPU, seconds: a smoke test of this script

Without CUDA (and without --device cpu) it says so in one line and exits 0, so `make gpu-check` can run anywhere.

Rows, each time-boxed to --seconds of measurement after a warm-up, the whole table to --budget seconds:

- Training: one step of the project's own loop (`training.Trainer.step`: the batch copied to the GPU,
  the loss, backward, clipping, Adam), fp32, --amp (bf16 autocast) and --amp --amp_dtype float16 (with
  a GradScaler), at the default architectures that bench/training.py times on the CPU: Gated PixelCNN
  128 channels, 15 blocks, 256 levels, batch 16 of 28x28x3; WaveNet 32/32 channels, 5 x 10 layers,
  batch 8 of 1,600 scored samples.
- PixelCNN sampling: infer.py's defaults (100 images of 28x28x3, cached), with a CUDA generator as infer.py
  -g 0 draws; the naive loop runs 3 sub-pixels and is extrapolated, as in bench/sampling_pixelcnn.py.
- WaveNet generation from silence with the default WaveNet: the cached torch path (what infer_wavenet.py
  -g 0 runs) for 1, 10 and 100 streams, and `GraphedSteps`, a prototype of the same step replayed as a
  CUDA graph (see its docstring), with a check that both draw the same codes from the same seed.

Peak GPU memory is torch.cuda.max_memory_allocated() of each row, reset before it (tensors only: the CUDA
context and cuDNN's workspace come on top). fp32 convolutions run as torch's defaults leave them (the
header line says whether cuDNN may use TF32).
"""

import argparse
import os
import sys
import tempfile
import time

import torch
from machine import cpu_model  # bench/machine.py, beside this script
from sampling_pixelcnn import raster
from torch.utils.data import TensorDataset

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from wavenet import GatedPixelCNN, WaveNet, receptive_field  # noqa: E402
from wavenet.launch import Settings, build_trainer  # noqa: E402
from wavenet.objectives import pixelcnn_nll, wavenet_nll  # noqa: E402
from wavenet.pixelcnn_sampling import sample_images  # noqa: E402
from wavenet.sampling import inference  # noqa: E402
from wavenet.training import Task  # noqa: E402
from wavenet.wavenet_sampling import SESSIONS, initial_state  # noqa: E402

GRAPH_WARMUP = 3  # eager steps before capture: cuDNN picks its algorithms and the allocator settles
STREAMS = (1, 10, 100)
NAIVE_SUBPIXELS = 3  # the naive PixelCNN loop's sub-pixels before its total is extrapolated
PROBE_ROWS = 2  # image rows the cached PixelCNN sampler runs first, to see whether the whole grid fits the box


def sizes(quick):
    """Model sizes: the default architectures (bench/training.py's, infer.py's) or tiny ones with --quick."""
    if quick:
        return dict(
            pixelcnn=dict(hidden=16, blocks=2, levels=16, batch=4, side=8, images=4),
            wavenet=dict(hidden=8, stacks=1, layers=4, batch=2, scored=64, streams=(1, 3)),
        )
    return dict(
        pixelcnn=dict(hidden=128, blocks=15, levels=256, batch=16, side=28, images=100),
        wavenet=dict(hidden=32, stacks=5, layers=10, batch=8, scored=1600, streams=STREAMS),
    )


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device):
    """Peak GPU memory of tensors since reset_peak, formatted; n/a on the CPU."""
    if device.type != "cuda":
        return "n/a"
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GB"


def rate_of(step, seconds, device, warmup=2, min_steps=3):
    """Calls of step() per second, over at least `seconds` after `warmup` calls (and min_steps calls)."""
    for _ in range(warmup):
        step()
    sync(device)
    steps, start = 0, time.perf_counter()
    while steps < min_steps or time.perf_counter() - start < seconds:
        step()
        steps += 1
    sync(device)
    return steps / (time.perf_counter() - start)


def training_trainer(kind, size, amp_dtype, device, out):
    """(Trainer, one batch on the CPU, items per batch) for the project's own step on random data.

    amp_dtype: None for fp32, else --amp_dtype's value."""
    torch.manual_seed(0)
    if kind == "pixelcnn":
        s = size["pixelcnn"]
        model = GatedPixelCNN(3, s["hidden"], s["blocks"], 16, s["levels"])
        q = torch.randint(0, s["levels"], (s["batch"], 3, s["side"], s["side"]), dtype=torch.uint8)
        data = TensorDataset(q, torch.randint(0, 10, (s["batch"],)))
        task = Task(loss=pixelcnn_nll(s["levels"]), dims=3 * s["side"] ** 2, meta={})
        items = s["batch"]
    else:
        s = size["wavenet"]
        model = WaveNet(256, s["hidden"], s["hidden"], s["stacks"], s["layers"])
        codes = torch.randint(0, 256, (s["batch"], model.receptive_field + s["scored"]))
        data = TensorDataset(codes, torch.zeros(s["batch"], dtype=torch.long))
        task = Task(loss=wavenet_nll(s["scored"], conditioned=False), dims=1, meta={})
        items = s["batch"] * s["scored"]
    amp = {"amp": True, "amp_dtype": amp_dtype} if amp_dtype else {}
    settings = Settings(out=out, batchsize=len(data), **amp)
    trainer = build_trainer(model, task, data, data, settings, device)
    batch = [t.pin_memory() if device.type == "cuda" else t for t in data.tensors]  # as the DataLoader pins them
    return trainer, batch, items


# the training rows: --amp_dtype (None: fp32) and the method column's words
METHODS = (
    (None, "this project (fp32)"),
    ("bfloat16", "this project, `--amp` (bf16)"),
    ("float16", "this project, `--amp --amp_dtype float16` (fp16, loss scaling)"),
)


def training_rows(size, device, seconds, clock):
    rows = []
    units = {"pixelcnn": "images/s", "wavenet": "scored samples/s"}
    names = {"pixelcnn": "Gated PixelCNN", "wavenet": "WaveNet"}
    for kind in ("pixelcnn", "wavenet"):
        for amp_dtype, method in METHODS:
            if clock.out():
                rows.append((names[kind], method, "skipped (time box)", ""))
                continue
            reset_peak(device)
            with tempfile.TemporaryDirectory(prefix="gpu_check_") as out:
                trainer, batch, items = training_trainer(kind, size, amp_dtype, device, out)
                rate = rate_of(lambda trainer=trainer, batch=batch: trainer.step(batch), seconds, device)
                rows.append((names[kind], method, f"{rate * items:,.1f} {units[kind]}", peak_gb(device)))
                del trainer, batch
    return rows


def pixelcnn_sampling_rows(size, device, seconds, clock):
    """Rows of infer.py's default grid: naive (extrapolated) and cached (whole, or extrapolated from its first
    rows when the whole grid would not fit 4x --seconds); and whether both drew the same first sub-pixels."""
    s = size["pixelcnn"]
    torch.manual_seed(0)
    model = GatedPixelCNN(3, s["hidden"], s["blocks"], 16, s["levels"]).to(device).eval()
    n, side = s["images"], s["side"]
    label = torch.arange(n, device=device) % 10
    subpixels = n * 3 * side * side

    def timed(method, stop_after=None):
        reset_peak(device)
        sync(device)
        start = time.perf_counter()
        generator = torch.Generator(device).manual_seed(0)  # as infer.py -g N draws
        samples = sample_images(model, n, side, side, label, generator, method, progress=False, stop_after=stop_after)
        sync(device)
        return samples, time.perf_counter() - start, peak_gb(device)

    naive, naive_part, naive_peak = timed("naive", NAIVE_SUBPIXELS)
    naive_s = naive_part / NAIVE_SUBPIXELS * 3 * side * side
    _, probe_s, _ = timed("cached", 3 * side * PROBE_ROWS)
    estimate = probe_s / PROBE_ROWS * side
    if estimate <= 4 * seconds and not clock.out(estimate):
        cached, cached_s, cached_peak = timed("cached")
        note = "measured"
    else:
        cached, cached_s, cached_peak = None, estimate, peak_gb(device)
        note = f"extrapolated from {PROBE_ROWS} of {side} rows"
    rows = [
        (f"naive, extrapolated from {NAIVE_SUBPIXELS} sub-pixels", naive_s, subpixels / naive_s, 1.0, naive_peak),
        (f"cached (this project), {note}", cached_s, subpixels / cached_s, naive_s / cached_s, cached_peak),
    ]
    same = (
        None if cached is None else torch.equal(raster(cached)[:, :NAIVE_SUBPIXELS], raster(naive)[:, :NAIVE_SUBPIXELS])
    )
    return rows, same


def draw(logits, u, temperature):
    """`sampling.pick` with its uniform numbers u (B,) float64 given: logits (B, levels) -> codes (B,) long.

    The same arithmetic as sampling.inverse_cdf_sample, which draws u itself; a CUDA graph cannot run the
    Python-side choice of generator, so the draw of u stays outside and this runs inside.
    """
    if temperature == 0:
        return logits.argmax(1)
    cdf = torch.softmax(logits.double() / temperature, dim=1).cumsum(dim=1)  # (B, levels)
    return torch.searchsorted(cdf, u[:, None], right=True)[:, 0].clamp_(max=logits.shape[1] - 1)


class GraphedSteps:
    """Prototype (issue 16): `wavenet_sampling.Cached`'s step on fixed tensors, replayed as one CUDA graph per step.

    Same caches as Cached (`initial_state`), same modules in the same order (embed, every ResidualLayer
    on its last reach + 1 inputs, head), but each step writes its caches in place (copy_) instead of
    binding new tensors, so the step reads and writes the same memory every time: what a captured graph
    replays. The uniform number of each draw comes from `generator` outside the graph, one
    torch.rand(B) per step as `sampling.pick` draws it, so the codes equal Cached's for the same seed.
    graph=False runs the same step eagerly (the CPU, and a check of the in-place bookkeeping).
    Speaker conditioning only (no local conditioning yet). Build and use it under torch.no_grad().
    """

    def __init__(self, model, prime, speaker=None, temperature=1.0, graph=True):
        self.model, self.speaker, self.temperature = model, speaker, temperature
        pending, history, self.buffers = initial_state(model, prime, speaker)  # buffers: (B, C, reach) per layer
        self.codes = torch.cat([history, pending[:, None]], 1)  # (B, k): the input convolution's window
        self.uniform = torch.zeros(len(pending), dtype=torch.float64, device=pending.device)  # (B,)
        self.code = torch.zeros_like(pending)  # (B,) the code each step draws
        self.graph = self._capture() if graph else None

    def _step(self):
        """Cached.next_logits, then the draw and Cached.feed, with every cache updated in place."""
        h = self.model.embed(self.codes)  # (B, C, 1)
        skips = 0
        for buffer, layer in zip(self.buffers, self.model.layers):
            window = torch.cat([buffer, h], 2)  # (B, C, reach + 1)
            buffer.copy_(window[:, :, 1:])
            h, skip = layer(window, self.speaker, 1)  # (B, C, 1) or None, (B, S, 1)
            skips = skips + skip
        logits = self.model.head(skips)[:, :, 0]  # (B, levels)
        self.code.copy_(draw(logits, self.uniform, self.temperature))
        self.codes.copy_(torch.cat([self.codes[:, 1:], self.code[:, None]], 1))

    def _capture(self):
        state = [self.codes, *self.buffers]
        saved = [t.clone() for t in state]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up off the default stream, as torch.cuda.graphs' notes advise
            for _ in range(GRAPH_WARMUP):
                self._step()
        torch.cuda.current_stream().wait_stream(side)
        for t, s in zip(state, saved):  # undo the warm-up: generation starts from initial_state
            t.copy_(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):  # records the kernels, runs none of them
            self._step()
        return graph

    def sample(self, n, generator=None):
        """Draw the next n codes -> (B, n) long, as Cached.sample(n, temperature, generator) would."""
        B, device = len(self.code), self.code.device
        out = torch.empty(B, n, dtype=torch.long, device=device)
        draw_on = generator.device if generator is not None else device
        for i in range(n):
            if self.temperature != 0:  # temperature 0 draws nothing, like `pick`
                self.uniform.copy_(torch.rand(B, generator=generator, dtype=torch.float64, device=draw_on))
            if self.graph is not None:
                self.graph.replay()
            else:
                self._step()
            out[:, i] = self.code
        return out


def generation_rows(size, device, seconds, clock, check_steps=50):
    """Rows of the default WaveNet generating from silence: the torch path and GraphedSteps for each stream
    count; and whether both drew the same first `check_steps` codes of 10 streams from the same seed."""
    s = size["wavenet"]
    torch.manual_seed(0)
    model = WaveNet(256, s["hidden"], s["hidden"], s["stacks"], s["layers"]).to(device).eval()
    graph = device.type == "cuda"
    rows, same = [], None
    with inference(model):
        check = min(10, max(s["streams"]))
        prime = torch.empty(check, 0, dtype=torch.long, device=device)
        eager = SESSIONS["torch"](model, prime, None).sample(check_steps, 1.0, torch.Generator(device).manual_seed(1))
        graphed = GraphedSteps(model, prime, graph=graph).sample(check_steps, torch.Generator(device).manual_seed(1))
        same = torch.equal(eager, graphed)
        for streams in s["streams"]:
            prime = torch.empty(streams, 0, dtype=torch.long, device=device)
            for name in ("torch incremental (infer_wavenet.py's CUDA path)", "CUDA graph per step (GraphedSteps)"):
                if not graph and name.startswith("CUDA graph"):
                    name = "GraphedSteps without a graph (no CUDA)"
                if clock.out():
                    rows.append((name, streams, None, None, "skipped (time box)"))
                    continue
                reset_peak(device)
                generator = torch.Generator(device).manual_seed(0)
                if name.startswith("torch"):
                    session = SESSIONS["torch"](model, prime, None)
                    step = lambda session=session, generator=generator: session.sample(1, 1.0, generator)
                else:
                    session = GraphedSteps(model, prime, graph=graph)
                    step = lambda session=session, generator=generator: session.sample(1, generator)
                steps_per_second = rate_of(step, seconds, device, warmup=5)
                rows.append((name, streams, steps_per_second * streams, steps_per_second, peak_gb(device)))
                del session, step
    return rows, same


class Clock:
    """The whole table's time box: out(extra) is true once `budget` seconds (less `extra`) have passed."""

    def __init__(self, budget):
        self.deadline = time.monotonic() + budget

    def out(self, extra=0.0):
        return time.monotonic() + extra > self.deadline


def header(device):
    if device.type != "cuda":
        return f"device: CPU ({cpu_model()}, {os.cpu_count()} cores), torch {torch.__version__}"
    p = torch.cuda.get_device_properties(device)
    conv = torch.backends.cudnn.conv.fp32_precision  # "tf32" (torch's default) or "ieee"
    return (
        f"GPU: {torch.cuda.get_device_name(device)} ({p.total_memory / 2**30:.0f} GB, compute capability "
        f"{p.major}.{p.minor}), torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
        f"{torch.backends.cudnn.version()}; fp32 convolutions: {conv}; bf16: {torch.cuda.is_bf16_supported()}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    parser.add_argument("--device", default="cuda", help="cuda (or cuda:N), or cpu for a smoke test of the script")
    parser.add_argument("--seconds", type=float, default=8.0, help="measurement time of each row, after its warm-up")
    parser.add_argument("--budget", type=float, default=170.0, help="time box of the whole table; later rows skip")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); nothing to measure")
        return
    seconds = min(args.seconds, 0.5) if args.quick else args.seconds
    size, clock, start = sizes(args.quick), Clock(args.budget), time.monotonic()
    print(header(device) + (" (quick)" if args.quick else ""))

    p, w = size["pixelcnn"], size["wavenet"]
    print(
        f"\ntraining, one Trainer.step: Gated PixelCNN {p['hidden']} channels, {p['blocks']} blocks, {p['levels']} "
        f"levels, batch {p['batch']} of {p['side']}x{p['side']}x3; WaveNet {w['hidden']}/{w['hidden']} channels, "
        f"{w['stacks']} x {w['layers']} layers, batch {w['batch']} of {w['scored']:,} scored samples\n"
    )
    print("| model | method | throughput | peak GPU memory |\n|---|---|---|---|")
    for row in training_rows(size, device, seconds, clock):
        print("| " + " | ".join(row) + " |")

    rows, same = pixelcnn_sampling_rows(size, device, seconds, clock)
    print(f"\nPixelCNN sampling: {p['images']} images of {p['side']}x{p['side']}x3, a generator on the device\n")
    print("| method | seconds | sub-pixels/s | vs naive | peak GPU memory |\n|---|---|---|---|---|")
    for name, s, rate, speedup, peak in rows:
        print(f"| {name} | {s:,.1f} | {rate:,.0f} | {speedup:,.0f}x | {peak} |")
    shown = "not checked (extrapolated)" if same is None else same
    print(f"\nsame draws on both paths for the first {NAIVE_SUBPIXELS} sub-pixels of every image: {shown}")

    rows, same = generation_rows(size, device, seconds, clock)
    field = receptive_field(w["stacks"], w["layers"])
    print(f"\nWaveNet generation from silence: {w['hidden']}/{w['hidden']} channels, receptive field {field:,}\n")
    print("| method | streams | samples/s | steps/s | peak GPU memory |\n|---|---|---|---|---|")
    for name, streams, rate, steps, peak in rows:
        if rate is None:
            print(f"| {name} | {streams} | {peak} | | |")
        else:
            print(f"| {name} | {streams} | {rate:,.0f} | {steps:,.0f} | {peak} |")
    print(f"\nGraphedSteps draws the torch path's codes from the same seed: {same}")
    print(f"total: {time.monotonic() - start:.0f} s (time box {args.budget:g} s)")
    if not same:  # a prototype that draws other codes than the torch path is a bug, not a number
        sys.exit(1)


if __name__ == "__main__":
    main()
