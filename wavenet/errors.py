"""The project's own exception for mistakes a user can fix."""


class UserError(Exception):
    """A bad flag, file or folder: the message names the problem and the fix in one line."""
