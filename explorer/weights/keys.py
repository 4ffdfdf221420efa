"""How an official checkpoint's keys become the presets' module paths (one function per layout).

* ``timm-legacy-xception``: ``conv1/bn1`` and ``conv2/bn2`` are the entry
  flow's two convs; ``block1..3`` the entry blocks, ``block4..11`` the middle
  blocks, ``block12`` the exit block; inside a block ``rep`` holds [ReLU,
  SeparableConv, BN] triples (block1 lacks the first ReLU) and
  ``skip/skipbn`` the projection; ``conv3/bn3`` and ``conv4/bn4`` are the exit
  separable convs, ``fc`` the classifier.
* ``torchvision-inception-v3`` and ``explorer``: the names are the presets'
  own, so keys map as they are.

No torch here: a key is a string, a value passes through untouched.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, TypeVar

from explorer.errors import UsageError

V = TypeVar("V")

_XCEPTION_TOP = {
    "conv1": "entry.conv1.conv", "bn1": "entry.conv1.bn",
    "conv2": "entry.conv2.conv", "bn2": "entry.conv2.bn",
    "conv3.conv1": "exit.sep1.depthwise", "conv3.pointwise": "exit.sep1.pointwise", "bn3": "exit.sep1.bn",
    "conv4.conv1": "exit.sep2.depthwise", "conv4.pointwise": "exit.sep2.pointwise", "bn4": "exit.sep2.bn",
    "fc": "exit.fc",
}
_ENTRY_BLOCKS, _MIDDLE_BLOCKS = 3, 8
_REP_ROLE = {0: "act", 1: "sep", 2: "bn"}


def _xception_block(n: int) -> str:
    if n <= _ENTRY_BLOCKS:
        return f"entry.block{n}"
    if n <= _ENTRY_BLOCKS + _MIDDLE_BLOCKS:
        return f"middle.block{n - _ENTRY_BLOCKS}"
    return f"exit.block{n - _ENTRY_BLOCKS - _MIDDLE_BLOCKS}"


def timm_legacy_xception(key: str) -> str:
    """One key of timm's ``legacy_xception`` checkpoint as the xception preset's module path."""
    match = re.match(r"block(\d+)\.(.+)", key)
    if not match:
        for old, new in _XCEPTION_TOP.items():
            if key.startswith(old + "."):
                return new + key[len(old):]
        return key
    n, rest = int(match[1]), match[2]
    block = _xception_block(n)
    if rest.startswith("skipbn."):
        return f"{block}.skip.bn.{rest[len('skipbn.'):]}"
    if rest.startswith("skip."):
        return f"{block}.skip.conv.{rest[len('skip.'):]}"
    rep = re.match(r"rep\.(\d+)\.(.+)", rest)
    if not rep:
        return f"{block}.{rest}"
    position = int(rep[1]) + (1 if n == 1 else 0)  # block1 starts without its ReLU
    index, role = position // 3 + 1, _REP_ROLE[position % 3]
    tail = rep[2].replace("conv1.", "depthwise.", 1) if role == "sep" else rep[2]
    return f"{block}.{role}{index}.{tail}"


def _same(key: str) -> str:
    return key


KEY_MAPS: dict[str, Callable[[str], str]] = {
    "timm-legacy-xception": timm_legacy_xception,
    "torchvision-inception-v3": _same,
    "explorer": _same,
}


def convert_state_dict(state_dict: Mapping[str, V], layout: str) -> dict[str, V]:
    """Rename a checkpoint's keys from ``layout`` (one of :data:`KEY_MAPS`) to the presets' module paths."""
    if layout not in KEY_MAPS:
        raise UsageError("layout", f"unknown checkpoint layout '{layout}' (known: {', '.join(KEY_MAPS)})")
    rename = KEY_MAPS[layout]
    return {rename(k): v for k, v in state_dict.items()}
