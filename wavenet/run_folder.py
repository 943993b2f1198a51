"""A training run's --out folder: one run per folder, its snapshots and logs, and what a resume must match.

The folder holds log.json and loss.png (rewritten after every record), the model snapshots
<prefix><N> written when the validation nll improves (all of them, or with --keep N the N newest,
which are the N best), the newest trainer snapshot snapshot_iter_<N> (older ones are removed once a
newer one is complete), and with --tensorboard the run's event files; while a script's run writes
it, also files.LOCK_FILE (see files.folder_lock), which is no part of the run.
"""

import glob
import hashlib
import json
import os
import re
import warnings

import numpy as np

from . import checkpoint
from .errors import UserError
from .files import atomic_write, newest
from .plots import plot_losses
from .registry import KINDS, TRAINER_SNAPSHOT


def data_fingerprint(train_set, val_set):
    """Sizes of the splits and a digest of which items validate: a resumed run must see the same data."""
    indices = getattr(val_set, "indices", None)  # a Subset's; a fixed test set has none
    digest = None if indices is None else hashlib.sha1(np.asarray(indices, np.int64).tobytes()).hexdigest()
    return {"train": len(train_set), "validation": len(val_set), "validation_items": digest}


class RunFolder:
    """The files of one run in folder `out`; only the main process writes (see distributed.Group).

    kind: the registry.ModelKind trained; run_args: every flag of the run and data: its
    data_fingerprint, both saved in each trainer snapshot so that a resume can be checked; keep: how
    many model snapshots to keep (--keep; 0: all).
    """

    def __init__(self, out, kind, run_args, data, keep=0):
        self.out, self.kind = out, kind
        self.run_args, self.data = dict(run_args or {}), data
        self.keep = keep

    def check_new_or_resumed(self, resume):
        """UserError if the folder holds a training run other than the one `resume` continues.

        A new run there would overwrite its log.json, delete its trainer snapshot and leave its model
        snapshots beside the new ones, where `infer*.py -m out` would pick the newest of either run.
        """
        out = self.out
        pattern = re.compile(rf"log\.json|({re.escape(TRAINER_SNAPSHOT)}|{re.escape(self.kind.prefix)})\d+")
        found = sorted(n for n in os.listdir(out) if pattern.fullmatch(n)) if os.path.isdir(out) else []
        if not found:
            return
        if resume:
            source = checkpoint.resolve(resume, TRAINER_SNAPSHOT)
            if not os.path.isfile(source) or os.path.samefile(os.path.dirname(os.path.abspath(source)), out):
                return  # the same run; a --resume that is missing is reported when it is loaded
        names = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        if resume:
            raise UserError(
                f"--out {out!r} holds another training run ({names}); resume into the folder of "
                "--resume itself, or pass an empty --out folder"
            )
        raise UserError(
            f"--out {out!r} already holds a training run ({names}); pass --resume {out} to go on "
            "with it, or an empty --out folder"
        )

    def last_trainer_snapshot(self):
        """Path of the newest complete trainer snapshot, or None."""
        return newest(self.out, TRAINER_SNAPSHOT)

    def trainer_snapshot_path(self, iteration):
        return os.path.join(self.out, f"{TRAINER_SNAPSHOT}{iteration}")

    def save_trainer_snapshot(self, snapshot, iteration):
        """Write snapshot_iter_<iteration> (with the run's flags and data), then remove older ones."""
        path = self.trainer_snapshot_path(iteration)
        checkpoint.save(path, {**snapshot, "args": self.run_args, "data": self.data})
        for old in glob.glob(os.path.join(self.out, TRAINER_SNAPSHOT + "*")):
            if os.path.basename(old) != os.path.basename(path) and not old.endswith(".tmp"):
                os.remove(old)
        # temporary files of a run killed while saving (atomic_write names them .<name>.*.tmp)
        for stale in glob.glob(os.path.join(self.out, f".{TRAINER_SNAPSHOT}*.tmp")):
            os.remove(stale)

    def model_snapshot_name(self, iteration):
        return f"{self.kind.prefix}{iteration}"

    def save_model_snapshot(self, snapshot, iteration):
        """Write the model snapshot <prefix><iteration>; with --keep N, then remove all but the N newest.

        A model snapshot is written only when the validation nll beats every earlier one of the run, so
        the newest are the best; resume and `infer*.py -m OUT` (the newest) find what they look for.
        """
        checkpoint.save(os.path.join(self.out, self.model_snapshot_name(iteration)), snapshot)
        if self.keep:
            pattern = re.compile(re.escape(self.kind.prefix) + r"(\d+)")
            found = sorted((int(m.group(1)), name) for name in os.listdir(self.out) if (m := pattern.fullmatch(name)))
            for _, old in found[: -self.keep]:
                os.remove(os.path.join(self.out, old))

    def write_log(self, history):
        """log.json (every record so far) and loss.png, each replaced atomically."""
        text = json.dumps(history, indent=1).encode()
        atomic_write(os.path.join(self.out, "log.json"), lambda f: f.write(text))
        plot_losses(history, os.path.join(self.out, "loss.png"))

    def load_resume(self, path):
        """The trainer snapshot `path` (or a folder's newest); UserError for a model snapshot."""
        snapshot = checkpoint.load(checkpoint.resolve(path, TRAINER_SNAPSHOT))
        if "optimizer" not in snapshot:
            raise UserError(
                f"--resume {path!r} is a model snapshot, not a trainer snapshot; "
                f"pass {TRAINER_SNAPSHOT}<N> from the run's --out folder"
            )
        return snapshot

    def check_resume(self, snapshot, mine, settings, group, path):
        """UserError unless trainer `snapshot` can go on as this run (model snapshot `mine`, `settings`).

        The main process of `group` warns (and goes on) when it stopped inside an epoch of a run with
        another number of processes.
        """
        check_same_model(snapshot, mine, path)
        self.check_same_data(snapshot, settings.seed, path)
        state, args = snapshot["state"], snapshot.get("args", {})
        if state["epoch"] >= settings.epoch:
            raise UserError(
                f"--resume {path!r} has already trained {state['epoch']} epoch(s); pass "
                f"--epoch above {state['epoch']} to train further"
            )
        if state["batch_in_epoch"]:  # the rest of the epoch is found from these two: they must not change
            for flag in ("batchsize", "seed"):
                now = getattr(settings, flag)
                then = args.get(flag, now)
                if then != now:
                    raise UserError(
                        f"--resume {path!r} stopped inside an epoch of a run with --{flag} {then}; "
                        f"pass --{flag} {then} to finish that epoch in the same order"
                    )
            if group.is_main and state["world_size"] != group.world_size:
                warnings.warn(
                    f"--resume {path!r} stopped inside an epoch of a {state['world_size']}-process "
                    f"run; with {group.world_size} processes the shards differ, so the rest of that "
                    "epoch may repeat or skip some training items"
                )

    def check_same_data(self, snapshot, seed, path):
        """UserError unless trainer `snapshot` was trained and validated on the items this run has."""
        then, now = snapshot.get("data", self.data), self.data  # earlier versions did not record it
        if (then["train"], then["validation"]) != (now["train"], now["validation"]):
            raise UserError(
                f"--resume {path!r} was trained on {then['train']} training and {then['validation']} "
                f"validation items; this data gives {now['train']} and {now['validation']}: resume "
                "with the data it was trained on, or start a new --out folder"
            )
        if then.get("validation_items", now["validation_items"]) != now["validation_items"]:
            seed = snapshot.get("args", {}).get("seed", seed)
            raise UserError(
                f"--resume {path!r} held out other validation items (the split follows --seed, the data, "
                f"and for WaveNet this version's split rule, which runs begun before it cannot resume with); "
                f"pass --seed {seed} and the data it was trained on, or start a new --out folder"
            )


