"""The one exception type that front ends turn into a one-line message.

Anything the user can fix (a missing file, an unknown layer, an unwritable path) is raised as
`StreamdreamError` with a message that says what to do; the CLI prints it on one line and exits 2.
Everything else is a bug and keeps its traceback.
"""


class StreamdreamError(Exception):
    """A problem with the user's input or environment, worded for the user."""
