"""AppTest over every page: the oracles are the built model and the cost model."""

from __future__ import annotations

import re
from pathlib import Path

import torch
from streamlit.testing.v1 import AppTest

from explorer.build import build_model
from explorer.cost import count_costs, diff_specs
from explorer.format import count, mib, shape, si
from explorer.lab import DIGITS_CHECKPOINT, load_trained
from explorer.spec import load_spec

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGES = "explorer/ui/pages"
TIMEOUT = 120  # torch imports and the first graph are slow on 2 shared cores


def open_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def knob(at: AppTest, kind: str, label: str):
    """The sidebar widget of a knob, found by its label (its key carries a generation)."""
    return next(w for w in getattr(at.sidebar, kind) if w.label == label)


def shown_params(at: AppTest) -> int:
    return int(next(m.value for m in at.metric if m.label == "Parameters").replace(",", ""))


def model_params(spec) -> int:
    with torch.device("meta"):  # count without allocating
        return sum(p.numel() for p in build_model(spec).parameters())


def test_opens_on_xception_with_totals_graph_and_flows():
    at = open_app()
    spec = load_spec("xception")
    assert shown_params(at) == model_params(spec)
    # every total as the cost model counts it, in the units people read
    totals = count_costs(spec).totals
    shown = {m.label: m.value for m in at.metric}
    assert shown["Parameters"] == count(totals["params"])
    assert shown["MACs"] == si(totals["macs"]) == "8.357 G"
    assert shown["Element-wise ops"] == si(totals["elementwise_ops"])
    assert shown["Peak activations"] == mib(totals["peak_activation_bytes"])
    assert at.sidebar.selectbox[0].value == "xception"
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # the flow graph and the two per-flow charts


def test_residual_off_changes_params_by_the_cost_models_delta():
    at = open_app()
    before = shown_params(at)
    knob(at, "toggle", "Residual connections").set_value(False).run()
    assert not at.exception
    spec = load_spec("xception")
    delta = diff_specs(spec, spec.with_overrides(residual=False)).totals["params"]
    assert shown_params(at) - before == delta < 0
    assert shown_params(at) == model_params(spec.with_overrides(residual=False))


def test_separable_off_shows_the_cost_models_macs_and_disables_what_no_longer_acts():
    at = open_app()
    knob(at, "toggle", "Separable convolutions").set_value(False).run()
    assert not at.exception
    spec = load_spec("xception").with_overrides(separable=False)
    shown = {m.label: m.value for m in at.metric}
    assert shown["MACs"] == si(count_costs(spec).totals["macs"]) == "68.818 G"
    assert shown_params(at) == model_params(spec)
    assert knob(at, "selectbox", "Activation between depthwise and pointwise").disabled
    assert knob(at, "select_slider", "Segments of the spatial conv").disabled


def test_invalid_yaml_shows_the_error_and_keeps_the_totals():
    at = open_app()
    before = shown_params(at)
    area = at.text_area[0]
    area.set_value(area.value.replace("channels: [256, 256]", "channels: [256, 256")).run()
    at.button(key="apply_yaml").click().run()
    assert any("YAML syntax error" in e.value for e in at.error)
    assert shown_params(at) == before
    at.text_area[0].set_value(load_spec("xception").to_yaml().replace("out: 32", "out: 0")).run()
    at.button(key="apply_yaml").click().run()
    assert any("entry.conv1" in e.value and "out" in e.value for e in at.error)
    assert shown_params(at) == before


