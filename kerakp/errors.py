"""The exception kerakp turns into a one-line message and exit code 2, and its warning category."""


class KerakpError(Exception):
    """A problem with the user's input (file, option, data) that has a clear one-line explanation."""


class KerakpWarning(UserWarning):
    """Something the user should know that does not stop the work (the CLI prints it as one line)."""
