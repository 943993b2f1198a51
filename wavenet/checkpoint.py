"""Saving and loading snapshots: atomic writes, safe reads, models rebuilt from their config.

A snapshot is a dict of tensors and plain Python values:

    {"format": 1, "model_type": "GatedPixelCNN", "config": {...constructor kwargs...},
     "model": state_dict, "meta": {...dataset, levels, image size or rate, speakers...},
     # trainer snapshots only:
     "optimizer": ..., "state": {...iteration, epoch, best metric, history...},
     "rng": {...}, "args": {...all flags of the run...}}
"""
import os
import re
import tempfile
import zipfile

import torch

from .errors import UserError
from .models import GatedPixelCNN, WaveNet

FORMAT = 1
SNAPSHOT_PREFIX = "snapshot_iter_"  # trainer snapshots; model snapshots are <model name>_<N>
MODEL_TYPES = {cls.__name__: cls for cls in (GatedPixelCNN, WaveNet)}
# the script that owns each model type, named in errors when a snapshot goes to the other one
SCRIPT_FOR = {"GatedPixelCNN": "infer.py", "WaveNet": "infer_wavenet.py"}
# model snapshots are named <prefix><iteration> by the trainer of each model type
PREFIX_FOR = {"GatedPixelCNN": "pixelcnn_", "WaveNet": "wavenet_"}


def atomic_write(path, write):
    """Call write(file_object) on a temporary file beside `path`, fsync it, then rename it over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it a new file's usual mode
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def newest(folder, prefix):
    """The file `<prefix><N>` with the largest N in `folder`, or None."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    found = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := pattern.fullmatch(name))]
    return os.path.join(folder, max(found)[1]) if found else None


def resolve(path, prefix):
    """A snapshot path as given, or for a folder its newest `<prefix><N>` (UserError if none)."""
    if not os.path.isdir(path):
        return path
    found = newest(path, prefix)
    if found is None:
        for model_type, other in PREFIX_FOR.items():
            theirs = newest(path, other) if other != prefix else None
            if theirs:
                raise UserError(f"{path!r} holds {model_type} snapshots ({os.path.basename(theirs)}), "
                                f"no {prefix}<N>; use {SCRIPT_FOR[model_type]} for it")
        trainer = newest(path, SNAPSHOT_PREFIX)
        hint = (f"; model snapshots appear when the validation nll improves at an epoch's end, but the "
                f"trainer snapshot {trainer} holds the weights too: pass it" if trainer else
                "; pass a snapshot file or a training --out folder")
        raise UserError(f"{path!r} holds no {prefix}<N> snapshot{hint}")
    return found


def check_out_folder(out, resume, model_prefix):
    """UserError if folder `out` holds a training run other than the one `resume` continues.

    A new run there would overwrite its log.json, delete its trainer snapshot and leave its model
    snapshots beside the new ones, where `infer*.py -m out` would pick the newest of either run.
    """
    pattern = re.compile(rf"log\.json|({re.escape(SNAPSHOT_PREFIX)}|{re.escape(model_prefix)})\d+")
    found = sorted(name for name in os.listdir(out) if pattern.fullmatch(name)) if os.path.isdir(out) else []
    if not found:
        return
    if resume:
        source = resolve(resume, SNAPSHOT_PREFIX)
        if not os.path.isfile(source) or os.path.samefile(os.path.dirname(os.path.abspath(source)), out):
            return  # the same run; a --resume that is missing is reported when it is loaded
    names = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
    if resume:
        raise UserError(f"--out {out!r} holds another training run ({names}); resume into the folder of "
                        "--resume itself, or pass an empty --out folder")
    raise UserError(f"--out {out!r} already holds a training run ({names}); pass --resume {out} to go on "
                    "with it, or an empty --out folder")


def save(path, snapshot):
    """Write a snapshot dict atomically."""
    atomic_write(path, lambda f: torch.save(snapshot, f))


