"""Data-parallel runs under torchrun: the process group, data shards and the collectives the loop needs.

torchrun describes each process by RANK, LOCAL_RANK and WORLD_SIZE; `environment` reads them,
and nothing else does. Run alone (no torchrun), every helper here is the identity: one process,
rank 0, no collectives.
"""

import itertools
import os
import signal
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from .errors import UserError


@dataclass(frozen=True)
class Environment:
    """What torchrun says about this process; a single process is rank 0 of 1 with no local rank."""

    rank: int = 0
    world_size: int = 1
    local_rank: int | None = None  # the GPU of this process on its machine


def environment():
    """This process's place in the run, read from torchrun's RANK, WORLD_SIZE and LOCAL_RANK."""
    local = os.environ.get("LOCAL_RANK")
    return Environment(
        rank=int(os.environ.get("RANK", "0")),
        world_size=int(os.environ.get("WORLD_SIZE", "1")),
        local_rank=None if local is None else int(local),
    )


class Group:
    """The processes of one run, as the training loop sees them: rank, size and collectives.

    Joins the process group torchrun describes (unless the caller already did); `close` leaves it
    again if this object joined it.
    """

    def __init__(self, device):
        self.device = device
        self.world_size = environment().world_size
        self.owns_group = self.world_size > 1 and not dist.is_initialized()
        if self.owns_group:
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        self.rank = dist.get_rank() if self.world_size > 1 else 0
        self.is_main = self.rank == 0  # the one process that prints and writes files

    def close(self):
        if self.owns_group:
            dist.destroy_process_group()

    def all_sum(self, *values):
        """Sum plain numbers over all ranks (identity in a single process)."""
        if self.world_size == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return tuple(t.tolist())

    def any(self, flag):
        """True on every rank if `flag` is true on any rank (the flag itself in a single process)."""
        if self.world_size == 1:
            return bool(flag)
        return self.all_sum(float(bool(flag)))[0] > 0

    def barrier(self):
        """Wait until every rank gets here (nothing in a single process)."""
        if self.world_size > 1:
            dist.barrier(device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def from_main(self, compute):
        """compute() on rank 0, its result sent to every rank; a UserError there is raised on every rank.

        For files only rank 0 wrote: on several machines only its machine is sure to hold them.
        """
        if self.world_size == 1:
            return compute()
        message = [None]
        if self.is_main:
            try:
                message = [compute()]
            except UserError as e:
                message = [e]
        dist.broadcast_object_list(message, src=0, device=self.device)
        if isinstance(message[0], UserError):
            raise message[0]
        return message[0]

    def wrap(self, model):
        """The model as the loop runs it: in DistributedDataParallel when there are several processes."""
        if self.world_size == 1:
            return model
        # static_graph: every step runs the same graph, so DDP finds once which parameters the
        # loss does not reach (it would otherwise wait for their gradients forever)
        return DistributedDataParallel(
            model, device_ids=[self.device.index] if self.device.type == "cuda" else None, static_graph=True
        )


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


class Loaders(NamedTuple):
    """This rank's batches: train (shuffled per epoch by `sampler`) and validation (a fixed shard)."""

    train: DataLoader
    validation: DataLoader
    sampler: EpochSampler


def ignore_sigint(_worker_id):
    """DataLoader workers leave Ctrl-C to the main process, which snapshots and stops."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def loaders(train_set, val_set, group, batchsize, workers, seed):
    """DataLoaders over this rank's shards of both sets."""
    sampler = EpochSampler(train_set, num_replicas=group.world_size, rank=group.rank, shuffle=True, seed=seed)
    # pinned host memory lets the loop copy batches with non_blocking=True; workers persist
    # across epochs, so a memory-mapped corpus is not opened again each epoch.
    # Each new epoch's iterator draws a worker seed from `generator`; from the global generator
    # that draw would shift the RNG state a resumed run restores, so keep it apart.
    loading = dict(
        batch_size=batchsize,
        num_workers=workers,
        pin_memory=group.device.type == "cuda",
        persistent_workers=workers > 0,
        worker_init_fn=ignore_sigint if workers else None,
        generator=torch.Generator().manual_seed(seed),
    )
    return Loaders(
        DataLoader(train_set, sampler=sampler, **loading),
        DataLoader(val_set, sampler=ShardSampler(val_set, group.world_size, group.rank), **loading),
        sampler,
    )
