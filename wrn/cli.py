"""The command-line contract every entry point of the suite keeps: bad input is one line on stderr and
exit code 2, never a traceback.

`ArgumentParser` turns argparse's usage errors (which print the usage block and exit) into a
`UsageError`; `run_main` is the one top-level handler that prints any `UserError` as
``error: <message>`` and returns 2. Entry points write ``sys.exit(run_main(_main, argv))``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from wrn.errors import UsageError, UserError

EXIT_USER_ERROR = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error raises `UsageError` (one line naming the program) instead of
    printing the usage block and exiting."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see --help)")


def run_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """`main(argv)`'s exit code, or 2 with ``error: <message>`` on stderr for a `UserError`."""
    try:
        return main(argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
