"""The one training loop both trainers share: step, clipping, evaluation, logging, snapshots, resume.

What differs between Gated PixelCNN and WaveNet comes in as a `Task`; the loop
has no model-specific branches. Distributed runs (torchrun) shard the data with
DistributedSampler, and only rank 0 prints and writes files.
"""
import glob
import hashlib
import itertools
import json
import math
import os
import random
import signal
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm import tqdm

from . import checkpoint
from .errors import UserError
from .plots import plot_losses
from .stats import layer_statistics

LN2 = math.log(2.0)
SNAPSHOT_PREFIX = checkpoint.SNAPSHOT_PREFIX


@dataclass
class Task:
    """What the loop needs to know about one model.

    loss(model, batch) -> (nll_sum, items): the negative log-likelihood in nats
    summed over `items` scored items (images, audio samples) of the batch.
    dims: dimensions per item (C*H*W for an image, 1 for an audio sample), for bits/dim.
    name: prefix of model snapshots (`<name>_<iteration>`); meta: saved in them.
    """
    name: str
    loss: Callable
    dims: int
    meta: dict


@dataclass
class Settings:
    """Run settings the loop reads (the scripts fill them from their flags)."""
    out: str
    batchsize: int = 16
    epoch: int = 20
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    clip: float = 1.0
    snapshot_every: int = 0   # iterations between trainer snapshots; 0 = once per epoch
    log_every: int = 0        # iterations between extra log records (with --stats); 0 = per epoch
    stats: bool = False
    seed: int = 0
    workers: int = 0
    amp: bool = False
    compile: bool = False
    resume: str = ""


@dataclass
class TrainState:
    """Everything the loop counts; saved in every trainer snapshot."""
    iteration: int = 0
    epoch: int = 0                 # completed epochs
    batch_in_epoch: int = 0        # batches done in the current epoch (for mid-epoch resume)
    train_nll_sum: float = 0.0     # running sums of the current epoch
    train_items: int = 0
    best_metric: float = math.inf  # best validation nll so far
    elapsed: float = 0.0
    world_size: int = 1            # processes of the run (a mid-epoch resume needs the same shards)
    history: list = field(default_factory=list)


def seed_everything(seed):
    """Seed every generator a run draws from; call before building the model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup_distributed(device):
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); return (rank, world_size)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size


class ShardSampler(Sampler):
    """Every num_replicas-th index from `rank`, no padding: the shards cover the set exactly once.

    For evaluation. DistributedSampler pads shards to equal length by repeating indices, which would
    count those items twice in the summed validation nll. Unequal shards are fine there because
    evaluation runs the unwrapped model: no collective happens per batch.
    """

    def __init__(self, dataset, num_replicas, rank):
        self.indices = range(rank, len(dataset), num_replicas)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


class EpochSampler(DistributedSampler):
    """This rank's shard of a per-epoch shuffle (seeded by seed + epoch), able to start part-way."""

    skip = 0  # indices to leave out at the start, when resuming inside an epoch

    def __iter__(self):
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self):
        # a snapshot taken after an epoch's last batch, before its evaluation, skips the whole shard
        return max(super().__len__() - self.skip, 0)


def ignore_sigint(_worker_id):
    """DataLoader workers leave Ctrl-C to the main process, which snapshots and stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def rng_states():
    """All random generator states, as tensors and plain values (loadable with weights_only)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
            "python": random.getstate()}


