"""The WaveNet training dataset: windows cut from a preprocessed folder, and the geometry that cuts them."""

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from .corpus import CODES_FILE, MAX_LEVELS, check_window, has_meta, open_codes, open_features, path_of, read_folder
from .errors import UserError
from .features import MelSettings, normalise
from .legacy_corpus import read_legacy


@dataclass(frozen=True)
class WindowGeometry:
    """How a training window is cut: receptive_field samples of context, then target_length samples to score.

    preprocess writes chunks of `length` samples, and the windows of a recording start target_length
    apart, so that every sample after the lead-in is a target of one window.
    """

    receptive_field: int  # context before the first target: the receptive field of the model trained
    target_length: int  # samples at the end of each window the model scores

    @property
    def length(self):
        """Samples in a window, which is also the length of the chunks preprocess writes."""
        return self.receptive_field + self.target_length


class WindowsDoNotFit(UserError):
    """A model does not fit the windows: they were cut for a smaller receptive field, or leave nothing to score."""

    def __init__(self, folder, data_receptive_field, chunk_length, receptive_field):
        self.folder = folder
        self.data_receptive_field = data_receptive_field  # what the folder was cut for, None if unknown
        self.chunk_length = chunk_length
        self.receptive_field = receptive_field  # the model's
        super().__init__(
            f"{folder!r} holds windows of {chunk_length} samples cut for a receptive field of "
            f"{data_receptive_field}, which a model with a receptive field of {receptive_field} "
            "cannot train on; rerun preprocess.py for that model"
        )


