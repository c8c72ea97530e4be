"""Pydantic's validation errors as the problems a user reads: ``where: message``.

Every boundary that validates user input (CLI options, request files, operator arguments,
the component catalog) reports errors this way, so the same mistake reads the same
wherever it is made.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import ValidationError


def validation_problems(
    exc: ValidationError, *, empty: str = "input", rename: Mapping[str, str] | None = None
) -> list[tuple[str, str]]:
    """``(where, message)`` per error.

    ``where`` is the location dotted, its first part renamed by ``rename`` (a model field
    to the option or parameter the user wrote), or ``empty`` for the input as a whole; the
    message drops pydantic's ``Value error, `` prefix, which only says a validator raised.
    """
    found: list[tuple[str, str]] = []
    for error in exc.errors():
        parts = [str(part) for part in error["loc"]]
        if parts and rename:
            parts[0] = rename.get(parts[0], parts[0])
        found.append((".".join(parts) or empty, error["msg"].removeprefix("Value error, ")))
    return found


def describe(exc: ValidationError, *, empty: str = "input") -> str:
    """All problems on one line: ``where: message; where: message``."""
    return "; ".join(
        f"{where}: {message}" for where, message in validation_problems(exc, empty=empty)
    )
