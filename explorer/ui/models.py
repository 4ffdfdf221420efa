"""Networks with weights for the Classify & Explain page: what to load, loaded once, shared read-only,
and what to tell a person using the app when the ImageNet weights are not there."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from explorer.files import save_upload
from explorer.spec import Spec, load_spec, parse_spec
from explorer.weights import (
    LoadedModel,
    WeightsEntry,
    WeightsError,
    downloads_allowed,
    hub_checkpoint_dir,
    imagenet_for,
    list_weights,
    load_model,
)

IMAGENET, RANDOM, DIGITS, FILE = "ImageNet (official)", "Random (seeded)", "Shipped digits model", "A checkpoint file"
MODES = (IMAGENET, RANDOM, DIGITS, FILE)
PRESETS = ("xception", "inception_v3")
NAMES = {"xception": "Xception", "inception_v3": "Inception V3", "mini_xception": "Mini Xception"}


@dataclass(frozen=True)
class Choice:
    """One network to run: a spec (YAML, None when the weights carry it) and its weights
    (``imagenet``, ``random``, a registry entry's name or a file path)."""

    label: str
    spec_yaml: str | None
    weights: str


def network_name(name: str) -> str:
    """A spec name as people write it: ``inception_v3`` → ``Inception V3`` (unknown names unchanged)."""
    return NAMES.get(name, name)


def official_entries() -> list[WeightsEntry]:
    """The registry's downloadable (ImageNet) weights sets."""
    return [entry for entry in list_weights() if not entry.shipped]


def shipped_entry() -> WeightsEntry:
    """The weights set that comes with the explorer (the digits model)."""
    return next(entry for entry in list_weights() if entry.shipped)


def missing_imagenet() -> list[WeightsEntry]:
    """The official weights sets whose file is not on this machine."""
    return [entry for entry in official_entries() if not entry.path.is_file()]


def default_mode() -> tuple[str, str | None]:
    """The mode the page opens in, and why when it is not ImageNet: with the ImageNet checkpoints
    missing, the shipped digits model (no download, real predictions) rather than two random networks."""
    missing = missing_imagenet()
    if not missing:
        return IMAGENET, None
    files = " and ".join(f"`{entry.file_name}`" for entry in missing)
    then = ("choose *ImageNet (official)* to download them" if downloads_allowed()
            else "downloads are off, see *ImageNet (official)* for how to add them")
    return DIGITS, (f"Opened with the shipped digits model because the ImageNet weights ({files}) are not on "
                    f"this machine; {then}.")


def _imagenet_entry(spec: Spec | None) -> WeightsEntry | None:
    """The official set that fits ``spec`` (None when none does: then there is no file to ask for)."""
    if spec is None:
        return None
    try:
        return imagenet_for(spec)[0]
    except WeightsError:
        return None


def missing_weights_help(entry: WeightsEntry | None, reason: str) -> str:
    """What to do when a network's ImageNet weights could not be had, in an app user's terms
    (a file, a folder, a page to choose; not a command-line flag)."""
    if entry is None or entry.path.is_file():
        return f"{reason[:1].upper()}{reason[1:]}."  # not a missing file: the loader's own words
    failed = "" if "downloads are off" in reason else " (the download did not work)"
    return (f"The ImageNet weights file `{entry.file_name}` is not on this machine{failed}. To use them, "
            f"download [{entry.file_name}]({entry.url}), put it in the folder `{hub_checkpoint_dir()}` "
            f"and reload the page. Meanwhile the *Shipped digits model* works with no download, and *A checkpoint "
            f"file* takes your own weights.")


LOADING = "Loading the network and its weights…"


@st.cache_data(max_entries=64, show_spinner=LOADING)
def _weights_for(spec_yaml: str | None, weights: str, stamp: tuple) -> tuple[str, str | None]:
    """The weights to load and, when the ImageNet ones could not be had, what to do about it (then the
    random ones). Only this answer is kept here, so a missing checkpoint is looked for once, not at every
    rerun; the network itself lives in :func:`explorer.weights.load_model`'s byte-bounded cache."""
    if weights != "imagenet":
        return weights, None
    spec = _spec(spec_yaml)
    try:
        load_model(spec, "imagenet")
    except WeightsError as exc:
        if spec is None:
            raise
        return "random", missing_weights_help(_imagenet_entry(spec), str(exc))
    return "imagenet", None


@st.cache_data(max_entries=64, show_spinner=False)
def _spec(spec_yaml: str | None) -> Spec | None:
    return parse_spec(spec_yaml) if spec_yaml else None


def _stamp(spec_yaml: str | None, weights: str) -> tuple:
    """Changes when the official checkpoint appears (or changes) on disk, so a cached random stand-in
    does not outlive its reason once the user has put the file in place."""
    if weights != "imagenet" or not spec_yaml:
        return ()
    entry = _imagenet_entry(_spec(spec_yaml))
    if entry is None:
        return ()
    try:
        stat = entry.path.stat()
    except OSError:
        return (str(entry.path), "missing")
    return (str(entry.path), stat.st_size, stat.st_mtime_ns)


def load(choice: Choice) -> tuple[LoadedModel, str | None]:
    """The loaded network (shared by the server's sessions: read-only) and, if the ImageNet weights were
    missing, what to do about it (the network then runs with random weights).

    The networks are kept by :func:`explorer.weights.load_model` alone, within the limit
    ``model_cache_bytes``: the app keeps no reference of its own that would hold one past its eviction.
    """
    weights, missing = _weights_for(choice.spec_yaml, choice.weights, _stamp(choice.spec_yaml, choice.weights))
    with st.spinner(LOADING):  # drawn only when loading takes a while (a cache hit takes milliseconds)
        return load_model(_spec(choice.spec_yaml), weights), missing


def saved_upload(data: bytes, name: str) -> str:
    """Keep an uploaded checkpoint in a private file named by its content (so the cache key is stable),
    written whole, in a folder kept under ``upload_dir_bytes`` (:func:`explorer.files.save_upload`)."""
    return str(save_upload(data, name))


def imagenet_networks(current: Spec) -> dict[str, str]:
    """Network choices for ImageNet weights, by the name people read: the two presets, and the
    sidebar's network if it differs from both."""
    options = {network_name(name): load_spec(name).to_yaml() for name in PRESETS}
    if current.to_yaml() not in options.values():
        options[f"Sidebar network ({network_name(current.name)}, edited)"] = current.to_yaml()
    return options


def digits_choice() -> Choice:
    """The shipped network (the mini Xception trained on the digits): no download."""
    entry = shipped_entry()
    return Choice(f"{network_name(entry.spec().name)} (digits)", None, entry.name)


def shipped_caption() -> str:
    """What the shipped model is, with its measured accuracy (from the registry, i.e. the file itself)."""
    entry = shipped_entry()
    accuracy = entry.accuracy[0]
    return (f"{network_name(entry.spec().name)} trained on scikit-learn's handwritten digits "
            f"({accuracy.top1:.1f} % test accuracy): works with no download.")
