"""Per-session state of the workbench: the base spec, the knobs, the pinned configuration.

The *base* spec is what the user chose or edited (a preset, an uploaded file,
an applied table or YAML edit). The *current* spec is the base with the
sidebar's knobs applied. Everything lives in ``st.session_state``, so it
survives page switches and no session sees another's.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from explorer.spec import (
    KNOB_HELP,
    Spec,
    SpecError,
    changed_knobs,
    knob_values,
    list_presets,
    load_spec,
    parse_spec,
)

DEFAULT_PRESET = "xception"
_BASE = "base_yaml"
_SOURCE = "base_source"
_PINNED = "pinned_yaml"
_PINNED_LABEL = "pinned_label"
_KNOB_PREFIX = "knob_"
_EPOCH = "base_epoch"  # bumps when the base changes, so widgets keyed on it start afresh


def _init() -> None:
    if _BASE not in st.session_state:
        st.session_state[_BASE] = load_spec(DEFAULT_PRESET).to_yaml()
        st.session_state[_SOURCE] = DEFAULT_PRESET
        st.session_state[_EPOCH] = 0


def base_spec() -> Spec:
    """The spec the knobs apply to."""
    _init()
    return _parse(st.session_state[_BASE])


@st.cache_data(max_entries=64, show_spinner=False)
def _parse(text: str) -> Spec:
    return parse_spec(text)


def base_source() -> str:
    """Where the base came from: a preset name, a file name or 'edited'."""
    _init()
    return st.session_state[_SOURCE]


def epoch() -> int:
    """A number that changes whenever the base spec does (for widget keys)."""
    _init()
    return st.session_state[_EPOCH]


def set_base(spec: Spec, source: str) -> None:
    """Make ``spec`` the base and reset the knobs to its own values."""
    _init()
    st.session_state[_BASE] = spec.to_yaml()
    st.session_state[_SOURCE] = source
    st.session_state[_EPOCH] += 1
    for key in [k for k in st.session_state if str(k).startswith(_KNOB_PREFIX)]:
        del st.session_state[key]


def knob_state() -> dict[str, Any]:
    """The knob values chosen in the sidebar (only knobs that apply to the base)."""
    base = base_spec()
    return {k: st.session_state.get(_KNOB_PREFIX + k, v) for k, v in knob_values(base).items()}


def changed_knob_names() -> set[str]:
    """The knobs whose sidebar value differs from the base spec's own."""
    return set(changed_knobs(base_spec(), knob_state()))


def current_spec() -> Spec:
    """The base with the sidebar's knobs applied. A knob error leaves the base as it is and says why."""
    base = base_spec()
    knobs = changed_knobs(base, knob_state())
    if not knobs:
        return base
    try:
        return _apply(st.session_state[_BASE], tuple(sorted(knobs.items())))
    except SpecError as exc:
        st.sidebar.error(f"Knobs not applied: {exc}")
        return base


@st.cache_data(max_entries=64, show_spinner=False)
def _apply(base_yaml: str, knobs: tuple[tuple[str, Any], ...]) -> Spec:
    return parse_spec(base_yaml).with_overrides(**dict(knobs))


def pin_current(label: str) -> None:
    """Keep the current configuration as A for comparisons."""
    st.session_state[_PINNED] = current_spec().to_yaml()
    st.session_state[_PINNED_LABEL] = label


def pinned() -> tuple[Spec, str] | None:
    """The pinned configuration A and its label, if any."""
    text = st.session_state.get(_PINNED)
    return (_parse(text), st.session_state.get(_PINNED_LABEL, "A")) if text else None


def unpin() -> None:
    st.session_state.pop(_PINNED, None)


def sidebar_controls() -> None:
    """The preset picker and the knobs, in the sidebar of every page."""
    _init()
    side = st.sidebar
    presets = list_presets()
    source = base_source()
    options = presets + ([source] if source not in presets else [])
    choice = side.selectbox("Network", options, index=options.index(source), key=f"preset_{epoch()}",
                            help="A shipped preset, or the spec you uploaded or edited.")
    if choice != source and choice in presets:
        set_base(load_spec(choice), choice)
        st.rerun()
    values = knob_values(base_spec())
    side.markdown("**Knobs** — the paper's ablations and more")
    _knob_widgets(side, values)
    if changed_knobs(base_spec(), knob_state()) and side.button("Reset knobs", width="stretch"):
        for key in [k for k in st.session_state if str(k).startswith(_KNOB_PREFIX)]:
            del st.session_state[key]
        st.rerun()


def _knob_widgets(side: Any, values: dict[str, Any]) -> None:
    def key(name: str) -> str:
        return _KNOB_PREFIX + name

    if "residual" in values:
        side.toggle("Residual connections", value=values["residual"], key=key("residual"), help=KNOB_HELP["residual"])
    if "mid_activation" in values:
        options = ["none", "relu", "elu"]
        side.selectbox("Activation between depthwise and pointwise", options,
                       index=options.index(values["mid_activation"]), key=key("mid_activation"),
                       help=KNOB_HELP["mid_activation"])
    if "middle_repeats" in values:
        side.number_input("Middle-flow blocks", 0, 32, int(values["middle_repeats"]), key=key("middle_repeats"),
                          help=KNOB_HELP["middle_repeats"])
    side.select_slider("Width multiplier", [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0], value=1.0, key=key("width"),
                       help=KNOB_HELP["width"])
    if "segments" in values:
        options: list[Any] = [1, 2, 4, 8, "depthwise"]
        if values["segments"] not in options:
            options.insert(0, values["segments"])
        side.select_slider("Segments of the spatial conv", options, value=values["segments"], key=key("segments"),
                           help=KNOB_HELP["segments"] + ". The paper's spectrum from a regular conv to depthwise.")
    side.number_input("Input size (px)", 16, 1024, int(values["input_size"]), step=1, key=key("input_size"),
                      help=KNOB_HELP["input_size"])
    side.number_input("Classes", 1, 100_000, int(values["num_classes"]), key=key("num_classes"),
                      help=KNOB_HELP["num_classes"])
    if "aux_logits" in values:
        side.toggle("Auxiliary head", value=True, key=key("aux_logits"), help=KNOB_HELP["aux_logits"])