class AudioWindows(Dataset):
    """Training windows of a preprocessed folder. Item i: (codes long (chunk_length,), speaker long scalar),
    and where the folder holds log-mel features, their normalised frames (bands, frames_per_window) float32.

    A window is chunk_length = geometry.length consecutive samples of one recording. The windows of a
    recording start geometry.target_length apart, so every sample after its lead-in is a target of
    exactly one window, but for a last stretch shorter than target_length (the stored chunks, one
    after another, would leave the first receptive field of each chunk unscored). Where the receptive
    field or the recordings are unknown (format 1, the original's files), the windows are the stored
    chunks.

    Attributes: rate (Hz, None if unknown), chunk_length, levels, speakers (names, by index),
    receptive_field (as recorded by preprocess, or None), geometry (WindowGeometry of that receptive
    field, None if unknown), recording (recording index of each window), speaker_ids (speaker index of
    each window), mel (the stored feature settings and statistics, None without features),
    frames_per_window, reads_around (samples before and after a window that its frames were computed
    from: (0, 0) without features). New-format codes and features stay memory-mapped.

    With features, window starts are whole hops into their recording (preprocess makes target_length
    a multiple of the hop), so a window's frames are the recording's frames from start / hop on:
    frame j centred on the window's sample j * hop, and one frame past its end for the last samples.
    """

    def __init__(self, folder, levels=None):
        """levels: expected number of mu-law levels (UserError on mismatch); also how legacy values quantise."""
        if not os.path.isdir(folder):
            raise UserError(
                f"data folder {folder!r} not found; run preprocess.py --data AUDIO_FOLDER --output {folder} first"
            )
        self.folder = folder
        stored = read_folder(folder) if has_meta(folder) else read_legacy(folder, levels or MAX_LEVELS)
        self.codes = stored.codes  # uint8 (N, chunk_length)
        self._chunks, self.chunk_length = stored.codes.shape
        self.rate = stored.rate
        self.levels = stored.levels
        self.speakers = stored.speakers
        self.receptive_field = stored.receptive_field
        self.chunk_speakers = stored.chunk_speakers  # (N,)
        self.codes_checked = stored.codes_checked  # False: check each window for codes >= levels as it is read
        self.recording_samples = stored.recording_samples  # (F,)
        self.features, self.mel = stored.features, stored.mel  # (frames, bands) float32, or None
        self.recording_files = stored.recording_files  # file of each recording, relative to --data, or None
        R = self.receptive_field
        # target_length <= 0 where the chunks are no longer than R: nothing to score (see target_length_for)
        self.geometry = WindowGeometry(R, self.chunk_length - R) if R else None
        self._index_windows()
        self._index_frames()
        if levels is not None and levels != self.levels:
            raise UserError(
                f"{folder!r} holds codes of {self.levels} mu-law levels, not {levels}; pass "
                f"--levels {self.levels} or rerun preprocess.py --levels {levels}"
            )

    def target_length_for(self, receptive_field):
        """Samples at the end of each window that a model of `receptive_field` scores: its target length.

        The receptive field the folder was cut for sets the targets; a model with a smaller one ignores
        the extra context. Where the folder records none (the original's files), the windows are taken
        to fit the model. Raises WindowsDoNotFit where they were cut for a smaller receptive field, or
        leave no sample to score.
        """
        context = self.geometry.receptive_field if self.geometry else receptive_field
        scored = self.chunk_length - context
        if scored <= 0 or context < receptive_field:
            raise WindowsDoNotFit(self.folder, self.receptive_field, self.chunk_length, receptive_field)
        return scored

    def _index_windows(self):
        """Set the start of every window (a sample index into the codes read as one stream) and its recording."""
        L = self.chunk_length
        g = self.geometry
        # without a positive target length the windows are the chunks; a recording of one chunk has
        # one window either way
        stride = g.target_length if g and g.target_length > 0 else L
        length = self.recording_samples  # real samples of each recording
        stored = -(-length // L) * L  # with the padded last chunk
        windows = (length - L) // stride + 1  # per recording
        self.recording = np.repeat(np.arange(len(windows)), windows)  # (number of windows,)
        first_window = np.cumsum(windows) - windows
        k = np.arange(len(self.recording)) - first_window[self.recording]  # window k of its recording
        self.starts = (np.cumsum(stored) - stored)[self.recording] + k * stride
        self.speaker_ids = self.chunk_speakers[self.starts // L]

    def _index_frames(self):
        """Set each window's first frame (an index into the features) and frames_per_window."""
        self.frames_per_window = 0
        self.reads_around = (0, 0)  # samples before and after a window that its features read
        if self.features is None:
            return
        settings = MelSettings.from_dict(self.mel)
        L, hop = self.chunk_length, settings.hop
        stored = -(-self.recording_samples // L) * L  # samples of each recording with its padding
        # recording r's frames are features[frame_bounds[r] : frame_bounds[r + 1]]
        self.frame_bounds = np.concatenate([[0], np.cumsum(settings.frames_for(stored))])
        first_frame = self.frame_bounds[:-1]
        into = self.starts - (np.cumsum(stored) - stored)[self.recording]  # window start within its recording
        if (into % hop).any():
            raise UserError(
                f"{self.folder!r}: its windows start {self.geometry.target_length} samples apart, not a whole "
                f"number of {hop}-sample feature hops; rerun preprocess.py --mel"
            )
        self.first_frames = first_frame[self.recording] + into // hop
        self.frames_per_window = settings.frames_for(L)
        # frame j is centred on the window's sample j * hop and reads half a Hann window either side
        half = settings.window // 2
        self.reads_around = (half, (self.frames_per_window - 1) * hop + half - L)

    def opening_frames(self, recording, count):
        """Normalised frames (bands, count or fewer) of a recording from its start, lead-in included."""
        first, end = self.frame_bounds[recording], self.frame_bounds[recording + 1]
        frames = self.features[first : min(first + count, end)]
        return torch.from_numpy(np.ascontiguousarray(normalise(frames, self.mel).T))

    def __len__(self):
        return len(self.starts)

    def __getitem__(self, i):
        row, offset = divmod(int(self.starts[i]), self.chunk_length)
        # a window spans at most two chunks of its recording, which lie back to back
        codes = self.codes[row : row + 2].reshape(-1)[offset : offset + self.chunk_length]
        if not self.codes_checked:  # too large to scan at opening (corpus.check_codes); a pass over one window
            check_window(path_of(self.folder, CODES_FILE), codes, self.levels)
        item = torch.from_numpy(codes.astype(np.int64)), torch.tensor(self.speaker_ids[i])
        if self.features is None:
            return item
        first = int(self.first_frames[i])
        frames = normalise(self.features[first : first + self.frames_per_window], self.mel)
        return *item, torch.from_numpy(np.ascontiguousarray(frames.T))

    def __getstate__(self):
        # DataLoader workers started by spawn get a pickled copy: reopen the map, don't copy the data
        state = dict(self.__dict__)
        for name in ("codes", "features"):
            if isinstance(state[name], np.memmap):
                del state[name]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if "codes" not in state:
            self.codes = open_codes(self.folder, self._chunks, self.chunk_length)
        if "features" not in state:
            self.features = open_features(self.folder, self.mel)
