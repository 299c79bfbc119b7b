"""The one error a command raises to stop with a one-line message and exit status 2."""


class CommandError(Exception):
    """Usage or I/O problem found before any work was done."""
