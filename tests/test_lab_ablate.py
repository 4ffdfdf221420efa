"""Ablations and the lab's command line: variants, statistics over seeds, files, figure, errors."""

from __future__ import annotations

import csv
import json
import math
import shlex

import numpy as np
import pytest

from explorer.cli import main
from explorer.errors import ExplorerError, SpecError
from explorer.lab.ablate import AblationResult, RunRecord, make_variants, parse_vary
from explorer.lab.report import ablation_figure, load_ablation, summary_markdown, write_tables
from explorer.lab.train import EpochStats
from explorer.weights import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


def test_variants_are_the_cartesian_product():
    vary = parse_vary(["residual=true,false", "mid_activation=none,relu,elu"])
    assert vary == [("residual", [True, False]), ("mid_activation", ["none", "relu", "elu"])]
    variants = make_variants(vary)
    assert len(variants) == 6
    assert variants[0].label == "residual=true, mid_activation=none"
    assert variants[-1].label == "residual=false, mid_activation=elu"
    assert make_variants([])[0].label == "base"


@pytest.mark.parametrize("items, needle", [
    (["residual"], "expected KNOB=V1,V2"),
    (["depth=1,2"], "unknown knob"),
    (["residual=true", "residual=false"], "varied twice"),
    (["mid_activation=relu,relu"], "lists a value twice"),
    (["mid_activation=relu,tanh"], "bad value 'tanh'"),
])
def test_bad_vary(items, needle):
    with pytest.raises(ExplorerError, match=needle) as caught:
        parse_vary(items)
    # a malformed item names the argument; a bad knob or value names the knob
    assert getattr(caught.value, "argument", None) == "vary" or isinstance(caught.value, SpecError)


def _history(losses, accs):
    return [EpochStats(e + 1, loss, 0.9, loss * 2, acc, 1.0, e + 1.0, 0.001)
            for e, (loss, acc) in enumerate(zip(losses, accs))]


def _result() -> AblationResult:
    runs = [
        RunRecord("residual=true", {"residual": True}, 0, _history([1.0, 0.5], [0.90, 0.97]), 2.0),
        RunRecord("residual=true", {"residual": True}, 1, _history([0.8, 0.4], [0.92, 0.99]), 2.0),
        RunRecord("residual=true", {"residual": True}, 2, _history([0.9, 0.3], [0.91, 0.98]), 2.0),
        RunRecord("residual=false", {"residual": False}, 0, _history([2.0, 1.0], [0.50, 0.80]), 3.0),
    ]
    return AblationResult("mini", "name: mini\n", "digits: test", [("residual", [True, False])], [0, 1, 2],
                          {"epochs": 2}, runs)


def test_summary_is_mean_and_sample_std_over_seeds():
    rows = {r.variant: r for r in _result().summary()}
    on = rows["residual=true"]
    assert on.seeds == 3 and on.epochs == 2
    assert on.test_acc_mean == pytest.approx(np.mean([0.97, 0.99, 0.98]))
    assert on.test_acc_std == pytest.approx(np.std([0.97, 0.99, 0.98], ddof=1))
    assert on.test_loss_mean == pytest.approx(np.mean([1.0, 0.8, 0.6]))
    assert rows["residual=false"].test_acc_std == 0.0  # one seed: no spread
    epochs, mean, std = _result().mean_curve("residual=true", "test_acc")
    assert epochs == [1, 2] and mean[0] == pytest.approx(0.91) and std[1] == pytest.approx(0.01)


def test_figure_has_one_colour_per_variant_and_a_band_where_there_are_seeds():
    figure = ablation_figure(_result(), ("test_acc", "train_loss"))
    legend = [t for t in figure.data if t.showlegend is not False and t.fill != "toself"]
    assert [t.name.split(":")[0] for t in legend] == ["residual on", "residual off"]  # words, not code
    assert "98.0 ± 1.0 %" in legend[0].name  # the final accuracy, mean ± std, in %
    bands = [t for t in figure.data if t.fill == "toself"]
    assert len(bands) == 2  # residual=true (3 seeds) in both panels; one seed has no band
    lines = [t for t in figure.data if t.fill != "toself" and t.legendgroup == "residual=false"]
    assert {t.line.color for t in lines} == {legend[1].line.color} != {legend[0].line.color}
    assert figure.layout.yaxis2.type == "log"


def test_two_knobs_share_colours_and_differ_in_dash():
    from explorer.lab.report import variant_styles

    result = _result()
    result.vary, result.runs = [("residual", [True, False]), ("mid_activation", ["none", "relu"])], []
    styles = variant_styles(result)
    on, off = styles["residual=true, mid_activation=relu"], styles["residual=false, mid_activation=relu"]
    assert on[0] == off[0] and on[1] != off[1]
    assert styles["residual=true, mid_activation=none"][0] != on[0]
    assert len(set(variant_styles(_result()).values())) == 2  # one knob: a colour each


def test_training_figure_shows_train_and_test_curves():
    from explorer.lab import training_figure

    history = _history([1.0, 0.5], [0.9, 0.95])
    figure = training_figure(history, epochs=10)
    assert [t.name for t in figure.data] == ["training", "test", "training", "test"]
    assert list(figure.data[1].y) == [0.9, 0.95] and list(figure.data[3].y) == [2.0, 1.0]
    assert tuple(figure.layout.xaxis.range) == (0.5, 10.5)


