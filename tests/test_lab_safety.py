"""The lab's edges: SIGTERM stops a training cleanly, saved results of the wrong shape are one line, and
result files are replaced whole (a write that fails leaves the previous version)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.cli import main
from explorer.lab.ablate import AblationError, AblationResult, RunRecord
from explorer.lab.report import load_ablation, write_tables
from explorer.lab.train import EpochStats

ROOT = Path(__file__).resolve().parents[1]


def test_sigterm_mid_training_stops_cleanly_with_one_line(tmp_path):
    out = tmp_path / "m.safetensors"
    process = subprocess.Popen(
        [sys.executable, "-m", "explorer", "train", "mini_xception", "--set", "width=0.5", "--epochs", "1000",
         "--limit", "64", "--batch-size", "16", "--threads", "1", "--out", str(out)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        for line in process.stderr:  # tqdm's \r updates count as lines too
            lines.append(line)
            if "epoch   1/1000" in line:
                break
        else:
            pytest.fail("the training printed no epoch: " + "".join(lines)[-2000:])
        process.send_signal(signal.SIGTERM)
        stdout, rest = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    err = "".join(lines) + rest
    assert process.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "terminate called" not in err and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("training stopped by SIGTERM after epoch ") and "of 1000" in last
    assert int(last.split("after epoch ")[1].split()[0]) >= 1
    assert not out.exists() and os.listdir(tmp_path) == []  # no checkpoint, no temporary file


@pytest.mark.parametrize("content, needle", [
    ("[]", r"not an ablation result \(a JSON list"),
    ("3", r"not an ablation result \(a JSON int"),
    ('{"format": "xception-explorer-ablation/1"}', "the field 'spec_name' is missing"),
    ('{"format": "xception-explorer-ablation/1", "spec_name": "m", "spec": "", "data": "d", "vary": 5, '
     '"seeds": [0], "config": {}, "runs": []}', "a field has the wrong shape"),
    ('{"format": "xception-explorer-ablation/1", "spec_name": "m", "spec": "", "data": "d", "vary": [], '
     '"seeds": [0], "config": {}, "runs": [{"variant": "base", "knobs": {}, "seed": 0, "seconds": 1, '
     '"history": [{"epoch": 1}]}]}', "a field has the wrong shape"),
    ("{nope", "cannot read"),
])
def test_saved_results_of_the_wrong_shape_are_one_line(tmp_path, content, needle):
    (tmp_path / "ablation.json").write_text(content)
    with pytest.raises(AblationError, match=needle) as info:
        load_ablation(tmp_path)
    assert "\n" not in str(info.value)


def _result(history) -> AblationResult:
    return AblationResult("mini", "name: mini\n", "digits", [], [0], {"epochs": 1},
                          [RunRecord("base", {}, 0, history, 1.0)])


def test_result_tables_are_replaced_whole(tmp_path):
    good = [EpochStats(1, 1.0, 0.5, 1.2, 0.4, 1.0, 1.0, 0.001)]
    paths = write_tables(_result(good), tmp_path)
    before = {key: path.read_bytes() for key, path in paths.items()}

    class Broken:  # a history entry that fails halfway through the runs table
        epoch, train_loss = 2, 0.5

    with pytest.raises(AttributeError):
        write_tables(_result([*good, Broken()]), tmp_path)
    assert {key: path.read_bytes() for key, path in paths.items()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths.values())


def test_seeds_past_what_generators_take_are_one_line(capsys):
    assert main(["ablate", "mini_xception", "--seed", "4294967295", "--seeds", "2", "--vary", "residual=true,false",
                 "--out", "x", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "error: --seed 4294967295 with --seeds 2 would run seeds past 4,294,967,295"
    with pytest.raises(SystemExit):
        main(["train", "mini_xception", "--seed", "-1"])
    assert "--seed: must be" in capsys.readouterr().err


def test_the_ablation_json_round_trips_through_the_checked_reader(tmp_path):
    good = [EpochStats(1, 1.0, 0.5, 1.2, 0.4, 1.0, 1.0, 0.001)]
    write_tables(_result(good), tmp_path)
    back = load_ablation(tmp_path)
    assert back.runs[0].history == good
    assert json.loads((tmp_path / "ablation.json").read_text())["format"] == "xception-explorer-ablation/1"
