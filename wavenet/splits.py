"""Training/validation splits: WaveNet windows by recording, near the share asked, every speaker kept in training."""

from collections import Counter

import numpy as np
from torch.utils.data import Subset

from .errors import UserError


def train_val_split(dataset, val_fraction=0.05, seed=0):
    """Split into (train, validation) Subsets by a seeded shuffle of the items; each side gets at least one.

    Validation gets round(val_fraction * len(dataset)) items. The same arguments give the same split
    on every machine. For WaveNet windows, which overlap, split_by_recording keeps the sides apart.
    """
    n = len(dataset)
    check_split(n, val_fraction)
    n_val = min(max(round(n * val_fraction), 1), n - 1)
    is_val = np.zeros(n, dtype=bool)
    is_val[np.random.default_rng(seed).permutation(n)[:n_val]] = True
    return subsets(dataset, ~is_val, is_val)


def split_by_recording(windows, val_fraction=0.05, seed=0):
    """Split AudioWindows into (train, validation) Subsets of it whose windows never read the same sample.

    windows: an AudioWindows; its recording, speaker_ids, starts, chunk_length and reads_around (the
    audio its feature frames were computed from, beyond the window) are read. Validation
    gets round(val_fraction * len(windows)) windows (at least one, and fewer than all), taken in two steps:
    1. Recordings in a seeded shuffled order go to validation whole while they fit in what is still
       wanted, except a speaker's last recording left for training.
    2. The rest is cut off the end of the next recordings in that order (usually just one): its last
       windows validate, its first windows train, and the windows in between, which would read samples
       of both sides (consecutive windows share receptive_field samples), go to neither side. A cut
       recording keeps at least one window for training.
    So every speaker keeps training windows, and no training window reads a sample a validation window
    reads (let alone scores).
    Where no recording can be held out or cut (too little audio), the windows are shuffled as by
    train_val_split, and describe_split says so. The same arguments give the same split on every machine.
    """
    n = len(windows)
    check_split(n, val_fraction)
    recording, (starts, length) = np.asarray(windows.recording), read_spans(windows)
    in_place = np.lexsort((starts, recording))  # window indices: each recording's together, in order of start
    _, first, sizes = np.unique(recording[in_place], return_index=True, return_counts=True)
    speaker_of = np.asarray(windows.speaker_ids)[in_place[first]]  # of each recording
    left = Counter(speaker_of.tolist())  # recordings each speaker keeps for training
    is_val, dropped, held = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.zeros(len(sizes), dtype=bool)
    need = min(max(round(n * val_fraction), 1), n - 1)
    order = np.random.default_rng(seed).permutation(len(sizes))
    for r in order:  # 1. whole recordings, while they fit
        if sizes[r] <= need and left[speaker_of[r]] > 1:
            is_val[in_place[first[r] : first[r] + sizes[r]]] = True
            held[r] = True
            left[speaker_of[r]] -= 1
            need -= sizes[r]
    for r in order[~held[order]]:  # 2. what is still wanted, off the end of the next recordings
        if need == 0:
            break
        own = in_place[first[r] : first[r] + sizes[r]]
        take = min(need, cut_room(starts[own], length))
        if take > 0:
            trained = np.searchsorted(starts[own] + length, starts[own[-take]], side="right")  # end before it
            is_val[own[-take:]] = True
            dropped[own[trained:-take]] = True
            need -= take
    if not is_val.any():
        return train_val_split(windows, val_fraction, seed)
    return subsets(windows, ~is_val & ~dropped, is_val)


def read_spans(windows):
    """Where each window starts reading (its codes, and the audio its feature frames were computed from)
    and how far it reads: (starts (N,), length).

    The frames of a window at the start or end of a recording read that recording's own silence, not
    its neighbour's; each recording is moved on by before + after samples, so that spans of two
    recordings never overlap.
    """
    before, after = windows.reads_around
    shift = np.asarray(windows.recording) * (before + after)
    return np.asarray(windows.starts) - before + shift, windows.chunk_length + before + after


def cut_room(starts, length):
    """How many windows can be cut off the end of a recording and still leave one that reads none of their samples.

    starts: (M,) ascending first samples of the recording's windows, each `length` samples long.
    """
    return len(starts) - np.searchsorted(starts, starts[0] + length)  # those after the first window's last sample