def set_rng_states(states):
    """Restore what rng_states() saved."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(states["python"])


def data_fingerprint(train_set, val_set):
    """Sizes of the splits and a digest of which items validate: a resumed run must see the same data."""
    indices = getattr(val_set, "indices", None)  # a Subset's; a fixed test set has none
    digest = None if indices is None else hashlib.sha1(np.asarray(indices, np.int64).tobytes()).hexdigest()
    return {"train": len(train_set), "validation": len(val_set), "validation_items": digest}


class Trainer:
    """Trains `model` on `task` with Adam, L2-norm gradient clipping and weight decay."""

    def __init__(self, model, task, train_set, val_set, settings, device, run_args=None):
        self.model = model.to(device)
        self.task = task
        self.settings = settings
        self.device = device
        self.run_args = dict(run_args or {})
        owns_group = not dist.is_initialized()
        self.rank, self.world_size = setup_distributed(device)
        self.owns_group = owns_group and self.world_size > 1  # destroyed when fit() ends
        self.is_main = self.rank == 0
        if settings.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError(f"--amp: {torch.cuda.get_device_name(device)} has no bfloat16 support; "
                            "drop --amp")
        self.state = TrainState(world_size=self.world_size)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate,
                                          weight_decay=settings.weight_decay)
        net = model
        if self.world_size > 1:
            # static_graph: every step runs the same graph, so DDP finds once which parameters the
            # loss does not reach (it would otherwise wait for their gradients forever)
            net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          static_graph=True)
        self.net = torch.compile(net) if settings.compile else net
        self.sampler = EpochSampler(train_set, num_replicas=self.world_size, rank=self.rank,
                                    shuffle=True, seed=settings.seed)
        # pinned host memory lets step() copy batches with non_blocking=True; workers persist
        # across epochs, so a memory-mapped corpus is not opened again each epoch
        # Each new epoch's iterator draws a worker seed from `generator`; from the global generator
        # that draw would shift the RNG state a resumed run restores, so keep it apart.
        loading = dict(batch_size=settings.batchsize, num_workers=settings.workers,
                       pin_memory=device.type == "cuda", persistent_workers=settings.workers > 0,
                       worker_init_fn=ignore_sigint if settings.workers else None,
                       generator=torch.Generator().manual_seed(settings.seed))
        self.train_loader = DataLoader(train_set, sampler=self.sampler, **loading)
        self.val_loader = DataLoader(val_set, sampler=ShardSampler(val_set, self.world_size, self.rank),
                                     **loading)
        self.interrupted = False
        self.data = data_fingerprint(train_set, val_set)
        checkpoint.check_out_folder(settings.out, settings.resume, f"{task.name}_")
        if settings.resume:
            self.resume(settings.resume)

    # ---- snapshots -------------------------------------------------------------------------

    def trainer_snapshot(self, **state):
        """Everything a resume needs; `state` overrides fields of the TrainState."""
        snapshot = checkpoint.model_snapshot(self.model, self.task.meta)
        snapshot.update(optimizer=self.optimizer.state_dict(), state={**asdict(self.state), **state},
                        rng=rng_states(), args=self.run_args, data=self.data)
        return snapshot

    def save_trainer_snapshot(self):
        """Write snapshot_iter_<N> atomically, then remove older ones; returns its path.

        Only rank 0 writes and removes; every rank returns once the file is complete, so no rank
        can exit (and make torchrun stop rank 0) while it is being written.
        """
        path = os.path.join(self.settings.out, f"{SNAPSHOT_PREFIX}{self.state.iteration}")
        # the epoch's running sums of every rank; a resumed rank 0 carries them, the others start at 0
        nll_sum, items = self.all_sum(self.state.train_nll_sum, self.state.train_items)
        if self.is_main:
            checkpoint.save(path, self.trainer_snapshot(train_nll_sum=nll_sum, train_items=int(items)))
            for old in glob.glob(os.path.join(self.settings.out, SNAPSHOT_PREFIX + "*")):
                if os.path.basename(old) != os.path.basename(path) and not old.endswith(".tmp"):
                    os.remove(old)
            # temporary files of a run killed while saving (atomic_write names them .<name>.*.tmp)
            for stale in glob.glob(os.path.join(self.settings.out, f".{SNAPSHOT_PREFIX}*.tmp")):
                os.remove(stale)
        self.barrier()
        return path

    def load_snapshot(self, path):
        """checkpoint.load of `path` (or of a folder's newest snapshot), read by rank 0 and sent to all.

        Only rank 0 wrote the snapshots, so on several machines only its machine is sure to hold them.
        A UserError on rank 0 is raised on every rank.
        """
        if self.world_size == 1:
            return checkpoint.load(checkpoint.resolve(path, SNAPSHOT_PREFIX))
        message = [None]
        if self.is_main:
            try:
                message = [checkpoint.load(checkpoint.resolve(path, SNAPSHOT_PREFIX))]
            except UserError as e:
                message = [e]
        dist.broadcast_object_list(message, src=0, device=self.device)
        if isinstance(message[0], UserError):
            raise message[0]
        return message[0]

    def resume(self, path):
        snapshot = self.load_snapshot(path)
        if "optimizer" not in snapshot:
            raise UserError(f"--resume {path!r} is a model snapshot, not a trainer snapshot; "
                            f"pass {SNAPSHOT_PREFIX}<N> from the run's --out folder")
        checkpoint.check_resumable(snapshot, checkpoint.model_snapshot(self.model, self.task.meta), path)
        checkpoint.load_weights(self.model, snapshot["model"], f"--resume {path!r}")
        self.optimizer.load_state_dict(snapshot["optimizer"])
        for group in self.optimizer.param_groups:  # the flags of this run win over the snapshot's
            group.update(lr=self.settings.learning_rate, weight_decay=self.settings.weight_decay)
        self.check_same_data(snapshot, path)
        self.state = TrainState(**snapshot["state"])
        if self.rank:  # rank 0 carries the running sums of the epoch for all ranks
            self.state.train_nll_sum, self.state.train_items = 0.0, 0
        if self.state.epoch >= self.settings.epoch:
            raise UserError(f"--resume {path!r} has already trained {self.state.epoch} epoch(s); pass "
                            f"--epoch above {self.state.epoch} to train further")
        if self.state.batch_in_epoch:  # the rest of the epoch is found from these two: they must not change
            for flag, now in (("batchsize", self.settings.batchsize), ("seed", self.settings.seed)):
                then = snapshot.get("args", {}).get(flag, now)
                if then != now:
                    raise UserError(f"--resume {path!r} stopped inside an epoch of a run with --{flag} {then}; "
                                    f"pass --{flag} {then} to finish that epoch in the same order")
        if self.is_main and self.state.batch_in_epoch and self.state.world_size != self.world_size:
            warnings.warn(f"--resume {path!r} stopped inside an epoch of a {self.state.world_size}-process "
                          f"run; with {self.world_size} processes the shards differ, so the rest of that "
                          "epoch may repeat or skip some training items")
        self.state.world_size = self.world_size
        set_rng_states(snapshot["rng"])

    def check_same_data(self, snapshot, path):
        """UserError unless trainer `snapshot` was trained and validated on the items this run has."""
        then, now = snapshot.get("data", self.data), self.data  # earlier versions did not record it
        if (then["train"], then["validation"]) != (now["train"], now["validation"]):
            raise UserError(f"--resume {path!r} was trained on {then['train']} training and {then['validation']} "
                            f"validation items; this data gives {now['train']} and {now['validation']}: resume "
                            "with the data it was trained on, or start a new --out folder")
        if then.get("validation_items", now["validation_items"]) != now["validation_items"]:
            seed = snapshot.get("args", {}).get("seed", self.settings.seed)
            raise UserError(f"--resume {path!r} held out other validation items (the split follows --seed "
                            f"and the data); pass --seed {seed} and the data it was trained on")

    def save_model_snapshot(self):
        path = os.path.join(self.settings.out, f"{self.task.name}_{self.state.iteration}")
        checkpoint.save(path, checkpoint.model_snapshot(self.model, self.task.meta))
        return path

    # ---- the loop ----------------------------------------------------------------------------

    def fit(self):
        """Train until --epoch epochs are done; returns the history of per-epoch records."""
        # Ctrl-C, and SIGTERM from a scheduler pre-empting the job, both end with a snapshot
        previous = {sig: signal.signal(sig, self.on_sigint) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.owns_group:
                dist.destroy_process_group()
        return self.state.history

    def on_sigint(self, _signum, _frame):
        self.interrupted = True  # finish the current step, then snapshot and stop

    def loop(self):
        s, st = self.settings, self.state
        if self.is_main:
            self.print_header()
        start = time.time() - st.elapsed
        while st.epoch < s.epoch:
            self.sampler.set_epoch(st.epoch)
            self.sampler.skip = st.batch_in_epoch * s.batchsize
            bar = tqdm(self.train_loader, desc=f"epoch {st.epoch + 1}/{s.epoch}", leave=False,
                       initial=st.batch_in_epoch, total=st.batch_in_epoch + len(self.train_loader),
                       disable=not self.is_main, dynamic_ncols=True, mininterval=0.5)
            for batch in bar:
                nll_sum, items = self.step(batch)
                st.iteration += 1
                st.batch_in_epoch += 1
                st.train_nll_sum += nll_sum
                st.train_items += items
                st.elapsed = time.time() - start
                bar.set_postfix(bpd=f"{nll_sum / (items * self.task.dims * LN2):.3f}", refresh=False)
                if s.log_every and st.iteration % s.log_every == 0:
                    all_nll, all_items = self.all_sum(nll_sum, items)
                    self.record(extra={"train_bits_per_dim": all_nll / (all_items * self.task.dims * LN2)})
                if s.snapshot_every and st.iteration % s.snapshot_every == 0:
                    self.save_trainer_snapshot()
                # Ctrl-C reaches the ranks at different steps: all stop at the first step any saw it
                if self.any_rank(self.interrupted):
                    path = self.save_trainer_snapshot()
                    raise UserError(f"interrupted at iteration {st.iteration}; resume with --resume {path}")
            bar.close()
            self.end_epoch(time.time() - start)

    def step(self, batch):
        """One optimisation step; returns this rank's (nll_sum, items) of the batch."""
        batch = [t.to(self.device, non_blocking=True) for t in batch]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.amp):
            nll_sum, items = self.task.loss(self.net, batch)
        loss = nll_sum / (items * self.task.dims)  # mean nll per dimension, in nats
        # the mean over ranks, so every rank takes the same branch: one that raised alone would
        # leave the others waiting in the gradient all-reduce
        mean_loss = self.all_sum(loss.item())[0] / self.world_size
        if not math.isfinite(mean_loss):
            last = checkpoint.newest(self.settings.out, SNAPSHOT_PREFIX)
            advice = (f"resume from the last snapshot, {last}, with" if last else "no snapshot was written yet: "
                      "start again with")
            raise UserError(f"the loss became {mean_loss} at iteration {self.state.iteration + 1}; {advice} "
                            "a smaller --learning_rate or --clip")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.settings.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip)
        self.optimizer.step()
        return nll_sum.item(), items

    @torch.no_grad()
    def evaluate(self):
        """Validation (nll_sum, items) over this rank's shard, in eval mode."""
        self.model.eval()
        nll_sum, items = 0.0, 0
        for batch in tqdm(self.val_loader, desc="validation", leave=False, disable=not self.is_main,
                          dynamic_ncols=True):
            batch = [t.to(self.device, non_blocking=True) for t in batch]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.amp):
                batch_sum, batch_items = self.task.loss(self.model, batch)
            nll_sum += batch_sum.item()
            items += batch_items
        self.model.train()
        return nll_sum, items

    def any_rank(self, flag):
        """True on every rank if `flag` is true on any rank (the flag itself in a single process)."""
        if self.world_size == 1:
            return bool(flag)
        return self.all_sum(float(bool(flag)))[0] > 0

    def barrier(self):
        """Wait until every rank gets here (nothing in a single process)."""
        if self.world_size > 1:
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def all_sum(self, *values):
        """Sum plain numbers over all ranks (identity in a single process)."""
        if self.world_size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return tuple(t.tolist())

    def end_epoch(self, elapsed):
        st = self.state
        val_sum, val_items = self.evaluate()
        train_sum, train_items, val_sum, val_items = self.all_sum(
            st.train_nll_sum, st.train_items, val_sum, val_items)
        st.epoch += 1
        st.batch_in_epoch = 0
        st.train_nll_sum, st.train_items = 0.0, 0
        st.elapsed = elapsed
        dims = self.task.dims
        record = {"epoch": st.epoch, "iteration": st.iteration,
                  "train_nll": train_sum / max(train_items, 1),
                  "val_nll": val_sum / max(val_items, 1),
                  "train_bits_per_dim": train_sum / (max(train_items, 1) * dims * LN2),
                  "val_bits_per_dim": val_sum / (max(val_items, 1) * dims * LN2)}
        improved = record["val_nll"] < st.best_metric
        st.best_metric = min(st.best_metric, record["val_nll"])
        self.record(record)
        if self.is_main:
            self.print_row(st.history[-1])
            if improved:
                self.save_model_snapshot()
        if not self.settings.snapshot_every or st.epoch == self.settings.epoch:
            self.save_trainer_snapshot()  # and always at the end, to go on with a larger --epoch

    def record(self, values=None, extra=None):
        """Append a log record (rank 0 writes log.json and the loss plot)."""
        st = self.state
        record = dict(values or {"epoch": st.epoch, "iteration": st.iteration, **(extra or {})})
        record.update(elapsed=round(st.elapsed, 3), learning_rate=self.optimizer.param_groups[0]["lr"])
        if self.settings.stats:
            # weights after the last step, gradients of the last step (cleared only by the next one)
            record["stats"] = layer_statistics(self.model)
        st.history.append(record)
        if self.is_main:
            path = os.path.join(self.settings.out, "log.json")
            text = json.dumps(st.history, indent=1).encode()
            checkpoint.atomic_write(path, lambda f: f.write(text))
            plot_losses(st.history, os.path.join(self.settings.out, "loss.png"))

    def print_header(self):
        tqdm.write(f"{'epoch':>5} {'iteration':>9} {'train/nll':>10} {'val/nll':>10} "
                   f"{'train/bpd':>9} {'val/bpd':>9} {'elapsed':>8}")

    def print_row(self, r):
        tqdm.write(f"{r['epoch']:>5} {r['iteration']:>9} {r['train_nll']:>10.4f} {r['val_nll']:>10.4f} "
                   f"{r['train_bits_per_dim']:>9.4f} {r['val_bits_per_dim']:>9.4f} {r['elapsed']:>7.1f}s")
