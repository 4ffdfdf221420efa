"""The scorecard (explorer.explain.scorecard) on the shipped digits network: the known results, the measures
against their definitions and Captum, reproducibility, hook hygiene and one-line errors.

One card with every method and every measure is computed once for the module (four held-out digits,
light settings) and read by most tests.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from explorer.explain import installed_hooks
from explorer.explain.errors import ExplainError
from explorer.explain.metrics import (
    CurveJob,
    area,
    baseline_image,
    cascade_stages,
    gini,
    perturbation_curves,
    randomize,
    rank_correlation,
    ranking,
)
from explorer.explain.scorecard import METRIC_ORDER, METRICS, score
from explorer.weights import get_weights

DIGITS = get_weights("mini_xception.digits").path
LIGHT = {"samples": 2, "steps": 10, "options": {"occlusion": {"window": 8, "stride": 4}}}
FAITHFUL = ("saliency", "ig", "smoothgrad", "guided-backprop", "occlusion")

pytestmark = [pytest.mark.filterwarnings("ignore:Setting backward hooks on ReLU"),
              pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.usefixtures("one_thread")]


@pytest.fixture(scope="module")
def loaded():
    from explorer.weights import load_model

    return load_model(None, DIGITS, cache=False)


@pytest.fixture(scope="module")
def images():
    from explorer.lab.data import digits_samples

    return [image for image, _ in digits_samples(4)]


@pytest.fixture(scope="module")
def card(loaded, images):
    return score(images, loaded, **LIGHT)


def test_every_method_and_measure_has_a_row_with_its_direction(card):
    assert len(card.rows) == 7 * 7
    assert {(r.method, r.metric) for r in card.rows} == {(m, k) for m in card.methods for k in METRIC_ORDER}
    for row in card.rows:
        assert row.n == 4, (row.method, row.metric, row.note)
        assert np.isfinite(row.mean) and np.isfinite(row.spread) and row.seconds >= 0
    data = card.to_dict()
    assert data["metrics"]["deletion"]["direction"] == "lower"
    assert data["metrics"]["insertion"]["direction"] == "higher"
    for name in METRIC_ORDER:
        best = data["best"][name]["method"]
        means = {r.method: r.mean for r in card.rows if r.metric == name}
        pick = min if METRICS[name].direction == "lower" else max
        assert means[best] == pick(means.values())


def test_deletion_with_the_methods_own_map_beats_a_random_order(card):
    """The class probability falls faster when the pixels go in the map's order than in a random one
    (and rises faster on insertion): the maps of the faithful methods carry information."""
    for method in FAITHFUL:
        assert card.row(method, "deletion").mean < card.chance["deletion"], method
        assert card.row(method, "insertion").mean > card.chance["insertion"], method


def test_randomization_changes_saliency_and_ig_but_barely_guided_backprop(card):
    """Adebayo et al., 2018: re-initializing the top of the network changes the gradient maps; Guided
    Backprop's map stays nearly the same (it acts as an edge detector). The first stage is the exit flow."""
    assert card.stages[0] == "exit flow"
    exit_flow = {m: card.cascade[m][0] for m in card.methods}
    assert exit_flow["saliency"] < 0.75 and exit_flow["ig"] < 0.75, exit_flow
    assert exit_flow["guided-backprop"] > 0.9, exit_flow
    assert card.row("guided-backprop", "randomization").mean > card.row("saliency", "randomization").mean
    # the picture: the original map, then one per stage, for the first image
    assert all(len(maps) == 1 + len(card.stages) for maps in card.cascade_maps.values())


def test_guided_backprop_hardly_depends_on_the_class(card):
    """Random logit: Guided Backprop's map for another class is nearly the same map (known result)."""
    assert card.row("guided-backprop", "random_logit").mean > 0.9
    assert card.row("saliency", "random_logit").mean < card.row("guided-backprop", "random_logit").mean


def test_a_rerun_with_the_same_seed_gives_the_same_card(loaded, images, card):
    again = score(images, loaded, **LIGHT)
    strip = lambda d: {k: v for k, v in d.items() if k not in ("seconds", "map_seconds")}  # noqa: E731
    rows = lambda d: [{k: v for k, v in r.items() if k != "seconds"} for r in d["rows"]]  # noqa: E731
    assert rows(again.to_dict()) == rows(card.to_dict())
    assert {k: v for k, v in strip(again.to_dict()).items() if k != "rows"} == \
        {k: v for k, v in strip(card.to_dict()).items() if k != "rows"}
    other = score(images, loaded, methods=["saliency"], metrics=["deletion", "sensitivity"], seed=1, **LIGHT)
    assert other.chance["deletion"] != card.chance["deletion"]  # the random order follows the seed