def check_same_model(snapshot, mine, source):
    """UserError unless trainer `snapshot` has the model type, config and meta of this run's `mine`.

    Names each setting that differs, as the flag to pass, so that the message says what to change.
    """
    if snapshot["model_type"] != mine["model_type"]:
        raise UserError(
            f"--resume {source!r} is a {snapshot['model_type']} snapshot, not a "
            f"{mine['model_type']} one; resume it with {KINDS[snapshot['model_type']].trainer}"
        )
    kind = KINDS[mine["model_type"]]
    for key in ("config", "meta"):
        theirs, ours = snapshot[key], mine[key]
        if key == "config":  # a field added since the snapshot was saved has its default there
            theirs, ours = kind.full_config(theirs), kind.full_config(ours)
        differ = [name for name in sorted(set(theirs) | set(ours)) if theirs.get(name) != ours.get(name)]
        if differ:
            was = ", ".join(f"{name} {_short(theirs.get(name))}" for name in differ)
            now = ", ".join(f"{name} {_short(ours.get(name))}" for name in differ)
            raise UserError(
                f"--resume {source!r} was trained with {was}; this run has {now}: pass the "
                "same flags and data as the run that wrote it, or start a new --out folder"
            )


def _short(value, limit=60):
    """A value for a one-line message: long lists (speaker names) cut to `limit` characters."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
