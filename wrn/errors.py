"""The errors a user can cause, and the one message format they share.

Every mistake in what a user gives the suite (a config value, a spec or profile file, a data folder,
a command-line flag) raises a subclass of `UserError`. Its message is one line that names where the
problem is, the value and what is allowed, so every command-line front end prints it as it is and
exits with code 2 (`wrn.cli.run_main`). Anything else that goes wrong is a bug or a failure of the
machine, and keeps its traceback.

`UserError` is a `ValueError`: each of them is a value that is not allowed, and code that guards a
parse with ``except ValueError`` keeps catching them.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class UserError(ValueError):
    """A mistake in the user's input: printed as one line on stderr, exit code 2, nothing written."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class UsageError(UserError):
    """A command line that does not parse (an unknown flag, a missing argument, a bad value)."""


class ConfigError(UserError):
    """A run-config value that is not allowed, named by field, value and what is allowed."""

    def __init__(self, field_name: str, value: Any, allowed: str):
        self.field_name, self.value, self.allowed = field_name, value, allowed
        super().__init__(f"{field_name}={value!r}: {allowed}")


class DataError(UserError):
    """Missing, corrupt or malformed data; the message names the file and what was expected."""


def suggest(key: str, known: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest of `known`, or '': the hint every validator gives."""
    close = difflib.get_close_matches(str(key), sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
