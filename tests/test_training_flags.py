"""--amp (bfloat16, and float16 with a gradient scaler), --compile and --workers on the CPU: each reaches the
training step, and the loss stays finite."""

import functools
import math
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, TINY_PIXELCNN, read_log

import train
import wavenet.launch
from wavenet import GatedPixelCNN, checkpoint, cli
from wavenet.training import Trainer

TINY = [*TINY_PIXELCNN, "-b", "128", "-e", "1"]


def train_script(out, *flags):
    """Run train.py as a user would; returns log.json."""
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), *TINY, "-o", str(out), *flags],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return read_log(out)


def assert_finite(log):
    assert log and all(math.isfinite(r["train_nll"]) and math.isfinite(r["val_nll"]) for r in log)


def test_amp_computes_in_bfloat16_and_the_loss_stays_finite(tmp_path, monkeypatch):
    seen = set()
    build = Trainer.__init__

    def hook_convolutions(self, model, *args, **kwargs):
        build(self, model, *args, **kwargs)
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.register_forward_hook(lambda _m, _x, y: seen.add(y.dtype))

    monkeypatch.setattr(Trainer, "__init__", hook_convolutions)
    train.main(TINY + ["-o", str(tmp_path / "amp"), "--amp"])
    assert torch.bfloat16 in seen
    assert_finite(read_log(tmp_path / "amp"))


def test_amp_float16_scales_the_loss_computes_in_float16_and_resumes_its_scale(tmp_path, monkeypatch):
    seen, scalers = set(), []
    build = Trainer.__init__

    def hook(self, model, *args, **kwargs):
        build(self, model, *args, **kwargs)
        scalers.append(self.scaler)
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.register_forward_hook(lambda _m, _x, y: seen.add(y.dtype))

    monkeypatch.setattr(Trainer, "__init__", hook)
    out = str(tmp_path / "fp16")
    train.main(TINY + ["-o", out, "--amp", "--amp_dtype", "float16"])
    assert torch.float16 in seen and torch.bfloat16 not in seen
    assert scalers[0].is_enabled()
    assert_finite(read_log(out))
    saved = checkpoint.load(checkpoint.resolve(out, "snapshot_iter_"))["scaler"]
    assert saved["scale"] == scalers[0].get_scale()
    loaded = []
    load = torch.amp.GradScaler.load_state_dict
    monkeypatch.setattr(torch.amp.GradScaler, "load_state_dict", lambda self, d: (loaded.append(d), load(self, d)))
    train.main(TINY[:-1] + ["2", "-o", out, "--amp", "--amp_dtype", "float16", "--resume", out])
    assert loaded == [saved] and len(read_log(out)) == 2  # the resumed run goes on from the saved scale


def test_bfloat16_amp_needs_no_scaler_and_amp_dtype_needs_amp(tmp_path, monkeypatch, capsys):
    scalers = []
    build = Trainer.__init__

    def hook(self, *args, **kwargs):
        build(self, *args, **kwargs)
        scalers.append(self.scaler)

    monkeypatch.setattr(Trainer, "__init__", hook)
    train.main(TINY + ["-o", str(tmp_path / "bf16"), "--amp"])
    assert not scalers[0].is_enabled()
    assert checkpoint.load(checkpoint.resolve(str(tmp_path / "bf16"), "snapshot_iter_"))["scaler"] == {}
    with pytest.raises(SystemExit):
        cli.run(lambda: train.main(TINY + ["-o", str(tmp_path / "no_amp"), "--amp_dtype", "float16"]))
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --amp_dtype float16 acts only with --amp: add --amp, or drop --amp_dtype"
    )


def record_worker(folder, init, worker_id):
    """A DataLoader worker_init_fn: leaves a file named by this worker's process id in `folder`, then runs the
    loader's own `init` (if any)."""
    open(os.path.join(folder, str(os.getpid())), "w").close()
    if init is not None:
        init(worker_id)


def test_loader_workers_change_nothing(tmp_path, monkeypatch):
    # the sampler runs in the main process, so workers see the same batches in the same order
    train.main(TINY + ["-o", str(tmp_path / "w0")])
    made, started = [], tmp_path / "workers"
    started.mkdir()
    make_loaders = wavenet.launch.loaders

    def loaders_that_record_their_workers(*args):
        batches = make_loaders(*args)
        for loader in (batches.train, batches.validation):
            loader.worker_init_fn = functools.partial(record_worker, str(started), loader.worker_init_fn)
        made.append(batches)
        return batches

    monkeypatch.setattr(wavenet.launch, "loaders", loaders_that_record_their_workers)
    train.main(TINY + ["-o", str(tmp_path / "w2"), "--workers", "2"])
    assert [(batches.train.num_workers, batches.validation.num_workers) for batches in made] == [(2, 2)]
    workers = os.listdir(started)  # two processes for each loader (they persist across epochs)
    assert len(workers) == 4 and str(os.getpid()) not in workers, workers
    in_process, with_workers = (read_log(tmp_path / w) for w in ("w0", "w2"))
    assert_finite(with_workers)
    assert [r["val_nll"] for r in with_workers] == [r["val_nll"] for r in in_process]


def test_compile_traces_the_training_step(tmp_path, monkeypatch):
    # a backend that runs what TorchDynamo captured as it is (what backend="eager" does), so the flag's
    # wiring is checked fast in every run; the real (inductor) build is the slow test below
    compiled, graph_calls = [], []
    compile_ = torch.compile

    def count_calls(graph, _example_inputs):
        def run(*args):
            graph_calls.append(graph)
            return graph.forward(*args)

        return run

    def compile_eagerly(model, **kwargs):
        compiled.append(model)
        return compile_(model, backend=count_calls, **kwargs)

    monkeypatch.setattr(torch, "compile", compile_eagerly)
    train.main(TINY + ["-o", str(tmp_path / "run"), "--compile"])
    log = read_log(tmp_path / "run")
    assert [type(model) for model in compiled] == [GatedPixelCNN]
    # every training step (and evaluation) ran the traced graph, not the model's own forward
    assert len(graph_calls) >= log[-1]["iteration"], (len(graph_calls), log[-1]["iteration"])
    assert_finite(log)


@pytest.mark.slow
def test_compile_with_inductor(tmp_path):
    # a cold inductor build of this tiny model took 145 s on a shared 2-core machine
    assert_finite(train_script(tmp_path / "run", "--compile"))