def test_applied_table_edit_changes_the_network():
    at = open_app()
    editor = at.data_editor[0]
    table = editor.value
    row = int(table.index[table["name"] == "middle.block"][0])
    at.session_state[editor.key] = {"edited_rows": {row: {"repeat": 3}}, "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="apply_table").click().run()
    assert not at.exception and not at.error
    assert shown_params(at) == model_params(load_spec("xception").with_overrides(middle_repeats=3))
    assert at.sidebar.selectbox[0].value == "edited"


def test_uploaded_spec_file_becomes_the_network():
    at = open_app()
    text = load_spec("xception").with_overrides(width=0.5).to_yaml().encode()
    at.file_uploader[0].upload("half.yaml", text, "application/x-yaml").run()
    assert not at.exception
    assert shown_params(at) == model_params(load_spec("xception").with_overrides(width=0.5))
    assert at.sidebar.selectbox[0].value == "half.yaml"


def test_preset_switch_and_page_switch_keep_session_state():
    at = open_app()
    at.sidebar.selectbox[0].select("inception_v3").run()
    assert shown_params(at) == model_params(load_spec("inception_v3"))
    knob(at, "toggle", "Auxiliary head").set_value(False).run()
    at.switch_page(f"{PAGES}/costs.py").run()
    assert not at.exception
    assert shown_params(at) == model_params(load_spec("inception_v3").with_overrides(aux_logits=False))


def test_two_sessions_keep_their_own_specs():
    """Two sessions edited in turn: neither sees the other's knobs (no module-level state leaks).

    AppTest patches Streamlit's global config for the length of each run, so two AppTests
    cannot run in parallel threads; the browser test opens two real sessions at once.
    """
    spec = load_spec("xception")
    a, b = open_app(), open_app()
    knob(a, "toggle", "Residual connections").set_value(False).run()
    knob(b, "number_input", "Middle-flow blocks").set_value(2).run()
    for _ in range(2):  # rerun each in turn: the other session's change must not leak in
        a.run()
        b.run()
    assert not a.exception and not b.exception
    shown_a, shown_b = shown_params(a), shown_params(b)
    assert shown_a == model_params(spec.with_overrides(residual=False))
    assert shown_b == model_params(spec.with_overrides(middle_repeats=2))
    assert shown_a != shown_b


def test_costs_page_table_whatif_and_compare():
    at = open_app()
    at.switch_page(f"{PAGES}/costs.py").run()
    assert not at.exception
    table = at.dataframe[0].value
    spec = load_spec("xception")
    assert len(table) == len([layer for layer in build_model(spec).layers if not layer.train_only])
    # a row is the cost model's own row for that module path
    row = table.set_index("name").loc["entry.block2.sep1.depthwise"]
    layer = count_costs(spec).layer("entry.block2.sep1.depthwise")
    assert (row["kind"], row["flow"], row["block"]) == (layer.kind, layer.flow, layer.block)
    assert (row["in_shape"], row["out_shape"]) == (shape(layer.in_shape), shape(layer.out_shape))
    assert [int(row[c]) for c in ("params", "macs", "elementwise_ops", "activation_bytes")] == [
        layer.params, layer.macs, layer.elementwise_ops, layer.activation_bytes]
    assert {"MACs as built", "MACs with regular convs", "Separable / regular"} <= {m.label for m in at.metric}
    at.button(key="pin").click().run()
    knob(at, "selectbox", "Activation between depthwise and pointwise").select("relu").run()
    assert not at.exception
    deltas = {m.label: m.delta for m in at.metric}
    assert deltas["Parameters"] in (None, "")  # an activation adds no parameters
    totals = next(d.value for d in at.dataframe if "B − A" in d.value.columns).set_index("")
    assert totals.loc["element-wise ops", "B − A"].startswith("+")  # ... but more work
    assert totals.loc["activation memory", "B − A"].startswith("+")  # ... and memory
    assert any("34 layers added" in c.value for c in at.caption)


def test_lab_page_names_the_network_it_trains_with_its_parameter_count():
    at = open_app()
    at.switch_page(f"{PAGES}/lab.py").run()
    assert not at.exception, [e.value for e in at.exception]
    headline = next(m.value for m in at.markdown if m.value.startswith("**Trains"))
    params = count_costs(load_spec("mini_xception")).totals["params"]
    assert headline.startswith(f"**Trains mini_xception** ({params:,} parameters)")


def test_classify_page_opens_offline_on_the_shipped_model_and_its_recorded_accuracy(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no ImageNet weights here
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")  # and no downloads
    at = open_app()
    at.switch_page(f"{PAGES}/classify.py").run()
    assert not at.exception, [e.value for e in at.exception]
    # the accuracy said is the one the checkpoint records, at the precision shown
    _, checkpoint = load_trained(DIGITS_CHECKPOINT)
    recorded = 100 * float(checkpoint.metadata["test_accuracy"])
    said = next(m for c in at.caption if (m := re.search(r"(\d+(?:\.(\d+))?) ?% test accuracy", c.value)))
    assert float(said[1]) == round(recorded, len(said[2] or ""))


def test_every_knob_change_shows_its_delta_against_the_base_and_the_description_follows():
    """mid_activation=relu adds no parameters or MACs, but the element-wise ops and the memory move:
    the totals show it, with the cost model's own delta; the description no longer says what is gone."""
    at = open_app()
    spec = load_spec("xception")
    knob(at, "selectbox", "Activation between depthwise and pointwise").select("relu").run()
    knob(at, "toggle", "Residual connections").set_value(False).run()
    assert not at.exception
    changed = spec.with_overrides(mid_activation="relu", residual=False)
    delta = diff_specs(spec, changed).totals
    metrics = {m.label: m for m in at.metric}
    assert metrics["Element-wise ops"].delta.startswith("+" if delta["elementwise_ops"] > 0 else "-")
    assert metrics["Parameters"].delta.startswith(f"{delta['params']:,} ")  # e.g. -977,072 (-4.3%)
    assert metrics["Peak activations"].delta  # memory moved too
    captions = " ".join(c.value for c in at.caption)
    assert "residual connections off" in captions and "ReLU between depthwise and pointwise" in captions
    assert "with residual connections, in an entry flow" not in captions  # the preset's own words are gone
    at.sidebar.button(key="reset_knobs").click().run()
    assert all(not m.delta for m in at.metric)
    assert shown_params(at) == model_params(spec)


def test_a_table_edit_is_confirmed_with_what_it_changed():
    at = open_app()
    editor = at.data_editor[0]
    table = editor.value
    row = int(table.index[table["name"] == "middle.block"][0])
    at.session_state[editor.key] = {"edited_rows": {row: {"repeat": "4"}}, "added_rows": [], "deleted_rows": []}
    at.run()
    at.button(key="apply_table").click().run()
    four = load_spec("xception").with_overrides(middle_repeats=4)
    assert shown_params(at) == model_params(four)
    before, after = (f"{model_params(s):,}" for s in (load_spec("xception"), four))
    assert any("Applied the table" in s.value and f"{before} → {after}" in s.value for s in at.success)
    assert knob(at, "number_input", "Middle-flow blocks").value == 4
