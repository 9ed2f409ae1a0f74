"""The one exception type that command-line front ends turn into a one-line message and exit 2."""


class UserError(Exception):
    """A mistake in the user's input: printed as one line on stderr, exit code 2, nothing written."""
