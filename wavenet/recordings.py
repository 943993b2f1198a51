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
