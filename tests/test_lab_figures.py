"""The lab's figures at their edges: accuracy axes stay within 0–100 %, loss axes carry readable
log ticks, variants are named in words."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.lab import ablation_figure, training_figure
from explorer.lab.ablate import AblationResult, RunRecord
from explorer.lab.report import variant_phrase
from explorer.lab.train import EpochStats

PAD = 0.03  # room allowed beyond 0 and 100 % so markers on the edge stay whole


def _history(accs, losses):
    return [EpochStats(e + 1, loss, acc, loss * 1.3, acc, 1.0, e + 1.0, 1e-3)
            for e, (acc, loss) in enumerate(zip(accs, losses))]


# A quick ablation as a user gets it: three seeds that disagree wildly, so mean − std < 0 and
# mean + std > 1 at some epochs, and losses that span two decades.
SEEDS = {"residual on": [([0.02, 0.95, 0.99], [2.4, 0.2, 0.03]), ([0.05, 0.10, 0.98], [2.3, 2.1, 0.05]),
                         ([0.90, 0.99, 1.00], [0.5, 0.04, 0.02])],
         "residual off": [([0.0, 0.1, 0.2], [2.5, 2.3, 2.0]), ([0.1, 0.1, 0.9], [2.3, 2.2, 0.4]),
                          ([0.0, 0.0, 0.1], [2.6, 2.5, 2.4])]}


def _quick() -> AblationResult:
    runs = [RunRecord(f"residual={'true' if label == 'residual on' else 'false'}", {"residual": label == "residual on"},
                      seed, _history(accs, losses), 1.0)
            for label, seeds in SEEDS.items() for seed, (accs, losses) in enumerate(seeds)]
    return AblationResult("mini_xception", "name: mini_xception\n", "digits: quick", [("residual", [True, False])],
                          [0, 1, 2], {"epochs": 3}, runs)


def _axes(figure, metrics):
    return {m: figure.layout[f"yaxis{i if i > 1 else ''}"] for i, m in enumerate(metrics, 1)}


def _traces_of(figure, col):
    axis = f"y{col if col > 1 else ''}"
    return [t for t in figure.data if (t.yaxis or "y") == axis]


def test_the_quick_ablation_really_has_bands_beyond_0_and_100_percent():
    """The oracle for the next test: numpy's mean and sample std of the raw accuracies."""
    accs = np.array([[a for a in accs] for accs, _ in SEEDS["residual on"]])
    mean, std = accs.mean(0), accs.std(0, ddof=1)
    assert (mean - std < 0).any() and (mean + std > 1).any()


def test_ablation_accuracy_axes_stay_within_0_and_100_percent():
    metrics = ("test_acc", "train_acc", "test_loss")
    figure = ablation_figure(_quick(), metrics)
    for col, metric in enumerate(metrics[:2], 1):
        axis = _axes(figure, metrics)[metric]
        assert axis.range is not None, metric
        low, high = axis.range
        assert -PAD <= low < high <= 1 + PAD, (metric, axis.range)
        assert axis.tickformat.endswith("%")
        raw = np.array([accs for seeds in SEEDS.values() for accs, _ in seeds])
        means = [np.array([accs for accs, _ in seeds]).mean(0) for seeds in SEEDS.values()]
        # every mean is on screen, and every band (clipped) lies within 0..100 %
        assert all(low <= m <= high for ms in means for m in ms)
        for trace in _traces_of(figure, col):
            assert all(-1e-9 <= y <= 1 + 1e-9 for y in trace.y), trace.name
        assert raw.min() >= low - 1e-9 and raw.max() <= high + 1e-9


def _assert_readable_log_ticks(axis, values):
    assert axis.type == "log"
    assert axis.tickvals and axis.ticktext and len(axis.tickvals) == len(axis.ticktext)
    # each label reads as its value ("0.05", "0.2", "2")
    for value, text in zip(axis.tickvals, axis.ticktext):
        assert float(text) == pytest.approx(value), (value, text)
    positive = [v for v in values if v > 0]
    assert min(axis.tickvals) <= min(positive) and max(axis.tickvals) >= max(positive)
    assert axis.range[0] <= np.log10(min(positive)) and axis.range[1] >= np.log10(max(positive))


