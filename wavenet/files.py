"""File and folder utilities every module shares: atomic writes, numbered files, output folders (no torch)."""

import contextlib
import contextvars
import os
import re
import tempfile

from .errors import UserError

# folders writable_folder made during the current `removing_empty_on_failure` block, deepest first
_created = contextvars.ContextVar("created_folders", default=None)


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


def writable_folder(path, flag):
    """Create folder `path` if needed; UserError naming `flag` if it cannot be written."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path!r} is a file, not a folder; pick a folder (a new one is created)")
    missing = []  # the folders makedirs will create, deepest first
    parent = os.path.abspath(path)
    while not os.path.exists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(
            f"{flag} {path!r}: cannot create the folder ({e.strerror}); pick a folder you can write"
        ) from None
    created = _created.get()
    if created is not None:
        created.extend(missing)
    if not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path!r}: the folder is not writable; pick a folder you can write")
    return path


@contextlib.contextmanager
def removing_empty_on_failure():
    """If the block raises, remove the folders writable_folder created in it that are still empty.

    rmdir never removes content, so a folder that holds anything (or existed before) stays.
    """
    token = _created.set([])
    try:
        yield
    except BaseException:
        for folder in _created.get():
            with contextlib.suppress(OSError):  # not empty (or gone): keep it
                os.rmdir(folder)
        raise
    finally:
        _created.reset(token)
