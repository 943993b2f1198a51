"""Peak resident memory (max RSS) of a process: its own, not its parent's.

A child's ru_maxrss does not start at zero. When a process execs, Linux folds the high-water mark of
the memory it leaves into the process's maximum, and that memory is the parent's: shared by vfork
(which subprocess uses) or copied by fork. So a subprocess that itself needs 9 MB reports its parent's
peak, 0.8 GB, when the parent once held 0.8 GB (measured with Popen and os.wait4, Linux 6.18); the
same goes for multiprocessing's spawn and for getrusage(RUSAGE_CHILDREN). Two ways round it:

- a process reads its own peak from VmHWM in /proc/self/status, the high-water mark of its own
  address space only (own_peak_bytes);
- a parent that measures a child keeps its own peak small and says how small (this module imports
  no torch), since the child's figure is max(parent's peak, child's own peak) (run_child).
"""

import os
import resource
import subprocess
import sys
import time

POLL_SECONDS = 0.2  # how often run_child looks whether its child has ended


def own_peak_bytes():
    """This process's peak RSS in bytes, inheriting nothing from its parent (VmHWM on Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # "VmHWM:   12345 kB"
    except OSError:
        pass
    return maxrss_bytes(resource.getrusage(resource.RUSAGE_SELF))  # elsewhere: may include the parent's peak


def maxrss_bytes(usage):
    """ru_maxrss of a resource usage in bytes: macOS counts bytes, Linux and the BSDs kilobytes."""
    return usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def run_child(argv, stdout, stderr=subprocess.STDOUT, while_running=None):
    """Run `argv` to its end; returns (exit status, its peak RSS in bytes).

    The peak is max(this process's peak, the child's own): keep this process small. while_running(proc)
    is called every POLL_SECONDS until the child ends (to stop it at some point, for example); it must not block.
    """
    proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr)
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if while_running is not None:
            while_running(proc)
        time.sleep(POLL_SECONDS)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, maxrss_bytes(usage)
