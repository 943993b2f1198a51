"""Saving and loading snapshots: safe reads, and models rebuilt from their config alone.

A snapshot is a dict of tensors and plain Python values:

    {"format": 1, "model_type": "GatedPixelCNN", "config": {...constructor kwargs...},
     "model": state_dict, "meta": {...dataset, levels, image size or rate, speakers...},
     # trainer snapshots only:
     "optimizer": ..., "state": {...iteration, epoch, best metric, history...},
     "rng": {...}, "args": {...all flags of the run...}, "data": {...split sizes...},
     "checksum": "sha256:...",       # of every tensor above
     "checksum_all": "sha256:..."}   # of everything above; see CHECKSUMS and snapshot_checksum

Snapshots of earlier versions have no "checksum_all", or no checksum at all, and are checked as far as
they can be: the keys are additions, not a new layout, so FORMAT stays 1 (and earlier versions, which
check "checksum" or nothing, still read new snapshots).
"""

import dataclasses
import hashlib
import os
import zipfile

import torch

from .errors import UserError
from .files import WriteError, atomic_write, newest
from .image_data import DEFAULT_DATA_DIR
from .registry import KINDS, TRAINER_SNAPSHOT, kind_of

FORMAT = 1
CHECKSUM = "checksum"  # the snapshot key of the tensors' checksum (see CHECKSUMS)


def resolve(path, prefix):
    """A snapshot path as given, or for a folder its newest `<prefix><N>` (UserError if none)."""
    if not os.path.isdir(path):
        return path
    found = newest(path, prefix)
    if found is None:
        for kind in KINDS.values():
            theirs = newest(path, kind.prefix) if kind.prefix != prefix else None
            if theirs:
                raise UserError(
                    f"{path!r} holds {kind.name} snapshots ({os.path.basename(theirs)}), "
                    f"no {prefix}<N>; use {kind.sampler} for it"
                )
        trainer = newest(path, TRAINER_SNAPSHOT)
        hint = (
            f"; model snapshots appear when the validation nll improves at an epoch's end, but the "
            f"trainer snapshot {trainer} holds the weights too: pass it"
            if trainer
            else "; pass a snapshot file or a training --out folder"
        )
        raise UserError(f"{path!r} holds no {prefix}<N> snapshot{hint}")
    return found


# Two checksums, each under its own key. "checksum" covers the tensors alone, as earlier versions wrote
# and still check it; "checksum_all" covers every other value too (config, meta, state, flags), so that
# a changed image size or a flipped bit in a stored feature mean is refused as well. Earlier versions
# ignore the second key, so they go on reading this version's snapshots.
CHECKSUMS = {CHECKSUM: False, "checksum_all": True}  # key -> whether its digest covers the plain values


def snapshot_checksum(snapshot, values=True):
    """'sha256:<hex>' over `snapshot` (a dict of dicts, lists and tuples), its checksum keys aside.

    Each tensor adds its place in the structure, dtype, shape and bytes; with `values` each other value
    (None, bool, int, float, str) adds its place, type and repr. All in the structure's order (dicts keep
    their insertion order through torch.save and torch.load), so a flipped bit, a reshaped or retyped
    tensor, two swapped tensors and (with `values`) a changed value all change it. Lists and tuples
    count alike.
    """
    digest = hashlib.sha256()

    def visit(value, where):
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            digest.update(f"{where}|{t.dtype}|{tuple(t.shape)}|".encode())
            digest.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(value, dict):
            for key, item in value.items():
                if not (where == "" and key in CHECKSUMS):
                    visit(item, f"{where}/{key!r}")
        elif isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                visit(item, f"{where}/{i}")
        elif values:
            digest.update(f"{where}|{type(value).__name__}|{value!r}|".encode())

    visit(snapshot, "")
    return "sha256:" + digest.hexdigest()


def checksums_match(snapshot):
    """Whether every checksum `snapshot` carries is its own (True where it carries none, as earlier versions')."""
    return all(
        snapshot[key] == snapshot_checksum(snapshot, values) for key, values in CHECKSUMS.items() if key in snapshot
    )


def save(path, snapshot):
    """Write a snapshot dict atomically, with its checksums (see CHECKSUMS); WriteError if the disk refuses."""
    snapshot = {**snapshot, **{key: snapshot_checksum(snapshot, values) for key, values in CHECKSUMS.items()}}
    try:
        atomic_write(path, lambda f: torch.save(snapshot, f))
    except RuntimeError as e:  # torch's zip writer failing on its own, with no OSError to report
        message = str(e)
        if "inline_container" not in message and "write" not in message.lower():
            raise
        reason = OSError(None, "the zip writer failed: " + " ".join(message.split())[:120])
        raise WriteError(path, reason) from None


