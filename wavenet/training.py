"""The training loop both trainers share: step, clipping, evaluation, epoch records, snapshot cadence, TensorBoard.

What differs between Gated PixelCNN and WaveNet comes in as a `Task`; the loop has no
model-specific branches. It is handed its optimizer, data loaders, run folder and process group
(`launch.build_trainer` makes them from the run's `launch.Settings`), and keeps everything it
counts in a `TrainState`, saved with every trainer snapshot together with the random generators'
states, so a resumed run goes on exactly where it stopped.
"""

import math
import random
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from . import checkpoint
from .errors import Stopped, UserError
from .objectives import LN2, bits_per_dim, epoch_metrics
from .report import HEADER, progress, table_row
from .sampling import inference
from .stats import layer_statistics
from .tensorboard_log import TensorBoardLog


@dataclass
class Task:
    """What the loop needs to know about one model.

    loss(model, batch) -> (nll_sum, items): the negative log-likelihood in nats
    summed over `items` scored items (images, audio samples) of the batch.
    dims: dimensions per item (C*H*W for an image, 1 for an audio sample), for bits/dim.
    meta: what a model snapshot records besides the config (data set, levels, sizes).
    sample(model) -> tensorboard_log.Images or Audio (or None): what --tensorboard shows at each epoch's
    end (sample None: nothing); it must leave the global random generators alone.
    """

    loss: Callable
    dims: int
    meta: dict
    sample: Callable | None = None


@dataclass
class TrainState:
    """Everything the loop counts; saved in every trainer snapshot."""

    iteration: int = 0
    epoch: int = 0  # completed epochs
    batch_in_epoch: int = 0  # batches done in the current epoch (for mid-epoch resume)
    train_nll_sum: float = 0.0  # running sums of the current epoch
    train_items: int = 0
    best_metric: float = math.inf  # best validation nll so far
    elapsed: float = 0.0
    world_size: int = 1  # processes of the run (a mid-epoch resume needs the same shards)
    history: list = field(default_factory=list)


