"""Errors a user can cause: each one is a single readable line, never a traceback."""

from __future__ import annotations


class ExplorerError(Exception):
    """Base of the errors that reach the user as one line (the CLI exits 2 on them)."""


class SpecError(ExplorerError, ValueError):
    """A spec, an override or a knob is invalid.

    ``path`` names the offending field (``blocks[3] (entry.block3).channels[0]``)
    and ``reason`` says what is wrong; ``str(error)`` is one line holding both.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)