def load(path, map_location="cpu"):
    """Read a snapshot with weights_only=True (no code from the file runs); UserError if it is not one."""
    if not os.path.isfile(path):
        raise UserError(f"snapshot {path!r} not found: pass the path of a file written by training")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a torn copy has lost its directory
        raise UserError(f"{path!r} is not a readable snapshot (not a complete PyTorch zip file); "
                        "pass a file written by train.py or train_wavenet.py")
    try:
        snapshot = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a corrupt or foreign file can fail anywhere inside the unpickler
        # the type as well: some messages alone say nothing (a text file gives KeyError: 105)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reason = f"{type(e).__name__}: {first_line}" if first_line else type(e).__name__
        raise UserError(f"{path!r} is not a readable snapshot ({reason}); "
                        "pass a file written by train.py or train_wavenet.py") from None
    if not isinstance(snapshot, dict) or snapshot.get("model_type") not in MODEL_TYPES:
        raise UserError(f"{path!r} is not a snapshot of this project; "
                        "pass a file written by train.py or train_wavenet.py")
    if snapshot.get("format") != FORMAT:
        raise UserError(f"{path!r} has snapshot format {snapshot.get('format')}, this version reads "
                        f"format {FORMAT}")
    return snapshot


def model_snapshot(model, meta):
    """The part of a snapshot that rebuilds a trained model: type, config, weights, meta."""
    return {"format": FORMAT, "model_type": type(model).__name__, "config": dict(model.config),
            "model": model.state_dict(), "meta": dict(meta)}


def build_model(snapshot, expected_type, source="the snapshot"):
    """Rebuild the model of `snapshot` from its config alone and load its weights (source: named in errors)."""
    model_type = snapshot["model_type"]
    if model_type != expected_type:
        raise UserError(f"{source} is a {model_type} snapshot, not a {expected_type} one; "
                        f"use {SCRIPT_FOR[model_type]} for it")
    try:
        model = MODEL_TYPES[model_type](**snapshot["config"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{source}: its config does not build this version's {model_type} ({e}); "
                        "retrain, or use the version of this project that wrote it") from None
    load_weights(model, snapshot["model"], source)
    return model


def load_weights(model, state_dict, source):
    """model.load_state_dict, with a UserError when the weights are not this version's layout."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:  # missing, unexpected or reshaped keys: a snapshot of an older version
        detail = " ".join(str(e).split())
        raise UserError(f"{source}: its weights do not fit this version's {type(model).__name__} "
                        f"({detail[:200]}); retrain, or use the version of this project that wrote it") from None


# the trainer that writes each model type's snapshots, named when --resume gets the other one
TRAINER_FOR = {"GatedPixelCNN": "train.py", "WaveNet": "train_wavenet.py"}


def check_resumable(snapshot, mine, source):
    """UserError unless trainer `snapshot` has the model type, config and meta of this run's `mine`.

    Names each setting that differs, as the flag to pass, so that the message says what to change.
    """
    if snapshot["model_type"] != mine["model_type"]:
        raise UserError(f"--resume {source!r} is a {snapshot['model_type']} snapshot, not a "
                        f"{mine['model_type']} one; resume it with {TRAINER_FOR[snapshot['model_type']]}")
    for key in ("config", "meta"):
        theirs, ours = snapshot[key], mine[key]
        differ = [name for name in sorted(set(theirs) | set(ours)) if theirs.get(name) != ours.get(name)]
        if differ:
            was = ", ".join(f"{name} {_short(theirs.get(name))}" for name in differ)
            now = ", ".join(f"{name} {_short(ours.get(name))}" for name in differ)
            raise UserError(f"--resume {source!r} was trained with {was}; this run has {now}: pass the "
                            "same flags and data as the run that wrote it, or start a new --out folder")


def _short(value, limit=60):
    """A value for a one-line message: long lists (speaker names) cut to `limit` characters."""
    text = str(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def check_flags(snapshot, flags, source):
    """Raise UserError when a flag the user gave contradicts the snapshot's value.

    flags: {name: value or None}; None means "not given, take the snapshot's".
    Values are looked up in the model config, then in the snapshot's meta.
    """
    known = {**snapshot.get("meta", {}), **snapshot["config"]}
    for name, value in flags.items():
        if value is not None and name in known and known[name] != value:
            raise UserError(f"--{name} {value} contradicts {source}, which was trained with "
                            f"--{name} {known[name]}; drop the flag or pass --{name} {known[name]}")
