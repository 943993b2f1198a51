"""The --gpu paths on CUDA (issue 16): causality, cached == naive sampling, fast WaveNet generation, one training
step against the CPU's, SIGKILL and --resume, --amp and --compile, and the scripts run with -g 0.

Each test takes a device. Its "cuda" case carries the `cuda` marker and skips, with one line, where torch
sees no CUDA GPU; `make gpu-check` runs those cases (pytest -m cuda). Its "cpu" case runs the same body on
any machine, so the test's own logic is checked without a GPU. Where the body starts scripts (seconds each),
the CPU case is marked slow: tests/test_reliability.py, tests/test_training_flags.py and tests/test_scripts.py
cover those paths on the CPU already. Run them with `pytest -m slow tests/test_cuda.py`.

fp32 on CUDA: torch lets cuDNN run fp32 convolutions in TF32 by default (inputs rounded to a 10-bit
mantissa, about 1e-3 relative), which no CPU comparison can hold to a tight tolerance. The equivalence tests
therefore run in float64, where both paths agree to rounding, and the CPU-against-CUDA step runs in fp32
with TF32 off (`ieee_fp32`).
"""

import math
import os
import random
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import (
    ROOT,
    TINY_PIXELCNN,
    TINY_WAVENET,
    read_log,
    two_speaker_corpus,
)
from test_local_conditioning import BANDS, HOP, conditioned_model, frames_for
from test_models import raster_channel_order
from test_pixelcnn_sampling import tiny_model as tiny_pixelcnn
from test_reliability import PIXELCNN, WAVENET, kill, snapshots, start, wait_for
from test_wavenet_sampling import tiny_model as tiny_wavenet
from torch.utils.data import TensorDataset

import infer
import infer_wavenet
import train
import train_wavenet
from wavenet import GatedPixelCNN, checkpoint, wavenet_sampling
from wavenet.launch import Settings, build_trainer
from wavenet.objectives import pixelcnn_nll, wavenet_nll
from wavenet.pixelcnn_sampling import cached_logits, sample_images
from wavenet.registry import TRAINER_SNAPSHOT
from wavenet.tensorboard_log import audio_sample, image_sample
from wavenet.training import Task, seed_everything

sys.path.append(os.path.join(ROOT, "bench"))  # after the tests and the repository: no name of theirs is shadowed
from gpu_check import GraphedSteps  # noqa: E402  (bench/gpu_check.py: the CUDA-graph prototype it times)

