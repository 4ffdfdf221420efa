"""Preprocessing (against timm's and torchvision's own transforms), devices, batching and the OOM fallback."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from explorer.infer import (
    DeviceError,
    available_devices,
    classify,
    list_samples,
    load_model,
    predict,
    resolve_device,
    run_model,
    with_cpu_fallback,
)
from explorer.infer.device import check_precision, is_out_of_memory
from explorer.spec import load_spec, parse_spec
from explorer.weights import Preprocess, get_weights, preprocess_for
from reference import tiny_spec_data

XCEPTION = get_weights("xception.imagenet").preprocess
INCEPTION = get_weights("inception_v3.imagenet").preprocess

TINY = tiny_spec_data(input_size=40, num_classes=6)


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    return Image.open(list_samples()[0].path).convert("RGB")


@pytest.fixture(scope="module")
def tiny():
    return load_model(parse_spec(TINY), "random", cache=False)


@pytest.mark.parametrize("size", [299, 224])
def test_xception_preprocessing_is_timms(cat, size):
    import timm
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model("legacy_xception", pretrained=False, num_classes=0)
    transform = create_transform(**resolve_data_config({"input_size": (3, size, size)}, model=model))
    ours = get_weights("xception.imagenet").preprocess_for(load_spec("xception").with_overrides(input_size=size))
    assert torch.allclose(ours(cat), transform(cat), atol=1e-6)


@pytest.mark.parametrize("size", [299, 224])
def test_inception_preprocessing_is_torchvisions(cat, size):
    from torchvision.models import Inception_V3_Weights
    from torchvision.transforms._presets import ImageClassification

    meta = Inception_V3_Weights.IMAGENET1K_V1.transforms()
    # torchvision's preset at another crop keeps the resize-to-crop ratio 342/299
    transform = meta if size == 299 else ImageClassification(crop_size=size, resize_size=round(size * 342 / 299))
    spec = load_spec("inception_v3").with_overrides(input_size=size, aux_logits=False)
    ours = get_weights("inception_v3.imagenet").preprocess_for(spec)
    assert preprocess_for(spec) == ours  # a variant of Inception V3 gets Inception's preprocessing
    assert torch.allclose(ours(cat), transform(cat), atol=1e-6)
    assert ours.crop == size and ours.resize == round(size * 342 / 299)


def test_preprocessing_is_described_and_round_trips():
    assert "333" in XCEPTION.describe() and "bicubic" in XCEPTION.describe() and "0.5" in XCEPTION.describe()
    assert "342" in INCEPTION.describe() and "0.485" in INCEPTION.describe()
    assert Preprocess.from_dict(INCEPTION.to_dict()) == INCEPTION
    gray = preprocess_for(parse_spec({**TINY, "in_channels": 1}))  # derives from no official network
    assert gray.channels == 1 and len(gray.mean) == 1 and gray.describe().startswith("grayscale")
    assert gray(Image.new("RGB", (50, 60), (10, 20, 30))).shape == (1, 40, 40)


def test_inputs_and_outputs_are_not_inference_tensors(tiny, cat):
    x = tiny.preprocess.batch([cat])
    probs, _, _ = predict(tiny, x, device="cpu")
    assert not x.is_inference() and not probs.is_inference()
    x.requires_grad_(True)
    tiny.model(x).sum().backward()  # the explain feature may reuse the tensor for gradients
    assert x.grad is not None and torch.allclose(probs.sum(1), torch.ones(1))


def test_batches_give_the_same_logits_as_one_pass(tiny):
    x = torch.randn(5, 3, 40, 40, generator=torch.Generator().manual_seed(0))
    one = run_model(tiny.model, x, torch.device("cpu"), batch_size=5)
    split = run_model(tiny.model, x, torch.device("cpu"), batch_size=2, channels_last=False)
    assert torch.allclose(one.logits, split.logits, atol=1e-5)
    with torch.no_grad():
        assert torch.allclose(one.logits, tiny.model(x), atol=1e-5)


def test_device_choice():
    assert resolve_device("auto") == torch.device(available_devices()[0])
    assert resolve_device("cpu") == torch.device("cpu") and available_devices()[-1] == "cpu"
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="'cuda' is not available here"):
            resolve_device("cuda")


def test_precision_is_a_gpu_option():
    assert check_precision("fp32", torch.device("cpu")) == ("fp32", None)
    used, note = check_precision("fp16", torch.device("cpu"))
    assert used == "fp32" and "GPU option" in note
    assert check_precision("bf16", torch.device("cpu")) == ("bf16", None)
    with pytest.raises(DeviceError, match="unknown precision"):
        check_precision("fp8", torch.device("cpu"))


def test_out_of_memory_falls_back_to_the_cpu():
    calls = []

    def run(device: torch.device) -> str:
        calls.append(device.type)
        if device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "done"

    result, note = with_cpu_fallback(run, torch.device("cuda"))
    assert result == "done" and calls == ["cuda", "cpu"] and "ran on the CPU" in note
    assert is_out_of_memory(RuntimeError("MPS backend out of memory"))

    def broken(device: torch.device) -> str:
        raise ValueError("something else")

    with pytest.raises(ValueError):
        with_cpu_fallback(broken, torch.device("cuda"))
    with pytest.raises(torch.cuda.OutOfMemoryError):
        with_cpu_fallback(lambda d: run(torch.device("cuda")), torch.device("cpu"))


def test_classify_reports_the_fallback(tiny, cat, monkeypatch):
    cpu_model = tiny.model

    def on(self, device, *args):
        if torch.device(device).type == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return cpu_model

    monkeypatch.setattr(type(tiny), "runner", on)  # a LoadedModel is frozen: patch its class for this test
    result = classify([cat], tiny, device=torch.device("cuda"), top=3)
    assert result.device == "cpu" and any("ran out of memory" in n for n in result.notes)
    assert len(result.results[0].top) == 3


def test_classify_collects_bad_images_and_goes_on(tiny, cat):
    result = classify([cat, b"", b"plain text"], tiny, errors="collect")
    assert result.results[0].ok and [r.ok for r in result.results] == [True, False, False]
    assert "is empty" in result.results[1].error and "text file" in result.results[2].error
    assert result.latency_ms > 0 and result.to_dict()["latency_ms"] == result.latency_ms


@pytest.mark.parametrize("name, knobs", [
    ("xception", {"middle_repeats": 2, "input_size": 96}),
    ("xception", {"middle_repeats": 1, "residual": False, "mid_activation": "relu", "input_size": 96}),
    ("inception_v3", {"aux_logits": False, "input_size": 139}),
    ("xception+dropout", {"middle_repeats": 1, "input_size": 96}),
])
def test_the_fast_copy_computes_the_same_function(name, knobs):
    from conftest import randomize_

    from explorer.build import build_model
    from explorer.build.fast import FastNet, can_pack, fast_copy

    spec = load_spec(name.split("+")[0]).with_overrides(**knobs)
    if name.endswith("+dropout"):  # an identity in eval before a block whose input is also its shortcut's
        data = spec.model_dump(mode="json")
        at = next(i for i, b in enumerate(data["blocks"]) if b["name"] == "entry.block2")
        data["blocks"].insert(at + 1, {"name": "entry.drop", "type": "dropout", "flow": "entry", "p": 0.5})
        spec = parse_spec(data)
    model = randomize_(build_model(spec), seed=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = FastNet(model).to(memory_format=torch.channels_last)
    packed = fast_copy(model, pack=True)  # prepacked weights for one image, plain ones for a batch
    x = torch.randn(2, 3, knobs["input_size"], knobs["input_size"], generator=torch.Generator().manual_seed(5))
    x_cl = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        expected = model(x)
        one = torch.cat([packed(x_cl[i:i + 1].contiguous(memory_format=torch.channels_last)) for i in range(2)])
        for got in (fast(x_cl), packed(x_cl), one):
            assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
            assert got.argmax(1).tolist() == expected.argmax(1).tolist()
    assert torch.equal(x_cl, x)  # the caller's tensor is never overwritten
    if can_pack():
        assert any(type(step.module).__name__ == "_PackedConv" for step in packed.steps)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # nor the model
    batchnorms = [layer for layer in model.layers if layer.kind == "batchnorm"]
    assert fast.folded == len(batchnorms)  # in both networks every batch norm follows a conv
    with pytest.raises(RuntimeError, match="inference only"):
        fast.train()