def test_a_card_for_fewer_methods_keeps_their_numbers(loaded, images, card):
    part = score(images, loaded, methods=["occlusion", "saliency"], metrics=["sensitivity", "deletion"], **LIGHT)
    for method in ("saliency", "occlusion"):
        for metric in ("sensitivity", "deletion"):
            assert part.row(method, metric).values == card.row(method, metric).values


def test_the_shared_model_is_untouched_and_no_hook_is_left(loaded, images):
    from explorer.explain import POOL

    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    score(images[:1], loaded, methods=["guided-backprop", "gradcam"], metrics=["randomization", "random_logit"],
          **LIGHT)
    assert installed_hooks(loaded.model) == []
    for replica in POOL.idle_replicas(loaded.model):
        assert installed_hooks(replica) == []
    after = loaded.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_no_hook_is_left_after_a_failure_mid_run(loaded, images):
    from explorer.explain import POOL

    class Stop(Exception):
        pass

    def progress(fraction: float) -> None:
        if fraction > 0.3:
            raise Stop

    with pytest.raises(Stop):
        score(images[:2], loaded, methods=["guided-backprop", "guided-gradcam", "saliency"], progress=progress,
              **LIGHT)
    assert installed_hooks(loaded.model) == []
    for replica in POOL.idle_replicas(loaded.model):
        assert installed_hooks(replica) == []


def test_a_method_that_cannot_apply_gives_rows_with_a_note(loaded, images):
    card = score(images[:1], loaded, methods=["gradcam", "saliency"], metrics=["deletion", "sparseness"],
                 options={"gradcam": {"layer": "exit.pool"}}, **{k: v for k, v in LIGHT.items() if k != "options"})
    for metric in ("deletion", "sparseness"):
        row = card.row("gradcam", metric)
        assert row.n == 0 and row.note and "Grad-CAM cannot run here" in row.note
        assert card.row("saliency", metric).n == 1
    assert card.best("deletion") == "saliency"


def test_progress_runs_from_zero_to_the_end(loaded, images):
    seen: list[float] = []
    score(images[:1], loaded, methods=["ig"], metrics=["deletion", "random_logit"], progress=seen.append, **LIGHT)
    assert seen and all(0 <= f <= 1 for f in seen)
    assert seen == sorted(seen) and seen[-1] > 0.9


# -- the measures against their definitions and against Captum ---------------------------------------


def test_gini_is_the_mean_absolute_difference_over_twice_the_mean():
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100):
        x = rng.standard_normal(n) ** 3
        a = np.abs(x)
        definition = np.abs(a[:, None] - a[None, :]).sum() / (2 * n * a.sum())
        assert gini(x) == pytest.approx(definition, rel=1e-12)
    assert gini(np.ones(50)) == 0.0
    assert gini(np.eye(1, 10).ravel()) == pytest.approx(0.9)
    assert np.isnan(gini(np.zeros(5)))


def test_rank_correlation_is_spearmans_on_magnitudes():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 6, 6))
    assert rank_correlation(a, b) == pytest.approx(spearmanr(np.abs(a).ravel(), np.abs(b).ravel()).statistic)
    assert rank_correlation(a, -a) == pytest.approx(1.0)
    assert rank_correlation(a, np.zeros_like(a)) == 0.0


