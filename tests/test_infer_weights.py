"""Weights for classification: the official-checkpoint path end to end (offline), random, local files.

The official files are stood in for by the reference modules' random-init state
dicts written under the official names into a temporary torch hub folder; the
oracle is the reference module run on the reference pipeline's input.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from PIL import Image

from explorer.build import build_model
from explorer.cli import main
from explorer.infer import classify, list_samples
from explorer.spec import load_spec, parse_spec
from explorer.weights import (
    WeightsError,
    clear_cache,
    get_weights,
    hub_checkpoint_dir,
    load_model,
    load_or_random,
    save_checkpoint,
)
from reference import tiny_spec_data

XCEPTION_IMAGENET, INCEPTION_IMAGENET = get_weights("xception.imagenet"), get_weights("inception_v3.imagenet")

SAMPLES = [s.path for s in list_samples()]
TINY = tiny_spec_data(input_size=32, num_classes=4)


@pytest.fixture(scope="session")
def official_hub(tmp_path_factory, timm_xception, tv_inception) -> Path:
    """A torch hub folder holding the reference modules' state dicts under the official file names."""
    home = tmp_path_factory.mktemp("torch_home")
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    torch.save(timm_xception.state_dict(), folder / XCEPTION_IMAGENET.file_name)
    torch.save(tv_inception.state_dict(), folder / INCEPTION_IMAGENET.file_name)
    return home


def use_torch_home(monkeypatch, home: Path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # torch.hub.get_dir() follows $TORCH_HOME again
    monkeypatch.setenv("EXPLORER_OFFLINE", "1")


@pytest.fixture
def hub(official_hub, monkeypatch) -> Path:
    use_torch_home(monkeypatch, official_hub)
    clear_cache()
    yield official_hub
    clear_cache()


@pytest.fixture
def empty_hub(tmp_path, monkeypatch) -> Path:
    use_torch_home(monkeypatch, tmp_path)
    clear_cache()
    yield tmp_path
    clear_cache()


def reference_top5(name: str, model: torch.nn.Module, paths) -> tuple[list[list[int]], torch.Tensor]:
    """Top-5 of the reference module on the reference library's own preprocessing."""
    if name == "xception":
        from timm.data import create_transform, resolve_data_config

        transform = create_transform(**resolve_data_config({}, model=model))
    else:
        from torchvision.models import Inception_V3_Weights

        transform = Inception_V3_Weights.IMAGENET1K_V1.transforms()
    x = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths])
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)
    return probs.topk(5).indices.tolist(), probs


