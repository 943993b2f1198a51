"""Committing a preprocessed folder's four files as a whole, and clearing what killed runs left there.

The four files are committed as a whole. A run writes them into a hidden staging folder of its own,
`.vctk_staging.<pid>.tmp` in the output folder (the pid tells a later run whether its writer is
gone), and commits them with one atomic step: renaming that folder to `.vctk_commit` (the journal).
Then it moves the four files out into the output folder, meta last, and removes the journal. Before the
rename the output folder holds the old files untouched; after it the new output is complete, each file
either still in the journal or already moved, and readers take each file from the journal where it is
there (`corpus.path_of`). A kill at any moment thus leaves the whole old output or the whole new one, and the
next preprocess finishes an interrupted move (`finish_commit`) and removes stale staging folders
(`remove_stale`). Alternatives not taken: renaming files one by one with a commit record alone detects
a mix but cannot bring back the old file the first rename replaced; exchanging the whole output folder
with a staged one (renameat2 RENAME_EXCHANGE, Linux only) would also swap away every other file a user
keeps there, the folder lock included, and needs the parent folder writable.
"""

import contextlib
import json
import os
import re
import shutil

from .corpus import FEATURES_FILE, JOURNAL, META_FILE, OUTPUT_FILES, PREFIX

STAGING = re.compile(r"\." + PREFIX + r"staging\.(\d+)\.tmp")  # a run's files before their commit
# what atomic_write left of our files before they were staged in a folder: .vctk_codes.npy.k3j9x_.tmp
OLD_TEMPORARY = re.compile("|".join(r"\." + re.escape(name) + r"\.\w+\.tmp" for name in OUTPUT_FILES))


# The writer's side of the commit. Each step that changes the folder is one of the three functions
# below, so that a test can stop the process at every one of them.


def _rename(source, target):
    os.rename(source, target)


def _sync_folder(folder):
    """fsync a folder, which makes the renames in it durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)


def make_staging(folder):
    """Create and return this process's staging folder in output folder `folder` (see the module docstring)."""
    staging = os.path.join(folder, f".{PREFIX}staging.{os.getpid()}.tmp")
    _remove_tree(staging)  # left by an earlier process of the same pid, which is gone
    os.mkdir(staging)
    return staging


def discard(staging):
    """Remove a staging folder that will not be committed."""
    _remove_tree(staging)


def commit(folder, staging):
    """Commit the four files in `staging` (each written and fsynced) as the output of `folder`, as a whole."""
    _sync_folder(staging)
    finish_commit(folder)  # an interrupted commit's journal would block the rename
    _rename(staging, os.path.join(folder, JOURNAL))  # the commit: from here on the new output is read
    _sync_folder(folder)
    finish_commit(folder)


def finish_commit(folder):
    """Move the files of a commit's journal into `folder`, meta last, and remove it; nothing if none."""
    journal = os.path.join(folder, JOURNAL)
    if not os.path.isdir(journal):
        return
    if not commits_features(journal):
        # an output without --mel replaces one with it: its features would only mislead
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, FEATURES_FILE))
    for name in OUTPUT_FILES:
        if os.path.exists(os.path.join(journal, name)):
            _rename(os.path.join(journal, name), os.path.join(folder, name))
    _sync_folder(folder)
    _remove_tree(journal)


def commits_features(journal):
    """Whether the commit in `journal` has features; also True once its meta file has moved out, since
    the stale features of an earlier output were removed before anything moved."""
    try:
        with open(os.path.join(journal, META_FILE), encoding="utf-8") as f:
            return "features" in json.load(f)
    except (OSError, ValueError):
        return True


def remove_stale(folder):
    """Finish an interrupted commit in `folder` and remove what killed preprocess runs left there.

    Only this module's names: staging folders whose process is gone, and the temporary files that
    earlier versions wrote beside the output (.vctk_codes.npy.<random>.tmp) that no process holds
    open. Returns the names removed.
    """
    finish_commit(folder)
    removed = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        staging = STAGING.fullmatch(name)
        if staging and not process_alive(int(staging.group(1))):
            _remove_tree(path)
        elif OLD_TEMPORARY.fullmatch(name) and os.path.isfile(path) and held_open(path) is False:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
        else:
            continue
        removed.append(name)
    return removed


def process_alive(pid):
    """Whether process `pid` exists (this process counts as gone: its staging folder is made afresh)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie writes nothing more
    except OSError:
        return True


def held_open(path):
    """Whether a process of this user holds file `path` open (Linux /proc); None where that can't be told."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    target = os.path.realpath(path)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            fds = os.listdir(f"/proc/{pid}/fd")
            for fd in fds:
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return True
    return False
