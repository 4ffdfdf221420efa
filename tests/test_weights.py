"""The presets are the reference networks: same parameters, same logits, official keys map on."""

from __future__ import annotations

import pickle

import pytest
import torch

from explorer.build import build_model
from explorer.spec import load_spec
from explorer.errors import UsageError
from explorer.weights import WeightsError, convert_state_dict, load_weights, read_checkpoint


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_equal_the_references(timm_xception, tv_inception):
    assert n_params(build_model(load_spec("xception"))) == n_params(timm_xception) == 22_855_952
    assert n_params(build_model(load_spec("inception_v3"))) == n_params(tv_inception) == 27_161_264
    no_aux = load_spec("inception_v3").with_overrides(aux_logits=False)
    assert n_params(build_model(no_aux)) == n_params(tv_inception) - n_params(tv_inception.AuxLogits) == 23_834_568


@pytest.mark.parametrize("name, source, ref", [
    ("xception", "timm-legacy-xception", "timm_xception"),
    ("inception_v3", "torchvision-inception-v3", "tv_inception"),
])
def test_logits_match_the_reference(name, source, ref, request):
    reference = request.getfixturevalue(ref)
    ours = build_model(load_spec(name))
    report = load_weights(ours, convert_state_dict(reference.state_dict(), source), strict=True)
    assert report.complete and len(report.loaded) == len(reference.state_dict())
    x = torch.randn(2, 3, 299, 299, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert expected.abs().max() > 0.1  # the comparison is not between near-zero outputs
    assert torch.allclose(got, expected, atol=1e-4, rtol=0)
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()


def test_knobbed_spec_loads_what_fits_and_names_the_rest(timm_xception):
    spec = load_spec("xception").with_overrides(middle_repeats=4, num_classes=10)
    model = build_model(spec)
    report = load_weights(model, convert_state_dict(timm_xception.state_dict(), "timm-legacy-xception"))
    assert not report.complete
    assert any(k.startswith("middle.block5.") for k in report.unexpected)
    assert [k for k, *_ in report.mismatched] == ["exit.fc.weight", "exit.fc.bias"]
    assert "exit.fc.weight" in report.summary()
    # what fits was loaded: an entry conv equals the reference's
    assert torch.equal(model.entry.conv1.conv.weight, timm_xception.conv1.weight)
    with pytest.raises(WeightsError, match="exit.fc.weight"):
        load_weights(build_model(spec), convert_state_dict(timm_xception.state_dict(), "timm-legacy-xception"),
                     strict=True)


def test_unknown_layout_is_refused_naming_the_argument():
    with pytest.raises(UsageError, match="layout: unknown checkpoint layout 'keras'") as info:
        convert_state_dict({}, "keras")
    assert info.value.argument == "layout"


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickle_with_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"w": _Evil()}, f)
    with pytest.raises(WeightsError, match="refused"):
        read_checkpoint(path)
    assert "pwned" not in capsys.readouterr().out


def test_safetensors_and_wrapped_state_dicts_read(tmp_path):
    from safetensors.torch import save_file

    tensors = {"a.weight": torch.randn(2, 3)}
    save_file(tensors, str(tmp_path / "w.safetensors"), metadata={"k": "v"})
    got, meta = read_checkpoint(tmp_path / "w.safetensors")
    assert torch.equal(got["a.weight"], tensors["a.weight"]) and meta == {"k": "v"}
    torch.save({"state_dict": tensors}, tmp_path / "w.pth")
    got, _ = read_checkpoint(tmp_path / "w.pth")
    assert torch.equal(got["a.weight"], tensors["a.weight"])
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(WeightsError, match="not a valid safetensors"):
        read_checkpoint(tmp_path / "bad.safetensors")
