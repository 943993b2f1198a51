"""Data-parallel training: gloo processes on the CPU act as one process given their combined batch.

The torchrun tests start the scripts as a user would. The other tests run two processes from here
(torch.multiprocessing) through the real Trainer, so that they can compare one step with a single
process and make one rank alone see Ctrl-C.
"""

import datetime
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from helpers import ROOT, TINY_PIXELCNN, read_log, write_tone
from torch.utils.data import TensorDataset

from wavenet import GatedPixelCNN, checkpoint, receptive_field
from wavenet.errors import UserError
from wavenet.features import MelSettings
from wavenet.launch import Settings, build_trainer
from wavenet.objectives import pixelcnn_nll
from wavenet.preprocessing import preprocess
from wavenet.training import Task, seed_everything

TINY_RUN = [*TINY_PIXELCNN, "-b", "32", "--learning_rate", "0.01"]
LEVELS, BATCH, VAL_ITEMS = 4, 8, 7  # 7 validation items: two shards cannot split them evenly


def torchrun(script, *args, processes=2):
    """Run `torchrun --standalone --nproc_per_node=<processes> script args` on the CPU; returns stdout."""
    env = {name: value for name, value in os.environ.items() if name != "WORLD_SIZE"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={processes}",
            os.path.join(ROOT, script),
            *map(str, args),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return result.stdout


def table_rows(stdout):
    """The lines of the printed epoch table (header included)."""
    return [
        line
        for line in stdout.splitlines()
        if line.split() and (line.split()[0] in ("epoch",) or line.split()[0].isdigit())
    ]


def test_two_processes_train_log_once_and_resume(tmp_path):
    out = tmp_path / "run"
    first = torchrun("train.py", *TINY_RUN, "-e", "1", "-o", out)
    assert len(table_rows(first)) == 2, first  # one header and one row: only rank 0 prints
    files = sorted(os.listdir(out))
    # 1438 training images in shards of 719 per process, 32 per batch: 23 steps
    assert files == ["log.json", "loss.png", "pixelcnn_23", "snapshot_iter_23"], files

    second = torchrun("train.py", *TINY_RUN, "-e", "2", "-o", out, "--resume", out)
    assert len(table_rows(second)) == 2, second
    assert sorted(os.listdir(out)) == ["log.json", "loss.png", "pixelcnn_23", "pixelcnn_46", "snapshot_iter_46"]
    log = read_log(out)
    assert [(r["epoch"], r["iteration"]) for r in log] == [(1, 23), (2, 46)]
    assert log[1]["train_nll"] < log[0]["train_nll"] and log[1]["val_nll"] < log[0]["val_nll"]
    assert log[1]["val_bits_per_dim"] < 0.9 * math.log2(LEVELS)  # below a uniform guess


# train_wavenet.py whose DataLoaders say, per rank, how many workers they have (rank_<r>: "train val"), and
# whose workers each leave a file worker_<pid> as they start: in the folder $RECORD_WORKERS
RECORDING_WORKERS = """
import functools, os, runpy, sys
sys.path.insert(0, {root!r})
import wavenet.launch
folder, make_loaders = os.environ["RECORD_WORKERS"], wavenet.launch.loaders
def started(init, worker_id):
    open(os.path.join(folder, f"worker_{{os.getpid()}}"), "w").close()
    if init is not None:
        init(worker_id)
def loaders(*args):
    made = make_loaders(*args)
    for loader in (made.train, made.validation):
        loader.worker_init_fn = functools.partial(started, loader.worker_init_fn)
    with open(os.path.join(folder, "rank_" + os.environ["RANK"]), "w") as f:
        f.write(f"{{made.train.num_workers}} {{made.validation.num_workers}}")
    return made
wavenet.launch.loaders = loaders
runpy.run_path(os.path.join({root!r}, "train_wavenet.py"), run_name="__main__")
"""


def test_two_processes_train_wavenet_with_loader_workers(tmp_path, monkeypatch):
    """Speaker and local (log-mel) conditioning together: each worker reopens the codes and the features."""
    stacks, layers, target = 1, 3, 100
    write_tone(tmp_path / "wav48" / "p225" / "a.wav", 0.5, 8000, 300.0)
    write_tone(tmp_path / "wav48" / "p226" / "b.wav", 0.5, 8000, 500.0)
    field = receptive_field(stacks, layers)
    data = tmp_path / "corpus"
    mel = MelSettings.for_rate(8000, 8, hop=50)
    preprocess(str(tmp_path / "wav48"), str(data), 8000, field + target, receptive_field=field, mel=mel)
    out = tmp_path / "run"
    model = ["--hidden_dim", "4", "--out_hidden_dim", "4", "-s", stacks, "-l", layers]
    run = ["-b", "4", "-e", "1", "--val_fraction", "0.25", "--workers", "2", "-o", out]
    script, recorded = tmp_path / "train_wavenet_recording_workers.py", tmp_path / "recorded"
    script.write_text(RECORDING_WORKERS.format(root=ROOT))
    recorded.mkdir()
    monkeypatch.setenv("RECORD_WORKERS", str(recorded))
    stdout = torchrun(str(script), "-d", data, *model, *run)
    assert len(table_rows(stdout)) == 2, stdout
    assert "local conditioning on 8 log-mel bands, hop 50 samples" in stdout, stdout
    ranks = {name: (recorded / name).read_text() for name in os.listdir(recorded) if name.startswith("rank_")}
    assert ranks == {"rank_0": "2 2", "rank_1": "2 2"}, ranks
    # each rank's two loaders started two processes each
    assert len([name for name in os.listdir(recorded) if name.startswith("worker_")]) == 8
    log = read_log(out)
    assert len(log) == 1 and math.isfinite(log[0]["val_nll"]) and math.isfinite(log[0]["train_nll"])
    assert [f for f in os.listdir(out) if f.startswith("snapshot_iter_")] == [f"snapshot_iter_{log[0]['iteration']}"]


def tiny_trainer(out, epoch=1):
    """The same seeded Gated PixelCNN and data in every process.

    clip=0: Adam's first step hardly depends on the gradient's scale and clipping rescales it,
    so without clipping the compared gradients show whether DDP averaged (not summed) them.
    """
    seed_everything(0)
    model = GatedPixelCNN(3, 8, 1, 8, LEVELS, num_classes=10)
    g = torch.Generator().manual_seed(1)
    q = torch.randint(0, LEVELS, (BATCH + VAL_ITEMS, 3, 8, 8), generator=g).to(torch.uint8)
    labels = torch.randint(0, 10, (BATCH + VAL_ITEMS,), generator=g)
    train_set, val_set = TensorDataset(q[:BATCH], labels[:BATCH]), TensorDataset(q[BATCH:], labels[BATCH:])
    task = Task(loss=pixelcnn_nll(LEVELS), dims=3 * 8 * 8, meta={})
    os.makedirs(out, exist_ok=True)
    settings = Settings(out=str(out), batchsize=2, clip=0.0, epoch=epoch)
    return build_trainer(model, task, train_set, val_set, settings, torch.device("cpu")), train_set.tensors


def one_step(trainer, batch):
    """One Trainer step on `batch`; the weights after it, the gradients of it and the validation sums."""
    trainer.step(batch)
    val_sum, val_items = trainer.group.all_sum(*trainer.evaluate())
    return {
        "weights": {k: v.clone() for k, v in trainer.model.state_dict().items()},
        "grads": {k: p.grad.clone() for k, p in trainer.model.named_parameters()},
        "val": (val_sum, val_items),
    }


def rank_worker(rank, world, init_file, out):
    """Rank `rank` of `world`, through the real Trainer:

    1. one step on its share of the fixed batch; weights, gradients, validation sums -> out/rank<r>.pt
    2. a run in which only rank 1 sees Ctrl-C, during step 3; how fit() ended -> out/stop<r>.txt
    """
    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60)
    )
    try:
        trainer, (q, labels) = tiny_trainer(out)
        share = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
        torch.save(one_step(trainer, [q[share], labels[share]]), os.path.join(out, f"rank{rank}.pt"))

        trainer, _ = tiny_trainer(os.path.join(out, "stopped"), epoch=5)
        if rank == 1:
            step = trainer.step

            def ctrl_c_during_step_3(batch):
                trainer.interrupted = signal.SIGINT if trainer.state.iteration + 1 == 3 else 0
                return step(batch)

            trainer.step = ctrl_c_during_step_3
        try:
            trainer.fit()
            ending = "finished"
        except UserError as e:
            ending = str(e)
        with open(os.path.join(out, f"stop{rank}.txt"), "w") as f:
            f.write(ending)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run rank_worker in two gloo processes; their output folder."""
    out = tmp_path_factory.mktemp("ranks")
    ranks = mp.spawn(rank_worker, args=(2, str(out / "init"), str(out)), nprocs=2, join=False)
    deadline = time.monotonic() + 180
    while not ranks.join(timeout=1):
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail("the two ranks did not finish: one waits in a collective the other skipped")
    return out


def test_two_process_step_equals_one_process_on_the_combined_batch(two_ranks, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    trainer, (q, labels) = tiny_trainer(two_ranks / "single")
    initial = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    single = one_step(trainer, [q, labels])
    for rank in range(2):
        ranked = torch.load(two_ranks / f"rank{rank}.pt", weights_only=True)
        for name in ("grads", "weights"):
            for key, value in single[name].items():
                torch.testing.assert_close(ranked[name][key], value, msg=f"rank {rank} {name} {key}")
        # every validation item counted once (DistributedSampler's padding would give 8)
        assert ranked["val"][1] == VAL_ITEMS == single["val"][1]
        assert math.isclose(ranked["val"][0], single["val"][0], rel_tol=1e-6)
    assert any(not torch.equal(initial[k], single["weights"][k]) for k in initial), "the step changed nothing"


def test_ctrl_c_on_one_rank_stops_all_at_the_same_step(two_ranks):
    endings = [(two_ranks / f"stop{rank}.txt").read_text() for rank in range(2)]
    snapshot = str(two_ranks / "stopped" / "snapshot_iter_3")
    assert endings == [f"interrupted at iteration 3; to go on, run the same command with --resume {snapshot}"] * 2
    # the snapshot carries the running sums of both ranks: 2 processes x batch 2 per step of the epoch
    state = checkpoint.load(snapshot)["state"]
    assert state["batch_in_epoch"] == 1 and state["train_items"] == 1 * 2 * 2
    assert sorted(f for f in os.listdir(two_ranks / "stopped") if f.startswith("snapshot_iter_")) == ["snapshot_iter_3"]
