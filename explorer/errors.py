"""The errors a user can cause. Each one is a single readable line, never a traceback.

* :class:`ExplorerError` is the base. The CLI prints it as ``error: ...`` and
  exits 2. The app shows it as a message.
* :class:`SpecError` is a spec, an override or a knob that cannot be built. It
  names the field (``blocks[3] (entry.block3).channels[0]``).
* :class:`UsageError` is a bad argument to a library function. It names the
  argument as the Python API spells it (``batch``). The command line rewrites it
  into its own flag (``--batch``) with :func:`for_flags`.

Each feature adds its own subclass (``WeightsError``, ``ImageError``,
``ExplainError``, ...). All of them are also ``ValueError``s, so a caller that
only knows Python's built-in errors still catches them.
"""

from __future__ import annotations

import difflib
from typing import Mapping, Sequence


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


class UsageError(ExplorerError, ValueError):
    """A library function got an argument it cannot use.

    ``argument`` is the parameter's name in the Python API (``batch``, ``by``,
    ``dtype``). ``str(error)`` is ``"batch: must be ..."``. A front end that
    spells the argument another way rewrites it with :func:`for_flags`.
    """

    def __init__(self, argument: str, reason: str) -> None:
        self.argument = argument
        self.reason = reason
        super().__init__(f"{argument}: {reason}")


def unknown(argument: str, what: str, value: str, known: Sequence[str]) -> UsageError:
    """The error for a name that is none of ``known``: ``name: no layer named 'x' (close: 'y')``."""
    close = difflib.get_close_matches(str(value), list(known), n=3)
    hint = f" (close: {', '.join(repr(c) for c in close)})" if close else ""
    return UsageError(argument, f"no {what} named '{value}'{hint}")


def for_flags(error: ExplorerError, flags: Mapping[str, str]) -> str:
    """``error`` as a command line says it: a :class:`UsageError`'s argument becomes its flag.

    ``flags`` maps API argument names to flags (``{"assignments": "--set"}``);
    an argument missing from it keeps its API name. Any other error is
    returned as it is.
    """
    if isinstance(error, UsageError) and error.argument in flags:
        return f"{flags[error.argument]}: {error.reason}"
    return str(error)