def check_split(n, val_fraction):
    """ValueError for a fraction outside (0, 1); UserError for fewer than 2 items, one per side."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    if n < 2:
        raise UserError(
            f"{n} chunk(s): a training and a validation split need at least 2; preprocess more or longer audio"
        )


def subsets(dataset, is_train, is_val):
    # ascending indices read the memory map in order within each split
    return Subset(dataset, np.flatnonzero(is_train).tolist()), Subset(dataset, np.flatnonzero(is_val).tolist())


def shared_windows(windows, train, validation):
    """How many of the `validation` windows read a sample that one of the `train` windows reads.

    train, validation: window indices. The recordings lie one after another in the stream that
    windows.starts index, so windows of two recordings never share a sample.
    """
    all_starts, length = read_spans(windows)
    ends = np.sort(all_starts[train]) + length
    starts = all_starts[validation]
    # the training windows that end after a validation window starts; one that starts before it ends shares
    first_later = np.searchsorted(ends, starts, side="right")
    later_starts = np.append(ends - length, np.inf)[first_later]
    return int(np.count_nonzero(later_starts < starts + length))


def counted(count, noun):
    """'1 window', '2,048 windows'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def describe_split(train, validation, windows, wanted, speakers_shown):
    """What split_by_recording did, as training prints it: windows and recordings on each side, the share.

    train, validation: its Subsets of `windows` (AudioWindows); wanted: the requested val_fraction.
    A line names the recordings cut in two and the windows dropped at the cut; with several speakers
    a second line gives the windows (recordings) on each side for the first `speakers_shown` of them.
    """
    recording, speaker = np.asarray(windows.recording), np.asarray(windows.speaker_ids)
    sides = [np.asarray(part.indices, dtype=np.int64) for part in (train, validation)]
    recordings = [set(np.unique(recording[side]).tolist()) for side in sides]
    line = (
        f"training on {counted(len(train), 'window')} of {counted(len(recordings[0]), 'recording')}, "
        f"validating on {counted(len(validation), 'window')} of {counted(len(recordings[1]), 'recording')}: "
        f"{len(validation) / len(windows):.1%} of the windows held out (--val_fraction {wanted})"
    )
    shared, cut = shared_windows(windows, *sides), len(recordings[0] & recordings[1])
    if shared:
        read = counted(shared, "validation window")
        line += f"; too little audio to hold out recordings: {read} read audio that training reads"
    elif cut:
        line += f"; {counted(cut, 'recording')} cut in two at a window boundary"
        dropped = len(windows) - len(train) - len(validation)
        if dropped:  # none where windows do not overlap
            line += f", dropping the {counted(dropped, 'window')} that would read audio of both sides"
    names = windows.speakers
    if len(names) > 1:
        shown = min(len(names), speakers_shown)
        per_side = []
        for side in sides:
            _, first = np.unique(recording[side], return_index=True)
            windows_of = np.bincount(speaker[side], minlength=len(names))
            recordings_of = np.bincount(speaker[side][first], minlength=len(names))
            per_side.append((windows_of, recordings_of))
        (train_w, train_r), (val_w, val_r) = per_side
        each = [f"{names[k]} {train_w[k]:,}/{val_w[k]:,} ({train_r[k]}/{val_r[k]})" for k in range(shown)]
        more = f", ... ({len(names) - shown} more)" if len(names) > shown else ""
        line += "\nper speaker, training/validation windows (recordings): " + ", ".join(each) + more
    if windows.recording_files is not None and not shared:
        line += "\n" + held_out(windows, sides[1], recordings[1] - recordings[0], recordings[0] & recordings[1])
    return line


def held_out(windows, validation, whole, cut, shown=3):
    """The line naming what validation holds: its `whole` recordings (the first `shown` of them) and the
    end of each `cut` one, from the second of the recording where its first validation window scores."""
    files, recording = windows.recording_files, np.asarray(windows.recording)
    whole = sorted(whole)
    names = ", ".join(files[r] for r in whole[:shown]) + (", ..." if len(whole) > shown else "")
    parts = [f"{counted(len(whole), 'recording')} ({names})" if len(whole) > shown else names] if whole else []
    for r in sorted(cut):
        first = np.flatnonzero(recording == r)[0]  # its window 0 starts where the recording does
        start = validation[recording[validation] == r].min()
        # window k scores the samples from k strides into the recording's audio (after its lead-in)
        parts.append(
            f"the end of {files[r]} from {(windows.starts[start] - windows.starts[first]) / windows.rate:.2f} s"
        )
    return "held out: " + " and ".join(parts)
