"""The one exception type that kerakp turns into a one-line message and exit code 2."""


class KerakpError(Exception):
    """A problem with the user's input (file, option, data) that has a clear one-line explanation."""