def test_curves_equal_a_plain_loop_on_the_model_as_built(loaded, images):
    """Deletion and insertion, batched on the inference copy, against one image at a time through the
    model as built: the same probabilities; and the curves' ends are the clean and the baseline image."""
    x = loaded.inputs(images[:1])[0]
    generator = np.random.default_rng(3)
    order = ranking(generator.standard_normal(x.shape[-2:]), generator)
    base = baseline_image(x, "blur")
    model = loaded.model
    steps = 8
    with torch.no_grad():
        target = int(model(x[None]).argmax())
    jobs = [CurveJob(x, order, base, target, deletion) for deletion in (True, False)]
    curves = perturbation_curves(loaded.runner("cpu"), jobs, steps, batch=5)
    pixels = x.shape[-1] * x.shape[-2]
    for row, deletion in enumerate((True, False)):
        expected = []
        for k in range(steps + 1):
            count = round(k * pixels / steps)
            mask = np.zeros(pixels, dtype=bool)
            mask[order[:count]] = True
            mask = torch.from_numpy(mask.reshape(x.shape[-2:]))
            image = torch.where(mask, base, x) if deletion else torch.where(mask, x, base)
            with torch.no_grad():
                expected.append(float(torch.softmax(model(image[None]), 1)[0, target]))
        np.testing.assert_allclose(curves[row], expected, atol=1e-5)
    with torch.no_grad():
        clean = float(torch.softmax(model(x[None]), 1)[0, target])
        blurred = float(torch.softmax(model(base[None]), 1)[0, target])
    assert curves[0, 0] == pytest.approx(clean, abs=1e-5) and curves[0, -1] == pytest.approx(blurred, abs=1e-5)
    assert area(np.ones(steps + 1)) == pytest.approx(1.0)
    # uneven steps (1,024 pixels in 20 steps: 51 or 52 each) are integrated where they really ended
    ramp = np.linspace(0, 1, 21) ** 2
    counts = np.round(np.linspace(0, 1024, 21)) / 1024
    assert area(counts ** 2, 1024) == pytest.approx(np.trapezoid(counts ** 2, counts))
    assert area(ramp, 1000) == pytest.approx(np.trapezoid(ramp, dx=0.05))


def test_infidelity_and_sensitivity_are_captums_own(loaded, images, card):
    """The rows hold what Captum's infidelity and sensitivity_max give for the same map, target and noise
    (run here on the model as built, with the generators seeded as the scorecard seeds them)."""
    from captum.attr import Saliency
    from captum.metrics import infidelity, sensitivity_max

    from explorer.explain.metrics import gaussian_perturb, uniform_perturb
    from explorer.explain.scorecard import NOISE_FRACTION, _seed

    model = copy.deepcopy(loaded.model).eval().requires_grad_(False)
    x = loaded.inputs(images[:1])
    target = card.targets[0]
    x.requires_grad_(True)
    saliency = Saliency(model).attribute(x, target=target, abs=True).detach()
    x = x.detach()
    spread = float(x.max() - x.min())
    g = torch.Generator().manual_seed(_seed(0, "infidelity", "saliency", 0))
    expected = infidelity(model, gaussian_perturb(g, NOISE_FRACTION * spread), x, saliency, target=target,
                          n_perturb_samples=LIGHT["samples"], normalize=True)
    assert card.row("saliency", "infidelity").values[0] == pytest.approx(float(expected), rel=1e-3)

    def explain(inputs, **kwargs):  # Saliency.attribute, its maps contiguous (Captum views them flat)
        out = Saliency(model).attribute(inputs, **kwargs)
        return tuple(o.contiguous() for o in out) if isinstance(out, tuple) else out.contiguous()

    g = torch.Generator().manual_seed(_seed(0, "sensitivity", "saliency", 0))
    expected = sensitivity_max(explain, x, perturb_func=uniform_perturb(g), perturb_radius=0.02,
                               n_perturb_samples=LIGHT["samples"], target=target, abs=True)
    assert card.row("saliency", "sensitivity").values[0] == pytest.approx(float(expected), rel=1e-3)


def test_cascade_stages_follow_the_flows_from_the_top(loaded):
    from explorer.build import build_model
    from explorer.spec import load_spec

    for preset, flows in (("xception", ["exit", "middle", "entry"]),
                          ("inception_v3", ["head", "mixed_7", "mixed_6", "mixed_5", "stem"])):
        model = build_model(load_spec(preset))
        stages = cascade_stages(model)
        assert [s.flow for s in stages] == flows
        assert all(set(a.layers) < set(b.layers) for a, b in zip(stages, stages[1:]))  # cumulative
        learnable = {layer.name for layer in model.layers if not layer.train_only
                     and any(True for _ in model.get_submodule(layer.name).parameters(recurse=False))}
        assert learnable <= set(stages[-1].layers)
        assert not any(name.startswith("AuxLogits") for name in stages[-1].layers)