HAS_CUDA = torch.cuda.is_available()
NO_CUDA = "no CUDA GPU here (torch.cuda.is_available() is False)"
ON_CUDA = [pytest.mark.cuda, pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)]
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=ON_CUDA)]
SCRIPT_DEVICES = [pytest.param("cpu", marks=pytest.mark.slow), pytest.param("cuda", marks=ON_CUDA)]
SCRIPT_TIMEOUT = 300  # seconds for one script run; a tiny run takes seconds on a GPU (most of it start-up)
# tests/test_reliability.py's runs, in a process that asks for deterministic CUDA kernels first
DETERMINISTIC = """
import runpy, sys, torch
torch.use_deterministic_algorithms(True, warn_only=True)  # warn_only: ops with no deterministic kernel still run
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(autouse=True)
def global_generators_untouched():
    """Leave torch's, numpy's and Python's global generators as this file found them: later files (such as
    tests/test_models.py, whose models start from the global generator) then run as they did without it."""
    states = random.getstate(), np.random.get_state()
    with torch.random.fork_rng():  # the CPU's and every CUDA device's
        yield
    random.setstate(states[0])
    np.random.set_state(states[1])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(params=SCRIPT_DEVICES)
def script_device(request):
    """The device of the scripts a test starts: "cpu" (-g -1) or "cuda" (-g 0)."""
    return request.param


def gpu_flag(device):
    return ["-g", "0" if device == "cuda" else "-1"]


@pytest.fixture
def ieee_fp32():
    """fp32 convolutions and matrix products without TF32 while the test runs (torch's own switches: no-ops on
    the CPU). torch's new precision API: the legacy allow_tf32 flags may not be mixed with it."""
    conv, matmul = torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
    torch.backends.cudnn.conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "ieee"
    yield
    torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = conv, matmul


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A preprocessed folder of tones from two speakers for TINY_WAVENET."""
    return two_speaker_corpus(tmp_path_factory.mktemp("speech"))


# ---- causality, from input gradients on the device


def test_pixelcnn_sees_exactly_the_past(device):
    # as tests/test_models.py: 2 blocks after the 7x7 one cover a 6x6 image, so every earlier sub-pixel must
    # matter and no later one may; exact zeros, float64. Seed 3: at some initialisations (seed 0) all four blue
    # units of the 12-channel output layer are dead ReLUs on these inputs, and blue then misses green.
    C, H, W = 3, 6, 6
    torch.manual_seed(3)
    model = GatedPixelCNN(C, 12, 2, 12, 4, num_classes=3).double().to(device)
    x = torch.rand(8, C, H, W, dtype=torch.float64).to(device).requires_grad_()  # the same inputs on every device
    out = model(x, torch.arange(8, device=device) % 3)
    order = raster_channel_order(C, H, W).to(device)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                (g,) = torch.autograd.grad(out[:, :, c, i, j].sum(), x, retain_graph=True)
                seen, past = (g != 0).any(0), order < order[c, i, j]
                assert not (seen & ~past).any(), f"logits at {(c, i, j)} see the future on {device}"
                assert seen[past].all(), f"logits at {(c, i, j)} miss part of the past on {device}"


def test_wavenet_sees_exactly_the_past_audio_and_two_frames(device):
    """With speaker and local conditioning: logits at t see x[t-R .. t-1] exactly and frames t // hop, t // hop + 1."""
    model = conditioned_model().double().to(device)
    R, T = model.receptive_field, 60
    torch.manual_seed(1)
    codes = torch.randint(0, 32, (2, T))
    x = F.one_hot(codes, 32).permute(0, 2, 1).double().to(device).requires_grad_()
    features = torch.randn(2, BANDS, frames_for(T), dtype=torch.float64, device=device, requires_grad=True)
    out = model(x, torch.tensor([0, 2], device=device), features)
    for t in (0, 1, R // 2, R, T - 1):
        g, g_frames = torch.autograd.grad(out[:, :, t].sum(), (x, features), retain_graph=True)
        seen = set((g != 0).any(0).any(0).nonzero().flatten().tolist())
        assert seen == set(range(max(0, t - R), t)), f"output {t} sees {sorted(seen)} on {device}"
        frames = (g_frames != 0).any(0).any(0)
        assert not frames[t // HOP + 2 :].any(), f"output {t} sees a frame after t // hop + 1 on {device}"
        assert frames[t // HOP], f"output {t} misses its own frame on {device}"


# ---- the fast samplers against the full forward pass, and fixed-seed draws


def test_cached_pixelcnn_equals_naive_for_a_fixed_seed(device):
    model = tiny_pixelcnn(3, 4).to(device)  # float64, random non-zero biases and embeddings
    label = torch.tensor([0, 3, 1], device=device)
    x = torch.randint(0, 5, (3, 3, 6, 5), device=device).double() / 4
    # teacher forced, the cached path's logits are the forward pass's: float64, both paths round alike
    torch.testing.assert_close(cached_logits(model, x, label), model(x, label), atol=1e-10, rtol=0)
    draws = [
        # a generator on the device, as infer.py -g N makes it
        sample_images(model, 3, 6, 5, label, torch.Generator(device).manual_seed(7), method=method, progress=False)
        for method in ("cached", "naive")
    ]
    assert draws[0].device.type == device.type
    assert torch.equal(draws[0], draws[1])


@pytest.mark.parametrize("prime_length", [0, 9])
def test_wavenet_incremental_equals_forward_with_speaker_and_local_conditioning(device, prime_length, ieee_fp32):
    torch.manual_seed(0)
    B, T = 2, 60
    codes = torch.randint(0, 32, (B, prime_length + T))
    features = torch.randn(B, BANDS, frames_for(prime_length + T))
    speaker = torch.tensor([0, 2])
    # float64 to rounding; fp32 (TF32 off) within the 1e-5 the README states for the torch path
    for dtype, tolerance in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        model = conditioned_model().to(device, dtype)
        on = [t.to(device) for t in (codes, speaker)] + [features.to(device, dtype)]
        with torch.no_grad():
            full = model(*on)[..., prime_length:]
        forced = wavenet_sampling.incremental_logits(
            model, on[0][:, prime_length:], on[1], prime=on[0][:, :prime_length], method="torch", features=on[2]
        )
        assert forced.device.type == device.type
        assert (forced - full).abs().max() < tolerance, (dtype, (forced - full).abs().max().item())


def test_wavenet_fixed_seed_draws_are_the_same_on_every_path(device):
    model = conditioned_model().double().to(device)
    torch.manual_seed(1)
    B, T = 3, 40
    speaker = torch.tensor([0, 1, 2], device=device)
    features = torch.randn(B, BANDS, frames_for(T), dtype=torch.float64, device=device)
    assert wavenet_sampling.resolve_method("auto", device) == ("torch" if device.type == "cuda" else "numba")
    draws = {
        method: wavenet_sampling.generate(
            model,
            B,
            T,
            speaker,
            generator=torch.Generator(device).manual_seed(5),
            method=method,
            progress=False,
            features=features,
        )
        for method in ("naive", "torch", "numba")  # numba with a CUDA model: the kernel reads its weights on the CPU
    }
    assert draws["torch"].device.type == device.type
    assert torch.equal(draws["torch"], draws["naive"]) and torch.equal(draws["numba"], draws["naive"])


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_graphed_steps_draw_what_the_torch_path_draws(device, temperature):
    """bench/gpu_check.py's CUDA-graph prototype: on CUDA each step is a replayed graph, on the CPU the same
    in-place step runs eagerly; either way the codes equal the cached torch path's for the same seed."""
    model = tiny_wavenet(num_speakers=3).to(device)  # float64, receptive field 15
    speaker = torch.tensor([0, 2, 1], device=device)
    prime = torch.randint(0, 16, (3, 4), device=device)
    expected = wavenet_sampling.generate(
        model, 3, 40, speaker, prime, temperature, torch.Generator(device).manual_seed(3), "torch", progress=False
    )
    generator = torch.Generator(device).manual_seed(3)
    with torch.no_grad():
        graphed = GraphedSteps(model.eval(), prime, speaker, temperature, graph=device.type == "cuda")
        got = torch.cat([graphed.sample(15, generator), graphed.sample(25, generator)], 1)  # state carries over
    assert torch.equal(got, expected)


def test_epoch_end_samples_of_tensorboard_run_on_the_device(device):
    """What --tensorboard draws at each epoch's end from the model on its training device."""
    pixelcnn = GatedPixelCNN(3, 8, 1, 8, 4).to(device)
    images = image_sample(5, 4, 4)(pixelcnn)
    assert images.grid.dim() == 3
    torch.manual_seed(0)
    wavenet = tiny_wavenet(num_speakers=2).float().to(device)  # a CUDA model sampled by the CPU's numba kernel
    audio = audio_sample(800)(wavenet)
    assert len(audio.samples) == 800 and audio.rate == 800


# ---- training on the device


def trainer_on(device, kind, out):
    """A Trainer for a small seeded model on `device` (the same weights on every device), and one batch."""
    os.makedirs(out, exist_ok=True)
    seed_everything(0)
    g = torch.Generator().manual_seed(1)
    if kind == "pixelcnn":
        model = GatedPixelCNN(3, 16, 2, 16, 8, num_classes=10)
        data = TensorDataset(
            torch.randint(0, 8, (6, 3, 8, 8), generator=g).to(torch.uint8), torch.randint(0, 10, (6,), generator=g)
        )
        task = Task(loss=pixelcnn_nll(8), dims=3 * 8 * 8, meta={})
    else:  # speaker and local conditioning together
        model = conditioned_model()
        scored = 30
        length = model.receptive_field + scored
        data = TensorDataset(
            torch.randint(0, 32, (4, length), generator=g),
            torch.tensor([0, 1, 2, 0]),
            torch.randn(4, BANDS, frames_for(length), generator=g),
        )
        task = Task(loss=wavenet_nll(scored, conditioned=True, local=True), dims=1, meta={})
    settings = Settings(out=str(out), batchsize=len(data))  # the defaults: Adam 1e-3, weight decay 1e-4, clip 1.0
    return build_trainer(model, task, data, data, settings, device), list(data.tensors)


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason=NO_CUDA)
@pytest.mark.parametrize("kind", ["pixelcnn", "wavenet"])
def test_one_training_step_on_cuda_equals_the_cpu_step(kind, tmp_path, monkeypatch, ieee_fp32):
    """Trainer.step in fp32 (TF32 off) on both devices from the same weights and batch.

    Tolerances: the loss to 1e-5 relative and the clipped gradients to 1e-4 relative (atol 1e-6): fp32 sums in
    another order. Adam's first step moves each weight by lr * g / (|g| + eps), about lr * sign(g), so a weight
    whose gradient (with weight decay) is within rounding of 0 may move the other way: every weight agrees to
    2 lr, and those with |g| > 1e-4 to 1e-6.
    """
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    results = {}
    for name in ("cpu", "cuda"):
        trainer, batch = trainer_on(torch.device(name), kind, tmp_path / name)
        before = {k: p.detach().cpu().clone() for k, p in trainer.model.named_parameters()}
        nll_sum, items = trainer.step(batch)
        results[name] = (
            nll_sum,
            items,
            before,
            {k: p.grad.cpu() for k, p in trainer.model.named_parameters()},
            {k: p.detach().cpu() for k, p in trainer.model.named_parameters()},
        )
    (cpu_sum, cpu_items, before, cpu_grads, cpu_weights) = results["cpu"]
    (cuda_sum, cuda_items, _, cuda_grads, cuda_weights) = results["cuda"]
    assert cuda_items == cpu_items and cuda_sum == pytest.approx(cpu_sum, rel=1e-5)
    lr, decay = Settings.learning_rate, Settings.weight_decay
    for k in cpu_grads:
        torch.testing.assert_close(cuda_grads[k], cpu_grads[k], rtol=1e-4, atol=1e-6, msg=f"gradient of {k}")
        torch.testing.assert_close(cuda_weights[k], cpu_weights[k], rtol=0, atol=2 * lr, msg=f"weight {k}")
        sure = (cpu_grads[k] + decay * before[k]).abs() > 1e-4
        torch.testing.assert_close(cuda_weights[k][sure], cpu_weights[k][sure], rtol=0, atol=1e-6, msg=k)
    assert any(not torch.equal(before[k], cuda_weights[k]) for k in before), "the step changed nothing"


def run_script(argv, prefix=()):
    """Run a script (argv[0]) to its end from the repository root; fails the test unless it exits 0."""
    process = start(argv, prefix=prefix)
    _, stderr = process.communicate(timeout=SCRIPT_TIMEOUT)
    assert process.returncode == 0, stderr[-3000:]


def newest_snapshot(out):
    return checkpoint.load(checkpoint.resolve(out, TRAINER_SNAPSHOT))


def largest_difference(a, b):
    """The largest absolute difference between the weights and Adam moments of two trainer snapshots."""
    pairs = [(a["model"][k], b["model"][k]) for k in a["model"] if a["model"][k].is_floating_point()]
    for key, state in a["optimizer"]["state"].items():
        pairs += [(state[n], b["optimizer"]["state"][key][n]) for n in ("exp_avg", "exp_avg_sq")]
    return max((x.double() - y.double()).abs().max().item() for x, y in pairs)


def logged_nll(snapshot):
    """The nll figures of a trainer snapshot's history and running sums, in order."""
    figures = [snapshot["state"]["train_nll_sum"]]
    for record in snapshot["state"]["history"]:
        figures += [value for key, value in sorted(record.items()) if "nll" in key or "bits_per_dim" in key]
    return figures


@pytest.mark.parametrize("script", ["train.py", "train_wavenet.py"])
def test_killed_and_resumed_ends_as_an_uninterrupted_run(script_device, script, speech, tmp_path, monkeypatch):
    """tests/test_reliability.py's SIGKILL test on the device, with deterministic CUDA kernels where torch has them.

    Two uninterrupted runs A and B show what the device's kernels leave nondeterministic. Where A and B end
    with bit-identical weights and Adam moments, so must the killed and resumed run; where they do not (a
    kernel with no deterministic implementation: torch warns which), it may differ from A by at most 10 times
    the largest A-B difference. The logged nll figures likewise: equal where A's and B's are, else within
    1e-5 relative (a loss summed with atomic adds changes in its last bits, the weights need not). Counters
    and the CPU's RNG states always agree exactly.
    """
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic mode, for the children
    argv = (PIXELCNN if script == "train.py" else WAVENET + ["-d", speech]) + gpu_flag(script_device)
    folders = [str(tmp_path / name) for name in ("a", "b", "run")]
    # the three runs side by side: a tiny run is mostly start-up
    runs = [start(argv + ["-o", out], prefix=("-c", DETERMINISTIC)) for out in folders]
    out = folders[2]
    wait_for(lambda: os.path.isdir(out) and snapshots(out), runs[2], timeout=SCRIPT_TIMEOUT)
    time.sleep(random.Random(os.getpid()).uniform(0, 0.2))
    kill(runs[2])
    for run in runs[:2]:
        _, stderr = run.communicate(timeout=SCRIPT_TIMEOUT)
        assert run.returncode == 0, stderr[-3000:]
    assert newest_snapshot(out)["state"]["iteration"] > 0
    run_script(argv + ["-o", out, "--resume", out], prefix=("-c", DETERMINISTIC))
    a, b, resumed = (newest_snapshot(folder) for folder in folders)
    spread, off = largest_difference(a, b), largest_difference(a, resumed)
    assert off <= 10 * spread, f"the resumed run is {off:.3g} off the straight one, which differ by {spread:.3g}"
    if logged_nll(a) == logged_nll(b):
        assert logged_nll(resumed) == logged_nll(a)
    else:
        assert logged_nll(resumed) == pytest.approx(logged_nll(a), rel=1e-5)
    for key in ("iteration", "epoch", "batch_in_epoch", "train_items", "best_metric", "world_size"):
        assert resumed["state"][key] == pytest.approx(a["state"][key], rel=1e-5), key
    assert torch.equal(resumed["rng"]["torch"], a["rng"]["torch"]) and resumed["rng"]["python"] == a["rng"]["python"]
    assert torch.equal(resumed["rng"]["numpy"][1], a["rng"]["numpy"][1])


def test_scripts_train_and_sample_with_the_gpu_flag(script_device, speech, tmp_path):
    """train.py, infer.py, train_wavenet.py and infer_wavenet.py with -g as a user passes it; a snapshot trained
    on the device also samples on the CPU (snapshots load onto the CPU first)."""
    g, pix, wn = gpu_flag(script_device), str(tmp_path / "pix"), str(tmp_path / "wn")
    train.main(TINY_PIXELCNN + ["-b", "64", "-e", "1", *g, "-o", pix])
    for where in (g, ["-g", "-1"]):
        grid = str(tmp_path / f"grid{where[1]}.png")
        infer.main(["-m", pix, *where, "-c", "2", "-o", grid])
        assert os.path.getsize(grid) > 0
    train_wavenet.main(TINY_WAVENET + ["-b", "16", "-e", "1", "-d", speech, *g, "-o", wn])
    for method in ("auto", "numba"):
        folder = str(tmp_path / f"audio_{method}")
        infer_wavenet.main(["-m", wn, *g, "-c", "2", "--length", "300", "--method", method, "-o", folder])
        assert sorted(os.listdir(folder)) == ["sample_0.wav", "sample_1.wav"]


@pytest.mark.parametrize(
    "script, flags",
    [
        ("train.py", ["--amp"]),
        ("train.py", ["--amp", "--amp_dtype", "float16"]),
        ("train.py", ["--compile"]),
        ("train_wavenet.py", ["--amp", "--compile"]),
    ],
    ids=["pixelcnn-amp", "pixelcnn-amp-fp16", "pixelcnn-compile", "wavenet-amp-compile"],
)
def test_amp_and_compile_train_and_reduce_the_loss(script_device, script, flags, speech, tmp_path):
    """--amp (bf16 autocast, and fp16 with a GradScaler) and --compile (inductor) on the device:
    three epochs run without error, every nll is finite, and the last epoch's train and validation nll are
    below the first's."""
    tiny = TINY_PIXELCNN + ["-b", "64"] if script == "train.py" else TINY_WAVENET + ["-b", "16", "-d", speech]
    out = str(tmp_path / "run")
    run_script([script, *tiny, "-e", "3", *gpu_flag(script_device), *flags, "-o", out])
    log = read_log(out)
    assert len(log) == 3 and all(math.isfinite(r["train_nll"]) and math.isfinite(r["val_nll"]) for r in log)
    assert log[-1]["train_nll"] < log[0]["train_nll"] and log[-1]["val_nll"] < log[0]["val_nll"], log


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL needs two CUDA GPUs here")
def test_two_gpus_train_with_nccl_and_resume(tmp_path):
    from test_distributed import TINY_RUN, table_rows, torchrun

    out = str(tmp_path / "run")
    first = torchrun("train.py", *TINY_RUN, "-g", "0", "-e", "1", "-o", out)
    assert len(table_rows(first)) == 2, first  # the header and one epoch, printed by rank 0 alone
    second = torchrun("train.py", *TINY_RUN, "-g", "0", "-e", "2", "-o", out, "--resume", out)
    assert len(table_rows(second)) == 2, second
    assert [r["epoch"] for r in read_log(out)] == [1, 2]


def test_resume_where_fewer_gpus_are_visible_restores_the_devices_there_are(monkeypatch):
    from wavenet import training

    restored = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: restored.append((state, device)))
    states = training.rng_states() | {"cuda": [torch.tensor([1], dtype=torch.uint8)] * 2}  # saved with 2 GPUs
    training.set_rng_states(states)
    assert [device for _, device in restored] == [0]


@pytest.mark.parametrize("ids", ["label", "speaker"])
def test_id_checks_never_read_a_device_tensor_back(ids):
    # reading min/max of a GPU tensor waits for the device in every forward; a meta tensor has no values,
    # so any read-back would raise here
    from wavenet.models import check_ids

    check_ids(ids, torch.tensor([0, 99], device="meta"), 3)
    with pytest.raises(ValueError, match=f"{ids} out of range 0..2"):
        check_ids(ids, torch.tensor([0, 99]), 3)
