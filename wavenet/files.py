"""File and folder utilities every module shares: atomic writes, numbered files, output folders (no torch)."""

import contextlib
import contextvars
import dataclasses
import errno
import fcntl
import io
import os
import re
import tempfile
import time
import warnings

from .errors import UserError

LOCK_FILE = ".run.lock"  # in an output folder while a run writes it; holds that run's pid
# errors that say the disk, not the folder, is the problem: freeing space is the fix
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class WriteError(UserError, OSError):
    """A file could not be written (full disk, quota, read-only or failing device).

    A UserError, so that cli.run prints its one line; an OSError too (errno, strerror, filename),
    so that callers that already report their own OSErrors with their flag (plot_stats.py) go on doing so.
    """

    def __init__(self, path, error):
        reason = error.strerror or str(error)
        OSError.__init__(self, error.errno, reason, path)
        space = error.errno in NO_SPACE or error.errno is None  # no errno: a writer's own failure, mostly a full disk
        fix = "free some space or pick another folder" if space else "pick another folder"
        self.message = f"cannot write {path!r} ({reason}); {fix}"

    def __str__(self):
        return self.message


class _Watched:
    """A file object that remembers the first OSError its writes raised.

    Some writers do not let that error through: torch.save turns it into a RuntimeError about its
    zip writer, soundfile into a failed assertion. atomic_write reports the OSError instead.
    """

    def __init__(self, f):
        self._f, self.error = f, None

    def __getattr__(self, name):  # read, tell, ... as the file's own
        return getattr(self._f, name)

    def fileno(self):
        # no descriptor: a writer that finds one may write past write() (Pillow's encoders do for
        # some formats), and an error there would not be seen here
        raise io.UnsupportedOperation("fileno")

    def _call(self, name, *args):
        try:
            return getattr(self._f, name)(*args)
        except OSError as e:
            self.error = self.error or e
            raise

    def write(self, data):
        return self._call("write", data)

    def writelines(self, lines):
        return self._call("writelines", lines)

    def flush(self):
        return self._call("flush")

    def seek(self, *args):
        return self._call("seek", *args)

    def truncate(self, *args):
        return self._call("truncate", *args)


def atomic_write(path, write):
    """Call write(file_object) on a temporary file beside `path`, fsync it, then rename it over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one. When the disk
    refuses (full, quota, read-only, I/O error) the temporary file is removed, the old file stays, and
    WriteError names `path`, the reason and the fix. Other errors of `write` pass through unchanged.
    """
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    except OSError as e:
        raise WriteError(path, e) from None
    umask = os.umask(0)
    os.umask(umask)
    f = None
    writing = False  # an OSError that `write` raises itself (not through the file) is not a disk error
    try:
        raw = os.fdopen(fd, "wb")
        try:
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it a new file's usual mode
            f = _Watched(raw)
            writing = True
            write(f)
            writing = False
            raw.flush()
            os.fsync(raw.fileno())
        except BaseException:
            with contextlib.suppress(OSError):  # flushing the rest of a failed write would only fail again
                raw.close()
            raise
        raw.close()
        if f.error is not None:  # a writer that swallowed the error (and so wrote a torn file)
            raise f.error
        os.replace(tmp, path)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, Exception) and not isinstance(e, UserError):
            if f is not None and f.error is not None:
                raise WriteError(path, f.error) from None
            if isinstance(e, OSError) and not writing:
                raise WriteError(path, e) from None
        raise


def newest(folder, prefix):
    """The file `<prefix><N>` with the largest N in `folder`, or None."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)")
    found = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := pattern.fullmatch(name))]
    return os.path.join(folder, max(found)[1]) if found else None


def check_output_file(path, flag, example):
    """UserError naming `flag` unless `path` can name a file to write: not a folder, and in an existing folder.

    Scripts call it before their minutes of work, for every file they write only at the end;
    `example` is a file name to suggest when `path` is a folder ("samples.png").
    """
    if os.path.isdir(path):
        raise UserError(f"{flag} {path!r} is a folder; pass a file name such as {os.path.join(path, example)!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UserError(f"{flag} {path!r}: {folder!r} is not an existing folder; create it or pick another path")


@dataclasses.dataclass
class _Run:
    """What one `removing_empty_on_failure` block (one script run) owns."""

    created: list  # folders writable_folder made, deepest first
    locks: contextlib.ExitStack  # the folder locks it holds
    locked: set  # their real paths


_run = contextvars.ContextVar("run", default=None)


def writable_folder(path, flag):
    """Create folder `path` if needed; UserError naming `flag` if it cannot be written.

    Inside a `removing_empty_on_failure` block (every script's run), the folder is also locked
    (see folder_lock) until the block ends: the main process of a run is the only writer.
    """
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
    run = _run.get()
    if run is not None:
        run.created.extend(missing)
    if not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path!r}: the folder is not writable; pick a folder you can write")
    if run is not None and os.path.realpath(path) not in run.locked and _is_main_process():
        run.locks.enter_context(folder_lock(path, flag))
        run.locked.add(os.path.realpath(path))
    return path


def _is_main_process():
    """Rank 0 of a torchrun run, or a process run alone: the one that writes the run's files."""
    from .distributed import environment  # imports torch; only a script's run gets here

    return environment().rank == 0


@contextlib.contextmanager
def folder_lock(path, flag):
    """Hold an exclusive lock on folder `path` for the block; UserError naming `flag` if another run holds it.

    The lock is flock(2) on LOCK_FILE in the folder, which holds the pid of its owner: the kernel
    drops it when the process ends, so a run killed with SIGKILL never leaves the folder locked (only
    the file, which the next run takes over). The file is removed when the block ends.
    """
    lock_path = os.path.join(path, LOCK_FILE)
    fd = _acquire(lock_path, flag, path)
    if fd is None:  # a file system without locks: go on as before
        yield
        return
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.remove(lock_path)  # while still holding it: no other run holds this file meanwhile
        os.close(fd)


def _acquire(lock_path, flag, folder):
    """An open, locked descriptor of lock_path; None where the file system has no locks."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise WriteError(lock_path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _owner(fd)
            os.close(fd)
            raise UserError(
                f"{flag} {folder!r} is in use by another run ({pid}); wait for it to finish or pick another folder"
            ) from None
        except OSError as e:  # e.g. ENOLCK on some network file systems
            os.close(fd)
            warnings.warn(f"{flag} {folder!r}: cannot lock the folder ({e.strerror}); two runs into it would clash")
            return None
        # the owner before us removes the file just before it unlocks it: if we locked that removed
        # file, the path now names another one (or none), so start again on the path's file
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _owner(fd, tries=20):
    """'pid N' of the run that holds the lock file `fd`, read from it (the owner writes it just after locking)."""
    for _ in range(tries):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text.isdigit():
            return f"pid {text}"
        time.sleep(0.01)
    return "pid unknown"


@contextlib.contextmanager
def removing_empty_on_failure():
    """The block of one script run (cli.run): the output folders writable_folder checks in it are locked
    until it ends, and if it raises, the folders writable_folder created in it that are still empty are removed.

    rmdir never removes content, so a folder that holds anything (or existed before) stays.
    """
    run = _Run([], contextlib.ExitStack(), set())
    token = _run.set(run)
    try:
        with run.locks:  # released first: its lock file must be gone before an empty folder is removed
            yield
    except BaseException:
        for folder in run.created:
            with contextlib.suppress(OSError):  # not empty (or gone): keep it
                os.rmdir(folder)
        raise
    finally:
        _run.reset(token)
