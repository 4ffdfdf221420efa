"""Networks with weights for the Classify & Explain page: what to load, loaded once, shared read-only."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from explorer.infer import LoadedModel, load_model, load_or_random
from explorer.lab import DIGITS_CHECKPOINT
from explorer.spec import Spec, load_spec, parse_spec

IMAGENET, RANDOM, DIGITS, FILE = "ImageNet (official)", "Random (seeded)", "Shipped digits model", "A checkpoint file"
MODES = (IMAGENET, RANDOM, DIGITS, FILE)


@dataclass(frozen=True)
class Choice:
    """One network to run: a spec (YAML, None when the checkpoint carries it) and its weights."""

    label: str
    spec_yaml: str | None
    weights: str  # "imagenet", "random" or a file path


@st.cache_resource(max_entries=6, show_spinner="Loading the network and its weights…")
def _load(spec_yaml: str | None, weights: str) -> tuple[LoadedModel, str | None]:
    spec = parse_spec(spec_yaml) if spec_yaml else None
    if weights == "imagenet":
        return load_or_random(spec, "imagenet")
    return load_model(spec, weights), None


def load(choice: Choice) -> tuple[LoadedModel, str | None]:
    """The loaded network (cached across sessions: read-only) and, if the weights were missing, why."""
    return _load(choice.spec_yaml, choice.weights)


def saved_upload(data: bytes, name: str) -> str:
    """Keep an uploaded checkpoint in a file named by its content (so the cache key is stable)."""
    digest = hashlib.sha256(data).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "explorer-uploads"
    folder.mkdir(exist_ok=True)
    path = folder / f"{digest}-{Path(name).name}"
    if not path.exists():
        path.write_bytes(data)
    return str(path)


def imagenet_networks(current: Spec) -> dict[str, str]:
    """Network choices for ImageNet weights: the two presets and the sidebar's network if it differs."""
    options = {name: load_spec(name).to_yaml() for name in ("xception", "inception_v3")}
    if current.to_yaml() not in options.values():
        options[f"sidebar: {current.name}"] = current.to_yaml()
    return options


def digits_choice() -> Choice:
    return Choice("mini_xception (digits)", None, str(DIGITS_CHECKPOINT))