@pytest.mark.parametrize("name, ref", [("xception", "timm_xception"), ("inception_v3", "tv_inception")])
def test_imagenet_weights_end_to_end_offline_api_and_cli(name, ref, hub, request, capsys):
    reference = request.getfixturevalue(ref)
    images = SAMPLES[:2]
    expected, probs = reference_top5(name, reference, images)

    result = classify(images, name, weights="imagenet")
    assert result.weights == "imagenet" and not result.errors
    assert [[p.index for p in r.top] for r in result.results] == expected
    got = torch.tensor([[p.probability for p in r.top] for r in result.results])
    assert torch.allclose(got, probs.topk(5).values, rtol=1e-3, atol=1e-6)
    from torchvision.models import Inception_V3_Weights

    categories = Inception_V3_Weights.IMAGENET1K_V1.meta["categories"]
    assert result.results[0].top[0].label == categories[expected[0][0]]

    clear_cache()  # the CLI loads the checkpoint again, from the hub folder
    assert main(["classify", *map(str, images), "--model", name, "--weights", "imagenet", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [[p["index"] for p in r["top"]] for r in data["results"]] == expected
    assert data["weights"] == "imagenet" and data["device"] == "cpu"


def test_a_spec_changed_by_knobs_loads_what_fits_and_says_what_does_not(hub, timm_xception):
    loaded = load_model("xception", "imagenet", knobs={"middle_repeats": 4, "num_classes": 10})
    assert loaded.kind == "imagenet" and loaded.weights.startswith("imagenet (partial")
    report = loaded.report
    assert [k for k, *_ in report.mismatched] == ["exit.fc.weight", "exit.fc.bias"]
    assert any(k.startswith("middle.block5.") for k in report.unexpected)
    assert any("exit.fc.weight" in note for note in loaded.notes)
    assert torch.equal(loaded.model.entry.conv1.conv.weight, timm_xception.conv1.weight)
    assert loaded.classes == tuple(f"class {i}" for i in range(10))
    assert "partial" in classify(SAMPLES[0], loaded).weights


def test_offline_missing_weights_name_the_file_and_the_folder(empty_hub):
    with pytest.raises(WeightsError) as info:
        load_model("inception_v3", "imagenet")
    message = str(info.value)
    assert "inception_v3_google-0cc3c7bd.pth" in message
    assert str(empty_hub / "hub" / "checkpoints") in message and str(hub_checkpoint_dir()) in message
    assert "--weights PATH" in message and "random" in message and "\n" not in message
    # the app goes on with the seeded random network, labelled as such
    loaded, reason = load_or_random("inception_v3", "imagenet")
    assert loaded.weights == "random (seed 0)" and reason == message


def test_a_failed_download_gives_the_same_advice(empty_hub, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(WeightsError, match=r"download failed.*xception-43020ad28\.pth"):
        load_model("xception", "imagenet", download=True)
    assert not list((empty_hub / "hub" / "checkpoints").glob("*"))  # no partial file left behind


def test_cli_missing_weights_is_one_line_and_exit_2(empty_hub):
    env = {**__import__("os").environ}
    result = subprocess.run([sys.executable, "-m", "explorer", "classify", str(SAMPLES[0]), "--model", "xception"],
                            check=False, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "xception-43020ad28.pth" in lines[0] and "Traceback" not in result.stderr


def test_official_urls_are_the_reference_libraries_own():
    import timm
    from torchvision.models import Inception_V3_Weights

    xception_url = timm.models.get_pretrained_cfg("legacy_xception.tf_in1k").url
    assert XCEPTION_IMAGENET.url == xception_url
    assert INCEPTION_IMAGENET.url == Inception_V3_Weights.IMAGENET1K_V1.url
    for official in (XCEPTION_IMAGENET, INCEPTION_IMAGENET):
        assert official.url.endswith("/" + official.file_name)


def test_random_weights_are_seeded_and_labelled():
    spec = parse_spec(TINY)
    a = load_model(spec, "random", cache=False)
    b = load_model(spec, "random", cache=False)
    c = load_model(spec, "random", seed=1, cache=False)
    assert a.weights == "random (seed 0)" and a.is_random and c.weights == "random (seed 1)"
    w = "sep.pointwise.weight"
    assert torch.equal(a.model.state_dict()[w], b.model.state_dict()[w])
    assert not torch.equal(a.model.state_dict()[w], c.model.state_dict()[w])
    assert any("random" in note for note in a.notes)


def test_no_imagenet_weights_for_an_unrelated_spec(empty_hub, monkeypatch):
    """Refused by structure, before any file is looked for or downloaded (mini_xception is built of
    xception blocks, but its tensors are not Xception's)."""
    def no_download(*args, **kwargs):
        raise AssertionError("nothing may be downloaded for a spec the weights do not fit")

    monkeypatch.setattr(urllib.request, "urlopen", no_download)
    with pytest.raises(WeightsError, match="no ImageNet weights fit spec 'tiny'"):
        load_model(parse_spec(TINY), "imagenet", download=True)
    with pytest.raises(WeightsError, match=r"no ImageNet weights fit spec 'mini_xception'.*xception\.imagenet holds "
                                           r"0 of the network's \d+ learnable tensors.*entry\.conv1\.conv\.weight"):
        load_model("mini_xception", "imagenet", download=True)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_a_pickle_with_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"entry.conv1.conv.weight": _Evil()}, f)
    with pytest.raises(WeightsError, match="'evil.pth' was refused"):
        classify(SAMPLES[0], "xception", weights=path)
    assert main(["classify", str(SAMPLES[0]), "--model", "xception", "--weights", str(path)]) == 2
    captured = capsys.readouterr()
    assert "pwned" not in captured.out + captured.err
    assert len(captured.err.strip().splitlines()) == 1 and "refused" in captured.err


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_checkpoint_of_the_wrong_shape_is_refused_naming_the_first_bad_key(tmp_path, suffix):
    spec = parse_spec(TINY)
    other = build_model(spec.with_overrides(num_classes=7))
    path = tmp_path / f"seven{suffix}"
    if suffix == ".pth":
        torch.save(other.state_dict(), path)
    else:
        save_checkpoint(path, other, spec.with_overrides(num_classes=7))
    with pytest.raises(WeightsError, match=r"'seven.*' does not fit spec 'tiny'.*first: fc\.weight, network \(4, 16\), "
                                           r"checkpoint \(7, 16\)"):
        load_model(spec, path)


def test_explorer_checkpoints_carry_their_spec_classes_and_preprocessing(tmp_path):
    spec = parse_spec(TINY)
    model = build_model(spec, seed=5)
    classes = ["ant", "bee", "cat", "dog"]
    # gray preprocessing for a 3-channel network (as the lab trains on the digits): the gray fills every channel
    preprocess = {"resize": 36, "crop": 32, "interpolation": "bilinear", "mean": [0.1], "std": [0.5], "channels": 1}
    path = save_checkpoint(tmp_path / "tiny.safetensors", model, spec, classes,
                           {"preprocess": json.dumps(preprocess)})
    loaded = load_model(None, path)
    assert loaded.spec == spec and list(loaded.classes) == classes and loaded.weights == "tiny.safetensors"
    assert loaded.preprocess.mean == (0.1,) and loaded.preprocess.resize == 36
    assert loaded.report.complete
    result = classify(SAMPLES, None, weights=path, top=2)
    from torchvision.transforms import functional as TF

    gray = [TF.center_crop(TF.resize(Image.open(p).convert("L"), 36), 32) for p in SAMPLES]
    x = torch.stack([TF.normalize(TF.to_tensor(g), [0.1], [0.5]) for g in gray]).expand(-1, 3, -1, -1)
    with torch.no_grad():
        expected = torch.softmax(model(x), 1).topk(2).indices.tolist()
    assert [[p.index for p in r.top] for r in result.results] == expected
    assert result.results[0].top[0].label in classes
    # the same file as a plain state dict needs its spec named
    torch.save(model.state_dict(), tmp_path / "tiny.pth")
    with pytest.raises(WeightsError, match="name a spec"):
        load_model(None, tmp_path / "tiny.pth")
    assert load_model(spec, tmp_path / "tiny.pth").classes == ("class 0", "class 1", "class 2", "class 3")


def test_an_official_layout_file_given_as_a_path_is_mapped(tmp_path, timm_xception):
    path = tmp_path / "xception-43020ad28.pth"
    torch.save(timm_xception.state_dict(), path)
    loaded = load_model("xception", path)
    assert loaded.report.complete and loaded.kind == "file"
    assert torch.equal(loaded.model.exit.fc.weight, timm_xception.fc.weight)


def test_bad_weight_names():
    with pytest.raises(WeightsError, match="neither 'imagenet', 'random', a known weights set .* nor an existing"):
        load_model("xception", "imagenett")
    with pytest.raises(WeightsError, match="need a spec"):
        load_model(None, "random")


def test_loaded_models_are_cached_and_shared():
    clear_cache()
    a = load_model(parse_spec(TINY), "random")
    assert load_model(parse_spec(TINY), "random") is a
    assert load_model(parse_spec(TINY), "random", seed=3) is not a
    assert load_spec("xception").name == "xception"
    clear_cache()
