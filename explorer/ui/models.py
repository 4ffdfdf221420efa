"""Networks with weights for the Classify & Explain page: what to load, loaded once, shared read-only,
and what to tell a person using the app when the ImageNet weights are not there."""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from explorer.infer import OFFICIAL, LoadedModel, WeightsError, hub_checkpoint_dir, load_model, spec_family
from explorer.infer.weights import downloads_allowed
from explorer.lab import DIGITS_CHECKPOINT
from explorer.spec import Spec, load_spec, parse_spec

IMAGENET, RANDOM, DIGITS, FILE = "ImageNet (official)", "Random (seeded)", "Shipped digits model", "A checkpoint file"
MODES = (IMAGENET, RANDOM, DIGITS, FILE)
PRESETS = ("xception", "inception_v3")
NAMES = {"xception": "Xception", "inception_v3": "Inception V3", "mini_xception": "Mini Xception"}


@dataclass(frozen=True)
class Choice:
    """One network to run: a spec (YAML, None when the checkpoint carries it) and its weights."""

    label: str
    spec_yaml: str | None
    weights: str  # "imagenet", "random" or a file path


def network_name(name: str) -> str:
    """A spec name as people write it: ``inception_v3`` → ``Inception V3`` (unknown names unchanged)."""
    return NAMES.get(name, name)


def official_path(family: str) -> Path:
    """Where the official checkpoint of ``family`` must be for the app to find it."""
    return hub_checkpoint_dir() / OFFICIAL[family].file_name


def missing_imagenet() -> list[str]:
    """The families (``xception``, ``inception_v3``) whose ImageNet checkpoint is not on this machine."""
    return [family for family in PRESETS if not official_path(family).is_file()]


def default_mode() -> tuple[str, str | None]:
    """The mode the page opens in, and why when it is not ImageNet: with the ImageNet checkpoints
    missing, the shipped digits model (no download, real predictions) rather than two random networks."""
    missing = missing_imagenet()
    if not missing:
        return IMAGENET, None
    files = " and ".join(f"`{OFFICIAL[f].file_name}`" for f in missing)
    then = ("choose *ImageNet (official)* to download them" if downloads_allowed()
            else "downloads are off, see *ImageNet (official)* for how to add them")
    return DIGITS, (f"Opened with the shipped digits model because the ImageNet weights ({files}) are not on "
                    f"this machine; {then}.")


def missing_weights_help(family: str | None, reason: str) -> str:
    """What to do when a network's ImageNet weights could not be had, in an app user's terms
    (a file, a folder, a page to choose; not a command-line flag)."""
    if family is None or official_path(family).is_file():
        return f"{reason[:1].upper()}{reason[1:]}."  # not a missing file: the loader's own words
    official = OFFICIAL[family]
    failed = "" if "downloads are off" in reason else " (the download did not work)"
    return (f"The ImageNet weights file `{official.file_name}` is not on this machine{failed}. To use them, "
            f"download [{official.file_name}]({official.url}), put it in the folder `{hub_checkpoint_dir()}` "
            f"and reload the page. Meanwhile the *Shipped digits model* works with no download, and *A checkpoint "
            f"file* takes your own weights.")


@st.cache_resource(max_entries=6, show_spinner="Loading the network and its weights…")
def _load(spec_yaml: str | None, weights: str, stamp: tuple) -> tuple[LoadedModel, str | None]:
    spec = parse_spec(spec_yaml) if spec_yaml else None
    if weights != "imagenet":
        return load_model(spec, weights), None
    try:
        return load_model(spec, "imagenet"), None
    except WeightsError as exc:
        if spec is None:
            raise
        return load_model(spec, "random"), missing_weights_help(spec_family(spec), str(exc))


def _stamp(spec_yaml: str | None, weights: str) -> tuple:
    """Changes when the official checkpoint appears (or changes) on disk, so a cached random stand-in
    does not outlive its reason once the user has put the file in place."""
    if weights != "imagenet" or not spec_yaml:
        return ()
    family = spec_family(parse_spec(spec_yaml))
    if family is None:
        return ()
    path = official_path(family)
    try:
        stat = path.stat()
    except OSError:
        return (str(path), "missing")
    return (str(path), stat.st_size, stat.st_mtime_ns)


def load(choice: Choice) -> tuple[LoadedModel, str | None]:
    """The loaded network (cached across sessions: read-only) and, if the ImageNet weights were missing,
    what to do about it (the network then runs with random weights)."""
    return _load(choice.spec_yaml, choice.weights, _stamp(choice.spec_yaml, choice.weights))


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
    """Network choices for ImageNet weights, by the name people read: the two presets, and the
    sidebar's network if it differs from both."""
    options = {network_name(name): load_spec(name).to_yaml() for name in PRESETS}
    if current.to_yaml() not in options.values():
        options[f"Sidebar network ({network_name(current.name)}, edited)"] = current.to_yaml()
    return options


def digits_choice() -> Choice:
    """The shipped mini Xception trained on the digits (no download)."""
    return Choice("Mini Xception (digits)", None, str(DIGITS_CHECKPOINT))
