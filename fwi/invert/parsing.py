"""Parsers of the refinement's text settings, shared by ``fwi.invert`` and ``fwi.evaluate --refine-*``: sample indices,
frequency schedules and starting-model specs. Each raises a ValueError that says what is expected."""

from __future__ import annotations

import math

#: How a selection of samples is written.
INDICES_FORMS = "FIRST:STOP (e.g. 0:24, either end optional) or a comma-separated list (e.g. 0,3,7)"
#: The starting-model specs of ``fwi.invert --start``.
START_FORMS = "run:RUNDIR, smooth:SIGMA (cells), file:PATH or trend"


def parse_indices(text: str, n: int, flag: str = "--indices") -> list[int]:
    """``FIRST:STOP`` or ``I,J,K`` -> indices of a split of ``n`` samples (in the order given)."""
    try:
        if ":" in text:
            a, b = text.split(":", 1)
            idx = list(range(int(a or 0), int(b) if b else n))
        else:
            idx = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ValueError(f"{flag} {text!r}: give {INDICES_FORMS}") from None
    if not idx or any(not 0 <= i < n for i in idx):
        raise ValueError(f"{flag} {text!r} selects nothing or leaves the split (0 .. {n - 1})")
    return idx


def parse_schedule(text: str, flag: str = "--schedule") -> tuple[float | None, ...]:
    """``8,12,full`` -> (8.0, 12.0, None): the stages' low-pass cut-offs in Hz, ``full`` (or none / 0) = full band."""
    out: list[float | None] = []
    for t in text.split(","):
        t = t.strip().lower()
        try:
            out.append(None if t in ("full", "none", "0") else float(t))
        except ValueError:
            raise ValueError(f"{flag} {text!r}: give low-pass cut-offs in Hz and 'full' separated by commas, e.g. "
                             "8,12,full") from None
    return tuple(out)


def parse_start(spec: str) -> tuple[str, str | float]:
    """``KIND:ARG`` of ``--start`` -> (kind, argument): the smoothing of ``smooth:SIGMA`` as a positive float."""
    kind, sep, arg = spec.partition(":")
    if kind == "trend" and not arg:
        return kind, ""
    if kind in ("run", "file") and arg:
        return kind, arg
    if kind == "smooth" and arg:
        try:
            sigma = float(arg)
        except ValueError:
            sigma = float("nan")
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"--start {spec!r}: smooth:SIGMA needs a positive smoothing sigma in cells, e.g. "
                             "smooth:10")
        return kind, sigma
    raise ValueError(f"--start {spec!r}: use {START_FORMS}")
