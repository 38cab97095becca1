"""The one exception type that front ends turn into a one-line message.

Anything the user can fix (a missing file, an unknown layer, an unwritable path, a full disk) is
raised as `StreamdreamError` with a message that says what to do; the CLI prints it on one line and
exits with `exit_code`: 2 for bad input or options, 1 when the machine failed the run (disk full).
Everything else is a bug and keeps its traceback.
"""

import sys


class StreamdreamError(Exception):
    """A problem with the user's input or environment, worded for the user."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is the machine running out of memory: a `MemoryError` or a CUDA out-of-memory.

    Read from `sys.modules` so that a front end can ask before (or without) importing torch.
    """
    torch = sys.modules.get("torch")
    return isinstance(error, MemoryError) or (torch is not None and isinstance(error, torch.OutOfMemoryError))