def test_result_round_trips_through_json(tmp_path):
    result = _result()
    (tmp_path / "ablation.json").write_text(json.dumps(result.to_dict()))
    back = load_ablation(tmp_path)
    assert back.summary() == result.summary() and back.vary == result.vary
    assert "| true | 3 | 2 | 98.00 ± 1.00 % |" in summary_markdown(back)


def test_load_ablation_errors(tmp_path):
    from explorer.lab.ablate import AblationError

    with pytest.raises(AblationError, match="no ablation results"):
        load_ablation(tmp_path)
    (tmp_path / "ablation.json").write_text('{"format": "other"}')
    with pytest.raises(AblationError, match="not an ablation result"):
        load_ablation(tmp_path)


# -- the command line -----------------------------------------------------------------------------

def test_ablate_end_to_end(tmp_path, capsys):
    out = tmp_path / "abl"
    code = main(["ablate", "mini_xception", "--set", "width=0.5", "--vary", "residual=true,false", "--seeds", "1",
                 "--epochs", "1", "--limit", "48", "--batch-size", "16", "--out", str(out), "--no-png", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| residual |" in printed and "| false | 1 | 1 |" in printed
    for name in ("ablation.json", "runs.csv", "summary.csv", "curves.html"):
        assert (out / name).stat().st_size > 0
    result = load_ablation(out)
    assert [r.variant for r in result.runs] == ["residual=true", "residual=false"]
    assert shlex.split(result.command)[3:5] == ["ablate", "mini_xception"]
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert [(r["variant"], r["residual"], r["seed"], r["epoch"]) for r in rows] == [
        ("residual=true", "true", "0", "1"), ("residual=false", "false", "0", "1")]
    assert float(rows[1]["test_acc"]) == result.runs[1].history[0].test_acc
    summary = list(csv.DictReader((out / "summary.csv").open()))
    assert len(summary) == 2 and math.isclose(float(summary[0]["test_acc_mean"]), result.runs[0].final())
    assert "plotly" in (out / "curves.html").read_text()[:5000].lower()


def test_a_stopped_ablation_keeps_the_finished_runs(tmp_path):
    from explorer.lab.ablate import run_ablation
    from explorer.lab.data import load_data
    from explorer.lab.train import TrainConfig
    from explorer.spec import load_spec

    spec = load_spec("mini_xception").with_overrides(width=0.5, middle_repeats=1)
    data = load_data("digits", input_size=32, in_channels=3, limit=32)
    seen = []

    def progress(p):
        seen.append(round(p.fraction, 3))
        return p.run < 2  # stop as soon as the second run starts

    written = []

    def keep(r):  # what the command line does after every run
        written.append((len(r.runs), r.stopped))
        write_tables(r, tmp_path)

    result = run_ablation(spec, data, parse_vary(["mid_activation=none,relu"]), seeds=[0, 1],
                          config=TrainConfig(epochs=1, batch_size=16), on_progress=progress, on_run=keep)
    assert result.stopped and [r.variant for r in result.runs] == ["mid_activation=none"]
    assert written == [(1, False), (1, True)]  # after the finished run, and once more when it stopped
    assert seen[0] == 0.125 and seen == sorted(seen)  # 4 runs of 2 batches: 1/8 after the first batch
    assert load_ablation(tmp_path).runs[0].history == result.runs[0].history
    assert "stopped after 1 of 4 runs" in result.notes[-1]


def test_train_command_writes_a_checkpoint_with_its_command(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    code = main(["train", "mini_xception", "--set", "width=0.5", "--set", "middle_repeats=1", "--epochs", "1",
                 "--limit", "48", "--batch-size", "16", "--out", str(path), "--quiet"])
    assert code == 0
    assert "test accuracy" in capsys.readouterr().out
    checkpoint = load_checkpoint(path)
    argv = shlex.split(checkpoint.metadata["command"])
    assert argv[3:5] == ["train", "mini_xception"] and "width=0.5" in argv and str(path) in argv
    assert sum(1 for b in checkpoint.spec.blocks if b.flow == "middle" and b.repeat == 1) == 1


@pytest.mark.parametrize("args, needle", [
    (["train", "mini_xception", "--data", "/nonexistent/dir"], "neither 'digits' nor a folder"),
    (["train", "mini_xception", "--set", "input_size=128"], "cannot fill a 128×128 input"),
    (["train", "mini_xception", "--out", "model.pt"], "must name a .safetensors file"),
    (["train", "mini_xception", "--set", "num_classes=3", "--limit", "20", "--epochs", "1"],
     "num_classes is 3 but the data has 10 classes"),
    (["ablate", "mini_xception", "--vary", "aux_logits=true,false", "--out", "x"], "does not apply"),
])
def test_cli_errors_are_one_line(args, needle, capsys):
    assert main(args + ["--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert needle in err[-1] and err[-1].startswith("error: ")
    assert not any("Traceback" in line for line in err)


def test_the_report_depends_on_the_ablation_never_the_reverse():
    """ablate.py runs and holds results; report.py draws and writes them; figures.py draws one training."""
    import ast
    from pathlib import Path

    import explorer.lab

    folder = Path(explorer.lab.__file__).parent

    def imports(module: str) -> set[str]:
        tree = ast.parse((folder / f"{module}.py").read_text())
        return ({n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
                | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names})

    assert not imports("ablate") & {"explorer.lab.report", "explorer.lab.figures", "explorer.lab.cli"}
    assert not imports("figures") & {"explorer.lab.ablate", "explorer.lab.report"}
    assert "explorer.lab.ablate" in imports("report")
