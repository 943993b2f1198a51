"""Training/validation splits of a dataset: whole groups (recordings) held out, every speaker kept for training."""

import numpy as np
from torch.utils.data import Subset

from .errors import UserError


def train_val_split(dataset, val_fraction=0.05, seed=0, groups=None, speakers=None):
    """Split into (train, validation) Subsets by a seeded shuffle of groups; each side gets at least one item.

    groups: the group of each item (such as its recording); a group goes wholly to one side, so
    validation never scores a recording that training has seen. Groups are held out in shuffled order
    until they hold val_fraction of the items. speakers: the speaker of each item; a group is not held
    out if it is its speaker's last one left for training. Without groups, or where no group can be
    held out, the items themselves are shuffled. The same arguments give the same split on every machine.
    """
    n = len(dataset)
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if n < 2:
        raise UserError(
            f"{n} chunk(s): a training and a validation split need at least 2; preprocess more or longer audio"
        )
    rng = np.random.default_rng(seed)
    is_val = np.zeros(n, dtype=bool)
    if groups is not None:
        is_val = held_out(
            np.asarray(groups), np.zeros(n) if speakers is None else np.asarray(speakers), val_fraction * n, rng
        )
    if not is_val.any():
        n_val = min(max(round(n * val_fraction), 1), n - 1)
        is_val[rng.permutation(n)[:n_val]] = True
    # ascending indices read the memory map in order within each split
    return Subset(dataset, np.flatnonzero(~is_val).tolist()), Subset(dataset, np.flatnonzero(is_val).tolist())


def held_out(groups, speakers, wanted, rng):
    """Boolean mask of the items in the groups held out: shuffled groups until `wanted` items, skipping
    any group that is the last one its speaker keeps for training."""
    names, first, group_of, sizes = np.unique(groups, return_index=True, return_inverse=True, return_counts=True)
    speaker_of = speakers[first]
    left = dict(zip(*np.unique(speaker_of, return_counts=True)))  # groups each speaker keeps for training
    chosen, items = [], 0
    for g in rng.permutation(len(names)):
        if items >= wanted:
            break
        if left[speaker_of[g]] > 1:
            chosen.append(g)
            left[speaker_of[g]] -= 1
            items += sizes[g]
    return np.isin(group_of, chosen)


def describe_split(train, validation, groups, wanted):
    """One line on how `train_val_split` split: windows and recordings on each side, and the share.

    train, validation: its Subsets; groups: the recording of each item of the whole set; wanted: the
    requested val_fraction. Whole recordings are held out, so the share can exceed what was asked.
    """
    groups = np.asarray(groups)
    share = len(validation) / (len(train) + len(validation))
    recordings = [len(np.unique(groups[np.asarray(part.indices, dtype=np.int64)])) for part in (train, validation)]
    note = f" (--val_fraction {wanted}: whole recordings are held out)" if share > 1.5 * wanted else ""
    return (
        f"training on {len(train):,} windows of {recordings[0]} recording(s), validating on {len(validation):,} "
        f"of {recordings[1]}: {share:.1%} held out{note}"
    )
