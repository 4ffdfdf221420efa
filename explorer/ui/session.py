"""Per-session state of the workbench: the base spec, the knobs, the pinned configuration.

The *base* spec is what the user chose or edited (a preset, an uploaded file,
an applied table or YAML edit). The *current* spec is the base with the
sidebar's knobs applied. Everything lives in ``st.session_state``, so it
survives page switches and no session sees another's.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from explorer.cost.whatif import segment_choices
from explorer.spec import (
    KNOB_HELP,
    Spec,
    SpecError,
    changed_knobs,
    knob_values,
    list_presets,
    load_spec,
    parse_spec,
    spec_layers,
)
from explorer.spec.knobs import describe_knobs

DEFAULT_PRESET = "xception"
_BASE = "base_yaml"
_SOURCE = "base_source"
_PINNED = "pinned_yaml"
_PINNED_LABEL = "pinned_label"
_EPOCH = "base_epoch"  # bumps when the base changes, so widgets keyed on it start afresh
_KNOB_GEN = "knobs_generation"  # bumps when the base changes or the knobs are reset
_FLASH = "flash"


def _init() -> None:
    if _BASE not in st.session_state:
        st.session_state[_BASE] = load_spec(DEFAULT_PRESET).to_yaml()
        st.session_state[_SOURCE] = DEFAULT_PRESET
        st.session_state[_EPOCH] = 0
        st.session_state[_KNOB_GEN] = 0


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


def knob_key(name: str) -> str:
    """The sidebar widget key of knob ``name``.

    The key carries a generation that changes when the base changes or the knobs are reset: a
    browser keeps each widget's last value for as long as its key lives, and would send the old
    knob back with the next unrelated click. A new key is a new widget that starts at the base's value.
    """
    _init()
    return f"knob_{name}_{st.session_state[_KNOB_GEN]}"


def set_base(spec: Spec, source: str) -> None:
    """Make ``spec`` the base and reset the knobs to its own values."""
    _init()
    st.session_state[_BASE] = spec.to_yaml()
    st.session_state[_SOURCE] = source
    st.session_state[_EPOCH] += 1
    reset_knobs()


def reset_knobs() -> None:
    """Back to the base's own knob values (the widgets come back under new keys)."""
    _init()
    for key in [k for k in st.session_state if str(k).startswith("knob_")]:
        del st.session_state[key]
    st.session_state[_KNOB_GEN] += 1


def knob_state() -> dict[str, Any]:
    """The knob values chosen in the sidebar (only knobs that apply to the base)."""
    base = base_spec()
    return {k: st.session_state.get(knob_key(k), v) for k, v in knob_values(base).items()}


def changed_knob_values() -> dict[str, Any]:
    """The knobs whose sidebar value differs from the base spec's own, with their values."""
    return changed_knobs(base_spec(), knob_state())


def current_spec() -> Spec:
    """The base with the sidebar's knobs applied. A knob error leaves the base as it is and says why."""
    base = base_spec()
    knobs = changed_knob_values()
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


def describe_current() -> str:
    """The current configuration in words: the base's name and the knobs that differ from it."""
    changed = changed_knob_values()
    return base_spec().name + (f" ({describe_knobs(changed)})" if changed else "")


def pin_current(label: str) -> None:
    """Keep the current configuration as A for comparisons."""
    st.session_state[_PINNED] = current_spec().to_yaml()
    st.session_state[_PINNED_LABEL] = label.strip() or describe_current()


def pinned() -> tuple[Spec, str] | None:
    """The pinned configuration A and its label, if any."""
    text = st.session_state.get(_PINNED)
    return (_parse(text), st.session_state.get(_PINNED_LABEL, "A")) if text else None


def unpin() -> None:
    st.session_state.pop(_PINNED, None)


def flash(message: str) -> None:
    """A confirmation to show once, on the next run (after an edit that reruns the page)."""
    st.session_state[_FLASH] = message


def show_flash() -> None:
    """Show (and forget) the pending confirmation, if any."""
    message = st.session_state.pop(_FLASH, None)
    if message:
        st.success(message, icon="✅")


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
    side.markdown(f"**Knobs of {base_spec().name}** — the paper's ablations and more")
    _knob_widgets(side, values)
    if changed_knob_values():
        side.button("Reset knobs", width="stretch", on_click=reset_knobs, key="reset_knobs",
                    help=f"Back to {base_spec().name}'s own values.")


def _knob_widgets(side: Any, values: dict[str, Any]) -> None:
    def key(name: str) -> str:
        # A widget's starting value goes through session state (no `value=`): the state can then be
        # changed before the widget is drawn (segments invalid at a new width) without a warning.
        k = knob_key(name)
        if k not in st.session_state:
            st.session_state[k] = values[name]
        return k

    if "residual" in values:
        side.toggle("Residual connections", key=key("residual"), help=KNOB_HELP["residual"])
    # with regular convs in place of the separable ones, the mid activation and the segments have nothing to act on
    regular = "separable" in values and not st.session_state[key("separable")]
    if "separable" in values:
        side.toggle("Separable convolutions", key=key("separable"), help=KNOB_HELP["separable"])
    if "mid_activation" in values:
        side.selectbox("Activation between depthwise and pointwise", ["none", "relu", "elu"],
                       key=key("mid_activation"), help=KNOB_HELP["mid_activation"], disabled=regular,
                       format_func={"none": "none (the paper's best)", "relu": "ReLU", "elu": "ELU"}.get)
    if "middle_repeats" in values:
        side.number_input("Middle-flow blocks", 0, 32, key=key("middle_repeats"), help=KNOB_HELP["middle_repeats"])
    widths = sorted({0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, float(values["width"])})
    side.select_slider("Width multiplier", widths, key=key("width"), format_func=lambda w: f"×{w:g}",
                       help=KNOB_HELP["width"])
    if "segments" in values:
        # only the values valid at the chosen width: divisors common to every separable conv's channels
        options = _segment_options(st.session_state[_BASE], float(st.session_state[key("width")]))
        k = key("segments")
        if st.session_state[k] not in options:
            side.info(f"{st.session_state[k]} segments do not divide every separable conv's channels at this "
                      "width: back to depthwise.")
            st.session_state[k] = "depthwise"
        side.select_slider("Segments of the spatial conv", options, key=k, disabled=regular,
                           help=KNOB_HELP["segments"] + ". The paper's spectrum from a regular conv (1) to depthwise.")
    side.number_input("Input size (px)", 16, 1024, step=1, key=key("input_size"), help=KNOB_HELP["input_size"])
    side.number_input("Classes", 1, 100_000, key=key("num_classes"), help=KNOB_HELP["num_classes"])
    if "aux_logits" in values:
        side.toggle("Auxiliary head", key=key("aux_logits"), help=KNOB_HELP["aux_logits"])


@st.cache_data(max_entries=64, show_spinner=False)
def _segment_options(base_yaml: str, width: float) -> list[Any]:
    spec = parse_spec(base_yaml)
    overrides: dict[str, Any] = {"width": width} if width != 1.0 else {}
    if not knob_values(spec).get("separable", True):  # a base with regular convs: the choices if it had separable ones
        overrides["separable"] = True
    if overrides:
        spec = spec.with_overrides(**overrides)
    return segment_choices(spec_layers(spec))