def load(path, map_location="cpu"):
    """Read a snapshot with weights_only=True (no code from the file runs); UserError if it is not one."""
    if not os.path.isfile(path):
        raise UserError(f"snapshot {path!r} not found: pass the path of a file written by training")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; a torn copy has lost its directory
        raise UserError(
            f"{path!r} is not a readable snapshot (not a complete PyTorch zip file); "
            "pass a file written by train.py or train_wavenet.py"
        )
    try:
        snapshot = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a corrupt or foreign file can fail anywhere inside the unpickler
        # the type as well: some messages alone say nothing (a text file gives KeyError: 105)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        reason = f"{type(e).__name__}: {first_line}" if first_line else type(e).__name__
        raise UserError(
            f"{path!r} is not a readable snapshot ({reason}); pass a file written by train.py or train_wavenet.py"
        ) from None
    if not isinstance(snapshot, dict) or snapshot.get("model_type") not in KINDS:
        raise UserError(
            f"{path!r} is not a snapshot of this project; pass a file written by train.py or train_wavenet.py"
        )
    if snapshot.get("format") != FORMAT:
        raise UserError(f"{path!r} has snapshot format {snapshot.get('format')}, this version reads format {FORMAT}")
    if not checksums_match(snapshot):
        raise UserError(
            f"{path!r} is corrupted (checksum mismatch: it changed after it was written, "
            "a failing disk or copy); use another snapshot or retrain"
        )
    return snapshot


def model_snapshot(model, meta):
    """The part of a snapshot that rebuilds a trained model: type, config, weights, meta."""
    return {
        "format": FORMAT,
        "model_type": kind_of(model).name,
        "config": dataclasses.asdict(model.config),
        "model": model.state_dict(),
        "meta": dict(meta),
    }


def build_model(snapshot, expected_type, source="the snapshot"):
    """Rebuild the model of `snapshot` from its config alone and load its weights (source: named in errors)."""
    kind = KINDS[snapshot["model_type"]]
    if kind.name != expected_type:
        raise UserError(f"{source} is a {kind.name} snapshot, not a {expected_type} one; use {kind.sampler} for it")
    try:
        model = kind.model(**snapshot["config"])
    except (TypeError, ValueError) as e:
        raise UserError(
            f"{source}: its config does not build this version's {kind.name} ({e}); "
            "retrain, or use the version of this project that wrote it"
        ) from None
    load_weights(model, snapshot["model"], source)
    return model


def load_weights(model, state_dict, source):
    """model.load_state_dict, with a UserError when the weights are not this version's layout."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError:  # missing, unexpected or reshaped keys: a snapshot of an older version
        raise UserError(
            f"{source}: its weights do not fit this version's {type(model).__name__} "
            f"({layout_difference(model.state_dict(), state_dict)}); retrain, or use the version of this "
            "project that wrote it"
        ) from None


def layout_difference(expected, found):
    """How the state dict `found` differs from `expected` in keys and shapes, in a few words with the first of each."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    reshaped = [
        f"{k} {tuple(found[k].shape)} for {tuple(v.shape)}"
        for k, v in expected.items()
        if k in found and hasattr(found[k], "shape") and found[k].shape != v.shape
    ]
    parts = [
        f"{len(names)} {what}, such as {names[0]}"
        for names, what in ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
        if names
    ]
    return "; ".join(parts) or "the weights could not be loaded"


def check_flags(snapshot, flags, source):
    """Raise UserError when a flag the user gave contradicts the snapshot's value.

    flags: {name: value or None}; None means "not given, take the snapshot's".
    Values are looked up in the model config, then in the snapshot's meta.
    """
    known = {**snapshot.get("meta", {}), **snapshot["config"]}
    for name, value in flags.items():
        if value is not None and name in known and known[name] != value:
            raise UserError(
                f"--{name} {value} contradicts {source}, which was trained with "
                f"--{name} {known[name]}; drop the flag or pass --{name} {known[name]}"
            )


def data_dir(snapshot, given=None):
    """Where a snapshot's data set is read from: `given` (a --data_dir), else the --data_dir of the run that
    wrote it (trainer snapshots keep the run's flags; model snapshots do not), else train.py's default."""
    return given or snapshot.get("args", {}).get("data_dir") or DEFAULT_DATA_DIR
