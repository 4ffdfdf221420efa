"""AppTest of the Lab page: the network it trains and the sidebar knobs it takes, a quick training with
live curves, the batch-norm note, a quick ablation, the shipped ablation, and where its data may come from
(the data root's folders, an uploaded zip, never any other folder of the server)."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

from PIL import Image
from streamlit.testing.v1 import AppTest

from explorer.lab import (
    AblationResult,
    EpochStats,
    TrainConfig,
    evaluate,
    load_ablation,
    load_data,
    load_trained,
    run_ablation,
)
from explorer.spec import load_spec, parse_spec

ROOT = Path(__file__).resolve().parents[2]
PAGE = "explorer/ui/pages/lab.py"
QUICK = 200  # the page's quick-check size: the oracle data below must be the same images


def open_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page(PAGE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def sidebar_widget(at: AppTest, kind: str, label: str):
    """A sidebar knob by its label (its key carries a counter that changes with the base spec)."""
    return next(w for w in getattr(at.sidebar, kind) if w.label == label)


def quick_training(at: AppTest, epochs: int = 1) -> AppTest:
    at.toggle(key="lab_quick").set_value(True)
    at.number_input(key="lab_epochs").set_value(epochs)
    at.button(key="lab_train").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def headline(at: AppTest) -> str:
    return next(m.value for m in at.markdown if "Trains" in m.value)


def downloaded(at: AppTest, tmp_path: Path):
    """The checkpoint the page offers for download, read back as a file."""
    last = at.session_state["lab_last"]
    path = tmp_path / last["file_name"]
    path.write_bytes(last["checkpoint"])
    return load_trained(path)


def test_quick_training_shows_curves_and_the_checkpoints_accuracy(tmp_path):
    lab_folders = set(Path(tempfile.gettempdir()).glob("explorer-lab-*"))
    at = quick_training(open_page())
    shown = next(m.value for m in at.metric if m.label == "Test accuracy")
    assert any(c.key == "lab_result_curves" for c in at.get("plotly_chart"))
    assert at.get("download_button")
    # oracle: the checkpoint offered for download, evaluated here on the same quick test split
    model, checkpoint = downloaded(at, tmp_path)
    data = load_data("digits", input_size=checkpoint.spec.input_size, in_channels=checkpoint.spec.in_channels,
                     limit=QUICK)
    _, accuracy = evaluate(model, data.test_x, data.test_y, in_channels=checkpoint.spec.in_channels)
    assert shown == f"{accuracy:.2%}"
    # the training accuracy is the last epoch's, as the checkpoint records the run's history
    history = [EpochStats(**h) for h in json.loads(checkpoint.metadata["history"])]
    assert len(history) == 1 and history[-1].test_acc == accuracy
    assert next(m.value for m in at.metric if m.label == "Training accuracy") == f"{history[-1].train_acc:.2%}"
    # the progress and the time per epoch are said with units, not promised
    assert any("per epoch here" in c.value for c in at.caption)
    assert next(m.value for m in at.metric if m.label == "Time per epoch").endswith(" s")
    assert checkpoint.metadata["data"] == "digits"
    # the download is made from bytes: no folder is left behind on the server
    assert set(Path(tempfile.gettempdir()).glob("explorer-lab-*")) == lab_folders


def test_the_page_names_the_network_and_the_sidebar_knobs_it_applies(tmp_path):
    at = open_page()
    line = headline(at)
    assert "mini_xception" in line and "as shipped" in line
    sidebar_widget(at, "toggle", "Residual connections").set_value(False).run()
    sidebar_widget(at, "select_slider", "Width multiplier").set_value(0.5).run()
    line = headline(at)
    assert "Trains mini_xception" in line and "residual off" in line
    assert "ignored" in line and "width ×0.5" in line  # a size set for Xception, not for the digits network
    at = quick_training(at)
    # oracle: the preset with residuals off, and nothing else changed (width ignored)
    expected = load_spec("mini_xception").with_overrides(residual=False)
    assert parse_spec(at.session_state["lab_last"]["spec_yaml"]) == expected
    _, checkpoint = downloaded(at, tmp_path)
    assert checkpoint.spec == expected
    assert not any(b.residual not in (None, "none") for b in checkpoint.spec.blocks if b.type == "xception")


def test_a_lagging_first_test_is_explained():
    at = open_page()
    at.toggle(key="lab_bn").set_value(False)  # keep batch norm's lagging running averages
    at = quick_training(at, epochs=2)
    history = at.session_state["lab_last"]["history"]
    assert any(h.train_acc - h.test_acc > 0.3 for h in history)  # the situation the note is for
    notes = [i.value for i in at.info]
    assert any("batch norm" in n and "running averages" in n for n in notes), notes
    # with the running statistics re-estimated (the default) the same training tests far better
    at.toggle(key="lab_bn").set_value(True)
    at.button(key="lab_train").click().run()
    assert not at.exception and not at.error
    again = at.session_state["lab_last"]["history"]
    assert [h.train_acc for h in again] == [h.train_acc for h in history]
    assert again[0].test_acc > history[0].test_acc + 0.3
    assert not any("running averages" in i.value for i in at.info)


def test_quick_ablation_varies_residual_on_top_of_the_sidebars_activation():
    at = open_page()
    sidebar_widget(at, "selectbox", "Activation between depthwise and pointwise").select("relu").run()
    at.toggle(key="lab_quick").set_value(True)
    at.number_input(key="lab_epochs").set_value(1)
    at.number_input(key="lab_seeds").set_value(1)
    at.pills(key="lab_vary_mid_activation").set_value([])
    at.run()
    assert any("2 variants × 1 seed = 2 trainings" in c.value and "residual on / residual off" in c.value
               for c in at.caption)
    at.button(key="lab_ablate").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    shown = AblationResult.from_dict(at.session_state["lab_ablation"])
    assert not shown.stopped
    # the base of the variants: mini_xception with the sidebar's ReLU; the varied knob overrides nothing else
    base = load_spec("mini_xception").with_overrides(mid_activation="relu")
    assert parse_spec(shown.spec_yaml) == base
    assert [r.knobs for r in shown.runs] == [{"residual": True}, {"residual": False}]
    # oracle: the library's own ablation of the same spec, data and recipe
    config = TrainConfig(epochs=1, threads=1)
    assert TrainConfig(**shown.config) == config
    data = load_data("digits", input_size=base.input_size, in_channels=base.in_channels, limit=QUICK)
    oracle = run_ablation(base, data, [("residual", [True, False])], seeds=[0], config=config)
    assert [[h.test_acc for h in r.history] for r in shown.runs] == [[h.test_acc for h in r.history]
                                                                       for r in oracle.runs]
    # ... and the table shows its numbers, in words
    table = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    assert list(table["variant"]) == ["residual on", "residual off"]
    assert list(table["final test accuracy"]) == [f"{r.test_acc_mean:.2%} ± {r.test_acc_std:.2%}"
                                                  for r in oracle.summary()]
    assert list(table["best test accuracy"]) == [f"{r.best_test_acc_mean:.2%}" for r in oracle.summary()]
    assert any(c.value.startswith("1 seed of 1 epoch per variant.") for c in at.caption)
    assert any(c.key == "lab_ablation_figure" for c in at.get("plotly_chart"))


def _png(colour) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(out, format="PNG")
    return out.getvalue()


def _image_folder(root: Path) -> Path:
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(5):
            (root / name / f"{i}.png").write_bytes(_png((120 * k, 20 * i, 90)))
    return root


def test_the_data_root_lists_its_folders_and_nothing_outside(tmp_path, monkeypatch):
    root = tmp_path / "root"
    _image_folder(root / "pets")
    (root / "empty" / "cat").mkdir(parents=True)
    (root / "empty" / "cat" / "notes.txt").write_text("no pictures here")
    _image_folder(tmp_path / "secret")
    (root / "escape").symlink_to(tmp_path / "secret", target_is_directory=True)
    monkeypatch.setenv("EXPLORER_DATA_ROOT", str(root))
    at = open_page()
    at.selectbox(key="lab_data_kind").set_value("folder").run()
    assert at.selectbox(key="lab_data_folder").options == ["empty", "pets"]  # not the symlink leading out
    at.selectbox(key="lab_data_folder").set_value("empty").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["'empty' holds no images (expected DIR/CLASS/IMAGE.png, as "
                                           "torchvision's ImageFolder; extensions .jpg, .jpeg, .png, .webp, "
                                           ".bmp, .gif, .tif, .tiff)"]
    assert at.button(key="lab_train").disabled
    at.selectbox(key="lab_data_folder").set_value("pets").run()
    assert not at.error and not at.button(key="lab_train").disabled
    assert any(c.value.startswith("pets: 8 training and 2 test images") for c in at.caption)
    assert not any(str(tmp_path) in m.value for m in [*at.caption, *at.markdown])


def test_an_empty_data_root_says_where_folders_go(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_DATA_ROOT", str(tmp_path / "none"))
    at = open_page()
    at.selectbox(key="lab_data_kind").set_value("folder").run()
    assert not at.exception and not at.error
    assert any("no folders yet" in i.value and "EXPLORER_DATA_ROOT" in i.value for i in at.info)
    assert at.button(key="lab_train").disabled


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return out.getvalue()


def test_an_uploaded_zip_trains_and_its_folder_goes_when_replaced(tmp_path):
    pets = {f"pets/{name}/{i}.png": _png((120 * k, 20 * i, 90)) for k, name in enumerate(("cat", "dog"))
            for i in range(5)}
    at = open_page()
    at.selectbox(key="lab_data_kind").set_value("zip").run()
    assert at.button(key="lab_train").disabled  # nothing uploaded yet
    at.file_uploader(key="lab_data_zip").upload("pets.zip", _zip(pets), "application/zip").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    unpacked = at.session_state["lab_zip"]
    first = unpacked.folder.path
    assert first.is_dir() and oct(first.stat().st_mode & 0o777) == "0o700"
    at.number_input(key="lab_epochs").set_value(1)
    at.button(key="lab_train").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    model, checkpoint = downloaded(at, tmp_path)
    assert checkpoint.metadata["data"] == "pets.zip" and checkpoint.classes == ["cat", "dog"]
    assert not any(str(first) in value for value in checkpoint.metadata.values())
    # oracle: the same images as a folder, evaluated with the downloaded network
    data = load_data(_image_folder(tmp_path / "pets"), input_size=checkpoint.spec.input_size,
                     in_channels=checkpoint.spec.in_channels)
    _, accuracy = evaluate(model, data.test_x, data.test_y, in_channels=checkpoint.spec.in_channels)
    assert next(m.value for m in at.metric if m.label == "Test accuracy") == f"{accuracy:.2%}"
    # another zip replaces the first: its folder is removed
    more = {name.replace("pets/", "more/"): data for name, data in pets.items()}
    at.file_uploader(key="lab_data_zip").upload("more.zip", _zip(more), "application/zip").run()
    assert not at.exception and not at.error
    assert not first.exists() and at.session_state["lab_zip"].folder.path.is_dir()
    second = at.session_state["lab_zip"].folder.path
    at.selectbox(key="lab_data_kind").set_value("digits").run()  # no zip in use: its folder goes too
    assert not second.exists()


def test_a_bad_zip_is_one_line():
    at = open_page()
    at.selectbox(key="lab_data_kind").set_value("zip").run()
    at.file_uploader(key="lab_data_zip").upload("evil.zip", _zip({"../../evil.png": _png((1, 2, 3))}),
                                                "application/zip").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["'evil.zip' holds a file named '../../evil.png': absolute paths, '..' "
                                           "and backslashes are refused"]
    assert at.button(key="lab_train").disabled
    assert "lab_zip" not in at.session_state


def test_a_saved_result_of_the_wrong_shape_is_one_line():
    at = open_page()
    for content, needle in ((b"[]", "Not an ablation result (a JSON list"), (b"{not json", "is not JSON"),
                            (b'{"format": "xception-explorer-ablation/1", "spec_name": "x"}', "is missing")):
        at.file_uploader(key="lab_upload").upload("a.json", content, "application/json").run()
        assert not at.exception, content
        assert len(at.error) == 1 and needle in at.error[0].value and "\n" not in at.error[0].value


def test_saved_ablation_is_shown_with_its_table_in_words():
    at = open_page()
    shipped = load_ablation(ROOT / "docs" / "ablation")
    table = next(d.value for d in at.dataframe if "variant" in d.value.columns)
    residual = {True: "residual on", False: "residual off"}
    activation = {"none": "no mid activation", "relu": "ReLU mid activation", "elu": "ELU mid activation"}
    assert list(table["variant"]) == [f"{residual[r.knobs['residual']]}, {activation[r.knobs['mid_activation']]}"
                                      for r in shipped.summary()]
    assert not any("=" in v for v in table["variant"])
