"""AppTest of "Which map to trust?" on the Classify & Explain page, offline, on the shipped digits model.

The scoring runs on a job thread; a test waits for the job (an event, not a clock) and reruns. The
cards are kept per server (``st.cache_resource``): a second session with the same choices gets the card
without a new run, which a counting stand-in for ``score`` proves.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.explain.score_figures import BEST, CHANCE_LABEL, column
from explorer.explain.scorecard import METRIC_ORDER, METRICS
from explorer.ui import scorecard

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
PAGE = "explorer/ui/pages/classify.py"
DIGITS = "Shipped digits model"
JOB_HANG_S = 300  # only a guard against a hang

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No ImageNet checkpoints and no downloads; an empty card cache; every call of score counted."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    scorecard.cards.clear()
    calls = []
    real = scorecard.score

    def counting(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(scorecard, "score", counting)
    yield calls
    scorecard.cards.clear()


def open_page(sample: str = "digit 0 (#0)") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180).run()
    at.switch_page(PAGE).run()
    mode = next(w for w in at.get("button_group") if w.key == "cls_mode")
    if mode.value != DIGITS:
        mode.set_value(DIGITS).run()
    pills = next(w for w in at.get("button_group") if w.key and w.key.startswith("cls_samples"))
    pills.set_value([sample]).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def by_label(at: AppTest, kind: str, label: str):
    return next(w for w in at.get(kind) if w.label == label)


def light(at: AppTest) -> AppTest:
    """Two quick methods, few steps and draws: a card in seconds."""
    at.multiselect(key="score_methods").set_value(["saliency", "gradcam"]).run()
    by_label(at, "number_input", "Noise draws").set_value(2).run()
    by_label(at, "number_input", "Curve steps").set_value(5).run()
    return at


def score_and_wait(at: AppTest) -> AppTest:
    at.button(key="score_start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["score_run"].job.wait(JOB_HANG_S)
    return at.run()


def charts(at: AppTest) -> list[str]:
    return [c.key for c in at.get("plotly_chart") if (c.key or "").startswith("score_")]


def table(at: AppTest):
    return next(t.value for t in at.table if column("deletion") in t.value.columns)


def test_the_section_opens_with_light_defaults_and_runs_nothing_by_itself(offline):
    at = open_page()
    assert any(h.value == "Which map to trust?" for h in at.header)
    assert by_label(at, "multiselect", "Images to score").value == ["digit 0 (#0).png"]  # the current image
    assert by_label(at, "multiselect", "Networks to score").value == ["Mini Xception (digits)"]
    assert at.multiselect(key="score_methods").value == ["saliency", "ig", "gradcam", "guided-backprop"]
    assert at.multiselect(key="score_metrics").value == list(METRIC_ORDER)
    settings = next(c.value for c in at.caption if c.value.startswith("Settings:"))
    # a 32-px network: the small defaults, said in words
    assert "1 image × 4 methods × 7 measures on Mini Xception (digits)" in settings
    assert "20 steps" in settings and "4 noise draws" in settings and "16 path points" in settings
    assert "folded copy" in settings and "predicted class" in settings
    assert any("Press **Score the maps**" in i.value for i in at.info)
    assert at.button(key="score_start").disabled is False
    assert charts(at) == [] and offline == []


def test_a_light_scorecard_runs_to_its_table_and_figures_and_is_kept_for_the_server(offline):
    at = light(open_page())
    settings = next(c.value for c in at.caption if c.value.startswith("Settings:"))
    assert "1 image × 2 methods × 7 measures" in settings and "5 steps" in settings and "2 noise draws" in settings
    at = score_and_wait(at)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert len(offline) == 1 and offline[0]["steps"] == 5 and offline[0]["samples"] == 2
    assert offline[0]["methods"] == ("saliency", "gradcam") and offline[0]["fold"] is True
    card = at.session_state["score_run"].job.results()[0]

    rows = table(at)
    assert list(rows["method"]) == ["Saliency", "Grad-CAM", CHANCE_LABEL]
    for metric in METRIC_ORDER:
        header = column(metric)
        assert header.endswith("↓" if METRICS[metric].direction == "lower" else "↑")
        marked = [m for m, v in zip(rows["method"], rows[header]) if str(v).endswith(BEST)]
        assert marked == [{"saliency": "Saliency", "gradcam": "Grad-CAM"}[card.best(metric)]]
    assert {k.rsplit("_", 1)[0] for k in charts(at)} == {"score_curves", "score_cascade"}
    assert any(c.value.startswith(f"{BEST} the best method of each measure") for c in at.caption)
    assert any(c.value.startswith("Made in") for c in at.caption)
    assert any(c.value.startswith("Scored: the card is below") for c in at.caption)
    assert at.button(key="score_start").disabled  # nothing left to score for these choices

    # an unrelated change reruns the page: the card is drawn again, not made again
    at.selectbox(key="exp_sign").set_value("absolute").run()
    assert len(table(at)) == 3 and len(charts(at)) == 2 and len(offline) == 1

    # another session of the same server with the same choices: the card at once, no run
    other = light(open_page())
    assert "score_run" not in other.session_state
    assert len(table(other)) == 3 and len(charts(other)) == 2 and len(offline) == 1
    # other settings are another card: nothing is shown for them until scored
    by_label(other, "number_input", "Curve steps").set_value(6).run()
    assert charts(other) == [] and other.button(key="score_start").disabled is False


def test_a_long_scoring_can_be_cancelled_and_leaves_no_card(offline):
    at = open_page()
    at.multiselect(key="score_methods").set_value(["ig"]).run()
    by_label(at, "number_input", "IG path points").set_value(256).run()
    by_label(at, "number_input", "Noise draws").set_value(64).run()  # thousands of passes: minutes
    at.button(key="score_start").click().run()
    run = at.session_state["score_run"]
    assert not run.job.finished
    assert at.button(key="score_start").disabled
    at.button(key="score_cancel").click().run()
    assert run.job.wait(JOB_HANG_S)
    at.run()
    assert not at.exception
    assert any("was cancelled" in w.value for w in at.warning)
    assert charts(at) == [] and at.button(key="score_start").disabled is False
    assert len(scorecard.cards()) == 0


def test_the_fold_switch_reaches_the_explanation(offline):
    at = open_page()
    at.multiselect(key="exp_methods").set_value(["saliency"]).run()
    for on in (True, False):
        at.toggle(key="exp_fold").set_value(on).run()
        at.button(key="explain").click().run()
        assert at.session_state["exp_run"].job.wait(JOB_HANG_S)
        at.run()
        result = at.session_state["exp_run"].job.results()[0]
        assert result.folded is on


def test_scoring_waits_for_a_free_place_and_can_be_cancelled_there(offline, monkeypatch):
    from explorer.jobs import heavy_line, heavy_slot

    monkeypatch.setenv("EXPLORER_HEAVY_JOBS", "1")
    at = light(open_page())
    with heavy_slot():  # another session's heavy work holds the only place
        at.button(key="score_start").click().run()
        run = at.session_state["score_run"]
        assert run.job.position == 1 and not run.job.finished
        texts = [p.proto.text for p in at.get("progress")]
        assert any(t.startswith("Waiting for a free place: 1st in line (1 heavy job at a time") for t in texts), texts
        at.button(key="score_cancel").click().run()
        assert run.job.wait(JOB_HANG_S) and run.job.position is None
        assert heavy_line().counts() == (1, 0)
    at.run()
    assert any("was cancelled" in w.value for w in at.warning)
    assert offline == [] and charts(at) == [] and heavy_line().counts() == (0, 0)
