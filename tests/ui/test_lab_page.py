"""AppTest of the Lab page: a quick training run with live curves, and the shipped ablation."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

from explorer.lab import load_ablation

ROOT = Path(__file__).resolve().parents[2]
PAGE = "explorer/ui/pages/lab.py"


def open_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_quick_training_shows_curves_and_offers_the_checkpoint():
    at = open_page()
    at.toggle(key="lab_quick").set_value(True)
    at.number_input(key="lab_epochs").set_value(1)
    at.button(key="lab_train").click().run()
    assert not at.exception and not at.error
    accuracy = next(m.value for m in at.metric if m.label == "Final test accuracy")
    assert accuracy.endswith("%") and 0 <= float(accuracy[:-1]) <= 100
    assert any(c.key == "lab_result_curves" for c in at.get("plotly_chart"))
    assert at.get("download_button")


def test_bad_data_folder_is_one_clear_message(tmp_path):
    at = open_page()
    at.text_input(key="lab_data").set_value(str(tmp_path))
    at.button(key="lab_train").click().run()
    assert not at.exception
    assert any("holds no images" in e.value for e in at.error)


def test_saved_ablation_is_shown_with_its_table():
    at = open_page()
    shipped = load_ablation(ROOT / "docs" / "ablation")
    table = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    assert list(table["variant"]) == [row.variant for row in shipped.summary()]
