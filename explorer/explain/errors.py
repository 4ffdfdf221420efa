"""The explain feature's user errors: each one is a single readable line."""

from __future__ import annotations

from explorer.errors import ExplorerError


class ExplainError(ExplorerError, ValueError):
    """A method, option, layer, target or input that cannot be explained; the message says why."""


class EmptyMapError(ExplainError):
    """An attribution map that is all zeros (or not finite) and so has nothing to draw.

    Raised by the views instead of dividing by zero (Captum's
    ``visualize_image_attr`` asserts on such a map); ``str(error)`` says which
    map and what to try instead.
    """
