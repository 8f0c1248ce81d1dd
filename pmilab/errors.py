"""The one exception type for bad user input.

It subclasses ValueError so library callers can catch the usual type; the CLI turns it (and
FileNotFoundError) into one clear line and a non-zero exit, never a traceback.
"""


class InputError(ValueError):
    """Bad input at a boundary: a user table, a spec string, a CLI argument, a config file."""
