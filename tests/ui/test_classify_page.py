"""AppTest of the Classify & Explain page, offline: the shipped digits model and missing ImageNet weights."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from explorer.infer import classify
from explorer.lab import DIGITS_CHECKPOINT, digits_samples

APP = str(Path(__file__).resolve().parents[2] / "app.py")
PAGE = "explorer/ui/pages/classify.py"


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No ImageNet checkpoints and no downloads: the state of a fresh offline machine."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")


def open_page(mode: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page(PAGE).run()
    if mode:
        at.get("button_group")[0].set_value(mode).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def pills(at: AppTest):
    return next(w for w in at.get("button_group") if w.key and w.key.startswith("cls_samples"))


def test_digits_sample_and_a_corrupt_upload(offline):
    at = open_page("Shipped digits model")
    image, label = digits_samples(10)[3]
    pills(at).set_value([f"digit {label} (#3)"]).run()
    at.file_uploader(key="cls_images").upload("broken.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png").run()
    assert not at.exception
    assert any("broken.png" in e.value for e in at.error)  # one clear message, the page goes on
    chart = next(c for c in at.get("plotly_chart") if "top_digit" in (c.key or ""))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    expected = classify([buffer.getvalue()], None, str(DIGITS_CHECKPOINT), top=5).results[0].top
    shown = chart.proto.spec
    assert expected[0].label in shown  # the bar chart holds the model's own top class


def test_explaining_a_sample(offline):
    at = open_page("Shipped digits model")
    pills(at).set_value(["digit 0 (#0)"]).run()
    at.multiselect(key="exp_methods").set_value(["saliency", "gradcam"]).run()
    at.button(key="explain").click().run()
    assert not at.exception and not at.error
    assert at.get("plotly_chart")[-1].key == "exp_figure"
    captions = " ".join(c.value for c in at.caption)
    assert "Saliency" in captions and "Grad-CAM" in captions


def test_missing_imagenet_weights_say_what_to_do_and_fall_back_to_random(offline):
    at = open_page()
    warnings = [w.value for w in at.warning]
    assert any("xception-43020ad28.pth" in w and "hub" in w and "random weights" in w for w in warnings)
    assert any("inception_v3_google-0cc3c7bd.pth" in w for w in warnings)
    pills(at).set_value(["cat"]).run()
    assert not at.exception
    assert any("random weights" in c.value for c in at.caption)
