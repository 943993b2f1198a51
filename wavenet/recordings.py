"""Finding the recordings under a data folder, each file once, and the speaker each belongs to."""

import logging
import os

from .audio import AUDIO_EXTENSIONS, printable
from .errors import UserError

log = logging.getLogger(__name__)


def find_audio(data):
    """Sorted paths of the .wav and .flac files under folder `data` (recursively), or `data` itself if a file.

    Symbolic links are followed, but no folder is entered twice and no file is listed twice (a link
    loop, two links to one place, hard links): one warning line says how many were skipped.
    """
    if os.path.isfile(data):
        if not data.lower().endswith(AUDIO_EXTENSIONS):
            raise UserError(f"{data!r} is not a .wav or .flac file; pass it or the folder holding such files")
        return [data]
    if not os.path.isdir(data):
        raise UserError(f"data folder {data!r} not found; pass the folder holding the .wav/.flac files")
    found, seen, again = [], set(), {"folder": [], "file": []}  # seen: (st_dev, st_ino) of both
    folders = [data]
    while folders:  # depth first, in name order: the same path of several is kept on every run
        folder = folders.pop()
        try:
            status = os.stat(folder)
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError:
            continue  # unreadable or vanished, as os.walk skips it
        if (status.st_dev, status.st_ino) in seen:
            again["folder"].append(folder)
            continue
        seen.add((status.st_dev, status.st_ino))
        subfolders = []
        for entry in entries:
            try:
                if entry.is_dir():
                    subfolders.append(entry.path)
                    continue
                status = entry.stat()
            except OSError:  # a broken link: listed, then reported unreadable
                status = None
            if not entry.name.lower().endswith(AUDIO_EXTENSIONS):
                continue
            if status is not None and (status.st_dev, status.st_ino) in seen:
                again["file"].append(entry.path)
                continue
            if status is not None:
                seen.add((status.st_dev, status.st_ino))
            found.append(entry.path)
        folders.extend(reversed(subfolders))
    if again["folder"] or again["file"]:
        example = printable(os.path.relpath((again["folder"] or again["file"])[0], data))
        log.warning(
            "skipped %d folder(s) and %d file(s) under %s reached again by another path (a symbolic link "
            "loop, or two links to one place), such as %s: each is read once",
            len(again["folder"]),
            len(again["file"]),
            printable(data),
            example,
        )
    if not found:
        raise UserError(f"data folder {data!r} holds no .wav or .flac files (searched all subfolders)")
    return sorted(found)  # a fixed order makes reruns byte-identical


def speaker_of(path):
    """VCTK keeps each speaker in a folder (wav48/p225/p225_001.wav): the name of the file's folder, printable."""
    return printable(os.path.basename(os.path.dirname(os.path.abspath(path))))


def speakers_of(files, data, level=None):
    """The speaker name of each of `files` (paths under folder `data`, as find_audio lists them), in their order.

    level None (the default): the name of the file's folder (speaker_of). Folders of one name at
    different paths are then one speaker, as they always were; a warning names them.
    level 0: one speaker for all files, named after the data folder.
    level N >= 1: the folder N levels below `data`, named by its path from `data` with "/" between
    folders, so that folders of one name under different parents stay apart. LibriSpeech
    (speaker/chapter/file.flac): level 1 gives speakers "103", level 2 chapters "103/1240".
    `data` may be a file (find_audio's one-file list): it then lies 0 levels below its folder.

    UserError (naming a file and the fix) if a file lies fewer than N folders below `data`: putting it
    in some other speaker would train that speaker on another voice without a word.
    """
    if level is None:
        names = [speaker_of(path) for path in files]
        _warn_merged(files, names, data)
        return names
    base = data if os.path.isdir(data) else os.path.dirname(data)
    if level == 0:
        return [printable(os.path.basename(os.path.abspath(base)) or os.path.abspath(base))] * len(files)
    folders = [os.path.relpath(path, base).split(os.sep)[:-1] for path in files]  # from base down to the file
    shallow = [(path, len(parts)) for path, parts in zip(files, folders) if len(parts) < level]
    if shallow:
        path, depth = shallow[0]
        others = f", as do {len(shallow) - 1} more of the {len(files)} files" if len(shallow) > 1 else ""
        lowest = min(len(parts) for parts in folders)  # the deepest level that every file reaches
        fix = f"--speaker_level {lowest} or lower (0: one speaker)" if lowest else "--speaker_level 0 (one speaker)"
        those = "that file" if len(shallow) == 1 else "those files"
        move = f", or move {those} into speaker folders" if len(shallow) < len(files) else ""
        raise UserError(
            f"--speaker_level {level} takes each speaker from the folder {_levels(level)} below --data "
            f"{printable(data)!r}, but {printable(os.path.relpath(path, base))!r} lies {_levels(depth, 'folder')} "
            f"below it{others}; pass {fix}{move}"
        )
    return ["/".join(printable(part) for part in parts[:level]) for parts in folders]


def _warn_merged(files, names, data):
    """Warn where one name of speaker_of stands for folders at several paths (wav/p225 beside raw/p225,
    VCTK's wav48/p225 beside wav48_silence_trimmed/p225): the default makes them one speaker."""
    base = data if os.path.isdir(data) else os.path.dirname(data)
    folders = {}  # speaker name -> the folders it stands for, relative to base
    for path, name in zip(files, names):
        folders.setdefault(name, set()).add(printable(os.path.relpath(os.path.dirname(path), base)))
    merged = {name: sorted(paths) for name, paths in folders.items() if len(paths) > 1}
    if merged:
        name = min(merged)
        log.warning(
            "%d speaker name(s) stand for folders at several paths, such as %s (%s): each name is one speaker; "
            "pass --speaker_level N to take speakers from the folders N levels below --data instead",
            len(merged),
            name,
            ", ".join(merged[name][:3]) + (f" and {len(merged[name]) - 3} more" if len(merged[name]) > 3 else ""),
        )


def _levels(n, unit="level"):
    """'1 level', '2 levels'."""
    return f"{n} {unit}{'' if n == 1 else 's'}"
