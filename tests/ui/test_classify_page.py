"""AppTest of the Classify & Explain page, offline: the shipped digits model and missing ImageNet weights.

Nothing here downloads: every test runs with ``EXPLORER_OFFLINE=1`` and an empty ``TORCH_HOME``.
The explanations run on a job thread; a test waits for the job (an event, not a clock) and reruns.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.infer import classify
from explorer.lab import DIGITS_CHECKPOINT, digits_samples

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
PAGE = "explorer/ui/pages/classify.py"
CAT = ROOT / "assets" / "samples" / "cat.jpg"
DIGITS, IMAGENET = "Shipped digits model", "ImageNet (official)"
JOB_HANG_S = 240  # only a guard against a hang


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No ImageNet checkpoints and no downloads: the state of a fresh offline machine."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def open_page(mode: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page(PAGE).run()
    if mode and mode_control(at).value != mode:
        mode_control(at).set_value(mode).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def mode_control(at: AppTest):
    return next(w for w in at.get("button_group") if w.key == "cls_mode")


def pills(at: AppTest):
    return next(w for w in at.get("button_group") if w.key and w.key.startswith("cls_samples"))


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def explain_and_wait(at: AppTest, methods: list[str]) -> AppTest:
    at.multiselect(key="exp_methods").set_value(methods).run()
    at.button(key="explain").click().run()
    assert not at.exception, [e.value for e in at.exception]
    if "exp_run" in at.session_state:  # the job runs on its own thread: wait for it, then draw its maps
        assert at.session_state["exp_run"].job.wait(JOB_HANG_S)
    return at.run()


def has_maps(at: AppTest) -> bool:
    return any(c.key == "exp_figure" for c in at.get("plotly_chart"))


def statuses(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if c.value.split(" · ")[0] in
            ("**Done**", "**Running**", "**Waiting**", "**Failed**", "**Cancelled**")]


def test_offline_the_page_opens_on_the_digits_model_and_says_why(offline):
    at = open_page()
    assert mode_control(at).value == DIGITS
    captions = " ".join(c.value for c in at.caption)
    assert "xception-43020ad28.pth" in captions and "not on this machine" in captions
    # no random-weight Xception or Inception was loaded behind the user's back
    assert not at.warning and "random weights" not in captions


def test_digits_top5_is_categorical_and_a_corrupt_upload_is_not_offered(offline):
    at = open_page(DIGITS)
    image, label = digits_samples(10)[3]
    pills(at).set_value([f"digit {label} (#3)"]).run()
    at.file_uploader(key="cls_images").upload("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png").run()
    assert not at.exception
    assert any("broken.png" in e.value for e in at.error)  # one clear message, the page goes on
    chart = next(c for c in at.get("plotly_chart") if "top_digit" in (c.key or ""))
    figure = json.loads(chart.proto.spec)
    expected = classify([png(image)], None, str(DIGITS_CHECKPOINT), top=5).results[0].top
    yaxis = figure["layout"]["yaxis"]
    assert yaxis["type"] == "category"  # "0"-"9" are class names, not numbers
    bars = figure["data"][0]
    assert list(bars["y"]) == [p.label for p in expected]  # the model's own ranking, best first
    assert bars["y"][0] == expected[0].label and yaxis["autorange"] == "reversed"
    # the top-1 probability shown is the model's own, as classify() gives it for the same image
    assert bars["text"][0] == f"{expected[0].probability:.1%}"
    assert bars["x"][0] == pytest.approx(expected[0].probability, rel=1e-5)
    # only images that decoded can be explained
    assert at.selectbox(key="exp_image").options == [f"digit {label} (#3).png"]


def test_explaining_a_sample_in_the_background(offline):
    at = open_page(DIGITS)
    pills(at).set_value(["digit 0 (#0)"]).run()
    assert any(c.value.startswith("Estimated time: about") for c in at.caption)
    at = explain_and_wait(at, ["saliency", "gradcam"])
    assert not at.exception and not at.error
    assert has_maps(at)
    lines = statuses(at)
    assert len(lines) == 2 and all(line.startswith("**Done**") for line in lines)
    assert any("Saliency" in line for line in lines) and any("Grad-CAM: target" in line for line in lines)
    # the digits model's Grad-CAM defaults to the finer layer the app recommends, not the 2 x 2 one
    layer_box = next(s for s in at.selectbox if s.label.startswith("Grad-CAM layer of"))
    from explorer.explain import resolve_layer
    from explorer.infer import load_model

    note = resolve_layer(load_model(None, DIGITS_CHECKPOINT).model, "exit.sep2.act")[1]
    assert "too coarse" in note and f"'{layer_box.value}'" in note
    assert any(f"layer {layer_box.value}" in line for line in lines)
    assert not any("too coarse" in line for line in lines)


def test_maps_are_dropped_when_the_image_or_the_mode_changes(offline):
    at = open_page(DIGITS)
    pills(at).set_value(["digit 0 (#0)"]).run()
    at = explain_and_wait(at, ["saliency"])
    assert has_maps(at)
    # another image: the maps of digit 0 go
    pills(at).set_value(["digit 1 (#1)"]).run()
    assert not at.exception
    assert not has_maps(at) and statuses(at) == []
    assert "exp_run" not in at.session_state
    at = explain_and_wait(at, ["saliency"])
    assert has_maps(at) and len(statuses(at)) == 1
    # the path: switch to ImageNet and upload the cat; the digit's maps must not stay
    mode_control(at).set_value(IMAGENET).run()
    at.file_uploader(key="cls_images").upload("cat.jpg", CAT.read_bytes(), "image/jpeg").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not has_maps(at) and statuses(at) == []
    assert at.selectbox(key="exp_image").value == "cat.jpg"


def test_settings_changed_after_a_run_are_flagged_not_silently_mixed(offline):
    at = open_page(DIGITS)
    pills(at).set_value(["digit 2 (#2)"]).run()
    at = explain_and_wait(at, ["saliency"])
    assert not any("other settings" in i.value for i in at.info)
    at.multiselect(key="exp_methods").set_value(["saliency", "gradcam"]).run()
    assert any("other settings" in i.value for i in at.info)
    assert len(statuses(at)) == 1  # still the map that was made, labelled as such


def test_missing_imagenet_weights_tell_an_app_user_what_to_do(offline):
    at = open_page(IMAGENET)
    warnings = [w.value for w in at.warning]
    xception = next(w for w in warnings if "xception-43020ad28.pth" in w)
    assert "random weights" in xception and str(offline) in xception  # which file, which folder
    assert "--weights" not in xception and "--" not in " ".join(warnings)  # no command-line flags in the app
    assert any("inception_v3_google-0cc3c7bd.pth" in w for w in warnings)
    pills(at).set_value(["cat"]).run()
    assert not at.exception
    # the results say which weights made them
    assert sum(m.value.endswith("· random (seed 0) weights") for m in at.markdown) == 2


def test_the_page_keeps_no_network_once_the_cache_lets_it_go(offline):
    """The networks live in explorer.weights' byte-bounded cache only: after a classification and an
    explanation, nothing of the session (its page, its finished job) holds one past its eviction."""
    import gc
    import weakref

    from explorer.weights.load import cached_models, clear_cache

    clear_cache()  # only what this page loads
    at = open_page(DIGITS)
    pills(at).set_value(["digit 0 (#0)"]).run()
    at = explain_and_wait(at, ["saliency"])
    assert has_maps(at)
    digits = [weakref.ref(m) for m in cached_models() if m.spec.name == "mini_xception"]
    assert len(digits) == 1
    clear_cache()
    gc.collect()
    assert digits[0]() is None
    at.run()  # the page loads it again and still shows its maps
    assert not at.exception and has_maps(at)
    pills(at).set_value([]).run()  # a run that stops early (no image) lets go of it too
    assert any(i.value.startswith("Choose at least one network and one image") for i in at.info)
    digits = [weakref.ref(m) for m in cached_models() if m.spec.name == "mini_xception"]
    clear_cache()
    gc.collect()
    assert len(digits) == 1 and digits[0]() is None


def test_an_explanation_waits_for_a_free_place_and_can_be_cancelled_there(offline, monkeypatch):
    from explorer.jobs import heavy_line, heavy_slot

    monkeypatch.setenv("EXPLORER_HEAVY_JOBS", "1")
    at = open_page(DIGITS)
    pills(at).set_value(["digit 0 (#0)"]).run()
    at.multiselect(key="exp_methods").set_value(["saliency"]).run()
    with heavy_slot():  # another session's heavy work holds the only place
        at.button(key="explain").click().run()
        job = at.session_state["exp_run"].job
        assert job.position == 1 and not job.finished
        texts = [p.proto.text for p in at.get("progress")]
        assert any(t.startswith("Waiting for a free place: 1st in line (1 heavy job at a time") for t in texts), texts
        assert statuses(at) == ["**Waiting** · Saliency on Mini Xception (digits)" + statuses(at)[0].split(
            "Mini Xception (digits)", 1)[1]]
        at.button(key="exp_cancel").click().run()
        assert job.wait(JOB_HANG_S) and job.position is None
        assert heavy_line().counts() == (1, 0)  # it left the line; the other work still holds its place
    at.run()
    assert any("Cancelled" in w.value for w in at.warning)
    assert heavy_line().counts() == (0, 0)
