"""The one exception type for mistakes a user can fix (bad file, unknown board, dead port).

The CLI prints its message on one line and exits with code 2; anything else is a bug and keeps
its traceback.
"""


class AqError(Exception):
    """A user-facing error: the message names what the user gave and what to do about it."""