def test_randomize_changes_only_the_named_layers_and_follows_its_seed(loaded):
    model = copy.deepcopy(loaded.model)
    stage = cascade_stages(model)[0]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    randomize(model, stage.layers, torch.Generator().manual_seed(5))
    after = model.state_dict()
    for key in before:
        changed = not torch.equal(before[key], after[key])
        inside = any(key.startswith(name + ".") for name in stage.layers)
        if key.endswith("num_batches_tracked"):
            continue
        assert changed == inside or (inside and before[key].numel() == 1), key
    again = copy.deepcopy(loaded.model)
    randomize(again, stage.layers, torch.Generator().manual_seed(5))
    assert all(torch.equal(after[k], v) for k, v in again.state_dict().items())


# -- bad inputs: one clean error each, and exit code 2 on the command line ---------------------------


@pytest.mark.parametrize("kwargs, words", [
    ({"metrics": ["deletoin"]}, "unknown metric 'deletoin' (did you mean 'deletion'?)"),
    ({"methods": ["salency"]}, "unknown method 'salency' (did you mean 'saliency'?)"),
    ({"target": 10}, "target class 10 is out of range"),
    ({"target": "seven"}, "no class named 'seven'"),
    ({"options": {"ig": {"stepz": 3}}, "methods": ["ig"]}, "unknown option 'stepz'"),
    ({"baseline": "grey"}, "unknown baseline 'grey'"),
    ({"steps": 0}, "steps must be a whole number"),
])
def test_bad_inputs_are_one_clean_error(loaded, images, kwargs, words):
    with pytest.raises(ExplainError, match=None) as info:
        score(images[:1], loaded, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_no_images_is_a_clean_error(loaded):
    with pytest.raises(ExplainError, match="no images to score"):
        score([], loaded)


@pytest.mark.parametrize("argv, words", [
    (["--metrics", "nope"], "unknown metric 'nope'"),
    (["--methods", "salency"], "unknown method 'salency'"),
    (["--target", "99"], "out of range"),
    (["-o", "ig.stepz=2"], "unknown option 'stepz'"),
])
def test_the_command_line_exits_2_with_one_line(tmp_path, images, capsys, argv, words):
    from explorer.cli import main

    path = tmp_path / "digit.png"
    images[0].save(path)
    code = main(["score", str(path), "--weights", str(DIGITS), "--quiet", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2 and words in err and len(err.splitlines()) == 1


def test_the_command_line_prints_the_table_with_directions(tmp_path, images, capsys):
    from explorer.cli import main

    path = tmp_path / "digit.png"
    images[0].save(path)
    code = main(["score", str(path), "--weights", str(DIGITS), "--quiet", "--methods", "saliency", "ig",
                 "--metrics", "deletion", "insertion", "sparseness", "--steps", "5"])
    out = capsys.readouterr().out
    assert code == 0
    assert "deletion ↓" in out and "insertion ↑" in out and "sparseness ↑" in out and "random order" in out
    assert out.split("\n\n")[0].count("★") == 3  # one best per column
    code = main(["score", str(path), "--weights", str(DIGITS), "--json", "--methods", "saliency",
                 "--metrics", "sparseness"])
    import json

    data = json.loads(capsys.readouterr().out)
    assert code == 0 and data["rows"][0]["metric"] == "sparseness" and data["best"]["sparseness"]["method"] == "saliency"


def test_a_tie_has_no_best_and_a_flat_curve_says_so(loaded, images):
    """Where the means tie no method is marked best; where the output hardly moves with the pixels
    (random weights), deletion cannot rank the methods and the rows say why."""
    from explorer.explain.scorecard import FLAT_CURVE, Row, Scorecard

    card = Scorecard("n", ("a",), (0,), (None,), ("saliency", "ig"), ("deletion",),
                     [Row("saliency", "deletion", (0.5,)), Row("ig", "deletion", (0.5,))], {}, "cpu")
    assert card.best("deletion") is None
    card.rows[1] = Row("ig", "deletion", (0.4,))
    assert card.best("deletion") == "ig"
    # Xception with random weights gives every class about 1/1000 whatever the pixels
    cat = Path(__file__).resolve().parents[1] / "assets" / "samples" / "cat.jpg"
    flat = score([cat], "xception", weights="random", methods=["saliency", "gradcam"],
                 metrics=["deletion"], steps=2)
    assert np.ptp(flat.curves["deletion"]["saliency"]) < FLAT_CURVE
    assert "says nothing" in flat.row("saliency", "deletion").note
    assert flat.best("deletion") is None