def seed_everything(seed):
    """Seed every generator a run draws from; call before building the model."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_states():
    """All random generator states, as tensors and plain values (loadable with weights_only)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_states(states):
    """Restore what rng_states() saved."""
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available():
        # a run resumed where fewer GPUs are visible restores the devices there are (set_rng_state_all
        # would fail on the first missing one); each process trains on one device anyway
        for device, state in enumerate(states["cuda"][: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(state, device)
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(states["python"])


class Trainer:
    """Trains `model` on `task` with `optimizer` (Adam with weight decay) and L2-norm gradient clipping.

    net: the model as the step runs it (wrapped in DDP and/or compiled); loaders: distributed.Loaders;
    folder: run_folder.RunFolder; group: distributed.Group; settings: launch.Settings. Only the main
    process prints and writes.
    """

    def __init__(self, model, task, optimizer, loaders, folder, group, settings, net=None):
        self.model, self.task, self.optimizer = model, task, optimizer
        self.net = model if net is None else net
        self.loaders, self.folder, self.group, self.settings = loaders, folder, group, settings
        self.device = group.device
        self.state = TrainState(world_size=group.world_size)
        self.interrupted = 0  # the signal that asked the run to stop (Ctrl-C, SIGTERM); 0: none
        self.board = None  # the TensorBoardLog of --tensorboard while fit runs (main process)
        # float16 gradients underflow to 0 unless the loss is scaled up first; bfloat16 has float32's
        # range and needs no scaling. A disabled scaler passes everything through unchanged.
        scaled = settings.amp and settings.amp_dtype == "float16"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=scaled)

    def restore(self, snapshot, source):
        """Go on from trainer `snapshot` (checked by RunFolder.check_resume; `source` names it in errors)."""
        checkpoint.load_weights(self.model, snapshot["model"], source)
        self.optimizer.load_state_dict(snapshot["optimizer"])
        for group in self.optimizer.param_groups:  # the flags of this run win over the snapshot's
            group.update(lr=self.settings.learning_rate, weight_decay=self.settings.weight_decay)
        self.state = TrainState(**{**snapshot["state"], "world_size": self.group.world_size})
        if self.group.rank:  # rank 0 carries the running sums of the epoch for all ranks
            self.state.train_nll_sum, self.state.train_items = 0.0, 0
        set_rng_states(snapshot["rng"])
        if snapshot.get("scaler"):  # the loss scale a float16 run had reached
            self.scaler.load_state_dict(snapshot["scaler"])

    def fit(self):
        """Train until --epoch epochs are done; returns the history of per-epoch records."""
        # Ctrl-C and SIGTERM (a scheduler pre-empting the job) set a flag: the step ends, then a snapshot
        previous = {sig: signal.signal(sig, self.on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            if self.settings.tensorboard and self.group.is_main:
                # the steps after the restored iteration are this process's to write
                self.board = TensorBoardLog(self.folder.out, purge_step=self.state.iteration + 1)
            self.loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if self.board is not None:
                self.board.close()
                self.board = None
            self.group.close()
        return self.state.history

    def on_signal(self, signum, _frame):
        self.interrupted = signum

    def loop(self):
        s, st, dims = self.settings, self.state, self.task.dims
        if self.group.is_main:
            tqdm.write(HEADER)
        start = time.time() - st.elapsed
        while st.epoch < s.epoch:
            self.loaders.sampler.set_epoch(st.epoch)
            self.loaders.sampler.skip = st.batch_in_epoch * s.batchsize
            total = st.batch_in_epoch + len(self.loaders.train)
            bar = progress(self.loaders.train, self.group, f"epoch {st.epoch + 1}/{s.epoch}", st.batch_in_epoch, total)
            for batch in bar:
                nll_sum, items = self.step(batch)
                st.iteration += 1
                st.batch_in_epoch += 1
                st.train_nll_sum += nll_sum
                st.train_items += items
                st.elapsed = time.time() - start
                bar.set_postfix(bpd=f"{bits_per_dim(nll_sum, items, dims):.3f}", refresh=False)
                if s.log_every and st.iteration % s.log_every == 0:
                    self.record(train_bits_per_dim=bits_per_dim(*self.group.all_sum(nll_sum, items), dims))
                    self.write_log()
                    if self.board is not None and s.stats:
                        self.board.histograms(self.model, st.iteration)
                # (the epoch's last step is left to end_epoch, which snapshots that iteration anyway)
                if s.snapshot_every and st.iteration % s.snapshot_every == 0 and st.batch_in_epoch < total:
                    self.save_trainer_snapshot()
                # Ctrl-C reaches the ranks at different steps: all stop at the first step any saw it
                if self.group.any(bool(self.interrupted)):
                    path = self.save_trainer_snapshot()
                    # the snapshot holds the weights, not the data or --out flags: the same command goes on
                    raise Stopped(
                        f"interrupted at iteration {st.iteration}; to go on, run the same command with --resume {path}",
                        self.interrupted or signal.SIGINT,  # a rank the signal did not reach stops as if Ctrl-C
                    )
            bar.close()
            self.end_epoch(time.time() - start)

    def step(self, batch):
        """One optimisation step; returns this rank's (nll_sum, items) of the batch."""
        nll_sum, items = self.nll(self.net, batch)
        loss = nll_sum / (items * self.task.dims)  # mean nll per dimension, in nats
        # the mean over ranks, so every rank takes the same branch: one that raised alone would
        # leave the others waiting in the gradient all-reduce
        mean_loss = self.group.all_sum(loss.item())[0] / self.group.world_size
        if not math.isfinite(mean_loss):
            raise diverged(mean_loss, self.state.iteration + 1, self.folder.last_trainer_snapshot())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)  # clipping and the logged norm see the true gradients
        grad_norm = None  # of all gradients before clipping
        if self.settings.clip > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.clip)
        if self.board is not None:
            if grad_norm is None:
                grad_norm = torch.nn.utils.get_total_norm(
                    [p.grad for p in self.model.parameters() if p.grad is not None]
                )
            lr = self.optimizer.param_groups[0]["lr"]
            self.board.step(self.state.iteration + 1, mean_loss / LN2, grad_norm.item(), lr)
        self.scaler.step(self.optimizer)  # skipped (and the scale lowered) when a float16 gradient overflowed
        self.scaler.update()
        return nll_sum.item(), items

    def nll(self, net, batch):
        """The task's (nll_sum, items) of `batch` under `net` on this device (autocast in --amp_dtype with --amp)."""
        batch = [t.to(self.device, non_blocking=True) for t in batch]
        dtype = getattr(torch, self.settings.amp_dtype)
        with torch.autocast(self.device.type, dtype=dtype, enabled=self.settings.amp):
            return self.task.loss(net, batch)

    def evaluate(self):
        """Validation (nll_sum, items) over this rank's shard, in eval mode without gradients."""
        nll_sum, items = 0.0, 0
        with inference(self.model):
            for batch in progress(self.loaders.validation, self.group, "validation"):
                batch_sum, batch_items = self.nll(self.model, batch)
                nll_sum += batch_sum.item()
                items += batch_items
        return nll_sum, items

    def end_epoch(self, elapsed):
        """Evaluate and record the epoch; write its model snapshot (if validation improved), its trainer
        snapshot (at every epoch end, so the log never lists an epoch whose weights are not on disk:
        a snapshot that fails leaves the log as it was), and only then log.json, loss.png and the
        epoch's TensorBoard events (so that a resume, which goes on after that snapshot, never
        writes them twice)."""
        s, st, dims = self.settings, self.state, self.task.dims
        train_sum, train_items, val_sum, val_items = self.group.all_sum(
            st.train_nll_sum, st.train_items, *self.evaluate()
        )
        st.epoch, st.elapsed = st.epoch + 1, elapsed
        st.batch_in_epoch, st.train_nll_sum, st.train_items = 0, 0.0, 0
        metrics = epoch_metrics(train_sum, train_items, val_sum, val_items, dims)
        improved = metrics["val_nll"] < st.best_metric
        st.best_metric = min(st.best_metric, metrics["val_nll"])
        written = self.folder.model_snapshot_name(st.iteration) if improved else None
        self.record(**metrics, model_snapshot=written)
        if self.group.is_main:
            if improved:
                self.folder.save_model_snapshot(checkpoint.model_snapshot(self.model, self.task.meta), st.iteration)
            tqdm.write(table_row(st.history[-1]))
        self.save_trainer_snapshot()
        self.write_log()
        if self.board is not None:
            self.board.epoch(st.iteration, metrics)
            if s.stats:
                self.board.histograms(self.model, st.iteration)
            drawn = None if self.task.sample is None else self.task.sample(self.model)
            if drawn is not None:
                self.board.sample(drawn, st.iteration)

    def record(self, **values):
        """Append a log record to the history: epoch, iteration, `values`, time, learning rate and --stats."""
        st, lr = self.state, self.optimizer.param_groups[0]["lr"]
        record = dict(epoch=st.epoch, iteration=st.iteration, **values, elapsed=round(st.elapsed, 3), learning_rate=lr)
        if self.settings.stats:
            # weights after the last step, gradients of the last step (cleared only by the next one)
            record["stats"] = layer_statistics(self.model)
        self.state.history.append(record)

    def write_log(self):
        """Rewrite log.json and loss.png with the history so far (the main process)."""
        if self.group.is_main:
            self.folder.write_log(self.state.history)

    def save_trainer_snapshot(self):
        """Write snapshot_iter_<N> (the main process; older ones go); every rank returns its path once complete,
        so no rank can exit (and make torchrun stop rank 0) while it is being written."""
        # the epoch's running sums of every rank; a resumed rank 0 carries them, the others start at 0
        nll_sum, items = self.group.all_sum(self.state.train_nll_sum, self.state.train_items)
        if self.group.is_main:
            state = {**asdict(self.state), "train_nll_sum": nll_sum, "train_items": int(items)}
            snapshot = checkpoint.model_snapshot(self.model, self.task.meta)
            snapshot.update(optimizer=self.optimizer.state_dict(), state=state, rng=rng_states())
            snapshot.update(scaler=self.scaler.state_dict())  # {} unless --amp_dtype float16
            self.folder.save_trainer_snapshot(snapshot, self.state.iteration)
        self.group.barrier()
        return self.folder.trainer_snapshot_path(self.state.iteration)


def diverged(loss, iteration, last_snapshot):
    """The UserError for a loss that became nan or inf, naming the snapshot to resume from."""
    advice = (
        f"resume from the last snapshot, {last_snapshot}, with"
        if last_snapshot
        else "no snapshot was written yet: start again with"
    )
    return UserError(f"the loss became {loss} at iteration {iteration}; {advice} a smaller --learning_rate or --clip")
