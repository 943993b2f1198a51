"""Putting one training run together: processes, optimizer, data loaders, run folder and resume, then the loop.

Both trainers call `train`; tests that need a Trainer without running it call `build_trainer`.
"""

from dataclasses import dataclass

import torch

from . import checkpoint
from .distributed import Group, loaders
from .errors import UserError
from .registry import kind_of
from .run_folder import RunFolder, data_fingerprint
from .training import Trainer


@dataclass
class Settings:
    """Run settings: the one source of the training flags' defaults (cli.add_training_flags reads them)."""

    out: str = "result"
    batchsize: int = 16
    epoch: int = 20
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    clip: float = 1.0
    snapshot_every: int = 0  # iterations between trainer snapshots besides the one at each epoch end; 0: none
    log_every: int = 0  # iterations between extra log records (with --stats); 0 = per epoch
    stats: bool = False
    seed: int = 0
    workers: int = 0
    amp: bool = False
    amp_dtype: str = "bfloat16"  # of --amp's autocast: "bfloat16", or "float16" with a gradient scaler
    compile: bool = False
    resume: str = ""
    keep: int = 0  # model snapshots kept (the newest, which are the best); 0: all, as the original
    tensorboard: bool = False


def build_trainer(model, task, train_set, val_set, settings, device, run_args=None):
    """A Trainer for `model` on `task` (training.Task) with `settings` (Settings), resumed if asked.

    run_args: every flag of the run, saved in trainer snapshots. Joins the torchrun process group
    when there is one; the folder settings.out must exist.
    """
    model = model.to(device)
    group = Group(device)
    if settings.amp_dtype != Settings.amp_dtype and not settings.amp:
        raise UserError(f"--amp_dtype {settings.amp_dtype} acts only with --amp: add --amp, or drop --amp_dtype")
    bfloat16 = settings.amp and settings.amp_dtype == "bfloat16"
    if bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise UserError(
            f"--amp: {torch.cuda.get_device_name(device)} has no bfloat16 support; add --amp_dtype float16 "
            "(autocast in float16 with a gradient scaler), or drop --amp"
        )
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay)
    net = group.wrap(model)
    net = torch.compile(net) if settings.compile else net
    batches = loaders(train_set, val_set, group, settings.batchsize, settings.workers, settings.seed)
    folder = RunFolder(settings.out, kind_of(model), run_args, data_fingerprint(train_set, val_set), settings.keep)
    folder.check_new_or_resumed(settings.resume)
    trainer = Trainer(model, task, optimizer, batches, folder, group, settings, net)
    if settings.resume:
        snapshot = group.from_main(lambda: folder.load_resume(settings.resume))
        folder.check_resume(snapshot, checkpoint.model_snapshot(model, task.meta), settings, group, settings.resume)
        trainer.restore(snapshot, f"--resume {settings.resume!r}")
    return trainer


def train(model, task, train_set, val_set, settings, device, run_args=None):
    """Build the run (see build_trainer) and train it to settings.epoch; returns the per-epoch history."""
    return build_trainer(model, task, train_set, val_set, settings, device, run_args).fit()
