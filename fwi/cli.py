"""Shared CLI plumbing: expected errors become one readable line on stderr and exit code 2 (a full disk too: one
line naming the place, see `fwi.atomic.DiskFullError`).

Set ``FWI_DEBUG=1`` to get the full traceback instead (the catch is broad: torch reports some user errors, such as
running out of memory, as RuntimeError).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from typing import Callable

from fwi.atomic import DiskFullError, is_disk_full

#: Errors a user can cause with their input; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileExistsError, FileNotFoundError, RuntimeError, OSError)


def friendly_errors(main: Callable[..., int | None]) -> Callable[..., int]:
    """Wrap a CLI ``main`` so user errors print ``error: <message>`` and exit 2; Ctrl-C exits 130."""
    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        except USER_ERRORS as exc:
            if os.environ.get("FWI_DEBUG"):
                raise
            if is_disk_full(exc) and not isinstance(exc, DiskFullError):  # a write outside fwi.atomic
                exc = DiskFullError(exc.filename)
            print("error: " + " ".join(str(exc).split()), file=sys.stderr)  # one line, whatever the message
            return 2
    return wrapped


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--workers 0`` is an error, not a silent 1)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {value}")
    return value


class ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's error style: one ``error: ... (see PROG --help)`` line and exit 2, no usage dump.

    Every argparse-based CLI builds its parser from this class (the tyro-based ``fwi.train`` gives the same line
    through ``fwi.config.one_line_cli_error``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {' '.join(message.split())} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)