def test_ablation_loss_axes_carry_labelled_ticks_covering_the_data():
    metrics = ("test_acc", "test_loss", "train_loss")
    figure = ablation_figure(_quick(), metrics)
    for col, metric in enumerate(metrics, 1):
        if "loss" not in metric:
            continue
        raw = [loss * (1.3 if metric == "test_loss" else 1.0) for seeds in SEEDS.values()
               for _, losses in seeds for loss in losses]
        means = [v for t in _traces_of(figure, col) if t.fill != "toself" for v in t.y]
        assert min(means) >= min(raw) - 1e-9 and max(means) <= max(raw) + 1e-9  # means lie within the raw data
        _assert_readable_log_ticks(_axes(figure, metrics)[metric], means)
        # bands are drawn on the log axis too: all positive, none below the lowest tick
        for trace in _traces_of(figure, col):
            assert min(trace.y) > 0 and min(trace.y) >= min(_axes(figure, metrics)[metric].tickvals)


def test_training_figure_clamps_accuracy_and_labels_the_loss_ticks():
    history = _history([0.12, 0.8], [2.3, 0.04])
    figure = training_figure(history, epochs=10)
    low, high = figure.layout.yaxis.range
    assert -PAD <= low <= 0.12 and 0.8 <= high <= 1 + PAD
    losses = [v for h in history for v in (h.train_loss, h.test_loss)]
    _assert_readable_log_ticks(figure.layout.yaxis2, losses)


def test_legend_names_variants_in_words():
    figure = ablation_figure(_quick())
    names = [t.name for t in figure.data if t.showlegend is not False and t.fill != "toself"]
    assert [n.split(":")[0] for n in names] == ["residual on", "residual off"]
    assert not any("=" in n for n in names)
    # the legend sits at the foot of the figure, in a margin with a row for every entry, so that at
    # 800 px, where each entry takes a row of its own, it cannot cover the plots or the axis titles
    legend = figure.layout.legend
    assert legend.yref == "container" and legend.y == 0 and legend.yanchor == "bottom"
    assert figure.layout.margin.b >= 20 * (len(names) + 1) + 40


@pytest.mark.parametrize("knobs, words", [
    ({"residual": True, "mid_activation": "none"}, "residual on, no mid activation"),
    ({"residual": False, "mid_activation": "relu"}, "residual off, ReLU mid activation"),
    ({"mid_activation": "elu", "segments": "depthwise"}, "ELU mid activation, depthwise spatial convs"),
    ({"width": 0.5, "middle_repeats": 1}, "width ×0.5, 1 middle-flow block"),
    ({"input_size": 1024, "num_classes": 1000}, "1024×1024 px input, 1,000 classes"),
    ({}, "as specified"),
])
def test_variant_phrases(knobs, words):
    assert variant_phrase(knobs) == words


def test_variant_phrases_read_json_and_command_line_values():
    assert variant_phrase({"residual": "false"}) == "residual off"
    assert variant_phrase({"aux_logits": True}) == "auxiliary head on"
    assert variant_phrase({"segments": 1}) == "full spatial convs (1 segment)"
    assert variant_phrase({"segments": "4"}) == "spatial convs in 4 segments"


def test_a_short_runs_loss_fills_its_axis_and_keeps_labelled_ticks():
    """One or two epochs' losses sit around ln 10 ≈ 2.3: the axis must not be a whole 2-to-5 decade."""
    history = _history([0.15, 0.3], [2.40, 2.15])
    axis = training_figure(history).layout.yaxis2
    losses = [v for h in history for v in (h.train_loss, h.test_loss)]
    _assert_readable_log_ticks(axis, losses)
    span = np.log10(max(losses)) - np.log10(min(losses))
    assert span / (axis.range[1] - axis.range[0]) >= 1 / 3
