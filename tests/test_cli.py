"""The command line: one line on stderr and exit code 2 for every user error."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from explorer.cli import main
from explorer.spec import load_spec, parse_spec


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "explorer", *args], capture_output=True, text=True, timeout=120)


def test_presets_lists_both(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    assert "xception" in out and "inception_v3" in out


def test_show_prints_the_resolved_spec(capsys):
    assert main(["show", "xception", "--set", "residual=false", "--set", "middle_repeats=2"]) == 0
    spec = parse_spec(capsys.readouterr().out)
    assert spec == load_spec("xception").with_overrides(residual=False, middle_repeats=2)
    assert main(["show", "inception_v3", "--format", "json"]) == 0
    assert parse_spec(yaml.safe_load(capsys.readouterr().out)) == load_spec("inception_v3")


@pytest.mark.parametrize("args, needle", [
    (["show", "xception", "--set", "depth=3"], "unknown knob"),
    (["show", "xception", "--set", "segments=5"], "not divisible by 5 segments"),
    (["show", "xception", "--set", "residual"], "expected KNOB=VALUE"),
    (["show", "nope.yaml"], "neither a preset"),
])
def test_errors_are_one_line_and_exit_2(args, needle):
    result = run(*args)
    assert result.returncode == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nblocks: [\n")
    result = run("show", str(bad))
    assert result.returncode == 2 and "YAML syntax error" in result.stderr
