"""The project's own exceptions: mistakes a user can fix, and runs a user stopped."""


class UserError(Exception):
    """A bad flag, file or folder: the message names the problem and the fix in one line."""

    status = 2  # the exit status of a script that prints it (argparse's for a bad flag)


class Stopped(UserError):
    """A training run stopped by a signal once its snapshot is written; the message says how to go on.

    Its status is the shell's for that signal (130 for Ctrl-C, 143 for SIGTERM), as for a run stopped
    anywhere else.
    """

    def __init__(self, message, signum):
        super().__init__(message)
        self.status = 128 + signum
