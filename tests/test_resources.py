"""The limits: defaults, the environment, the config file, the refusal's words; the allocator's release."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from explorer import resources
from explorer.errors import ExplorerError
from explorer.resources import LIMITS, BudgetError, ConfigError, limit

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_config(monkeypatch, tmp_path):
    """Each test starts from the defaults: no EXPLORER_* limit in the environment, no explorer.toml."""
    for entry in LIMITS.values():
        monkeypatch.delenv(entry.env, raising=False)
    monkeypatch.delenv(resources.CONFIG_ENV, raising=False)
    monkeypatch.chdir(tmp_path)


def test_every_limit_has_a_default_that_reads_back():
    values = resources.limits()
    assert set(values) == set(LIMITS)
    for name, value in values.items():
        entry = LIMITS[name]
        if entry.unit == "path":
            assert isinstance(value, str) and value
        else:
            assert isinstance(value, int) and value >= 1, name
            # the default, written as the environment would write it, reads back as itself
            assert resources.parse_value(entry, str(value), "test") == value


@pytest.mark.parametrize("text, expected", [
    ("4096", 4096), ("4GiB", 4 * 2**30), ("512 MiB", 512 * 2**20), ("2gb", 2 * 10**9), ("1.5e9", 1_500_000_000),
    ("1kib", 1024),
])
def test_sizes_are_read_with_their_units(monkeypatch, text, expected):
    monkeypatch.setenv("EXPLORER_MAX_ACTIVATION_BYTES", text)
    assert limit("max_activation_bytes") == expected


@pytest.mark.parametrize("name, text", [
    ("max_activation_bytes", "lots"), ("max_activation_bytes", "-1"), ("max_activation_bytes", "0"),
    ("max_layers", "10GiB"), ("max_layers", "9" * 5000), ("max_activation_bytes", "1e400"),
])
def test_a_bad_value_is_one_line_naming_the_variable(monkeypatch, name, text):
    monkeypatch.setenv(LIMITS[name].env, text)
    with pytest.raises(ConfigError) as info:
        limit(name)
    message = str(info.value)
    assert message.startswith(LIMITS[name].env) and "\n" not in message and len(message) < 200
    assert isinstance(info.value, ExplorerError)


def test_the_config_file_sets_a_limit_and_the_environment_wins(monkeypatch, tmp_path):
    (tmp_path / "explorer.toml").write_text('[limits]\nmax_layers = 123\nmax_weight_bytes = "1 MiB"\n')
    assert limit("max_layers") == 123 and limit("max_weight_bytes") == 2**20
    monkeypatch.setenv("EXPLORER_MAX_LAYERS", "77")
    assert limit("max_layers") == 77
    # the file is read again when it changes
    (tmp_path / "explorer.toml").write_text('[limits]\nmax_layers = 456\n\n')
    monkeypatch.delenv("EXPLORER_MAX_LAYERS")
    assert limit("max_layers") == 456


def test_explorer_config_names_another_file(monkeypatch, tmp_path):
    other = tmp_path / "elsewhere.toml"
    other.write_text('[limits]\nheavy_jobs = 3\ndata_root = "/srv/lab"\n')
    monkeypatch.setenv(resources.CONFIG_ENV, str(other))
    assert limit("heavy_jobs") == 3 and limit("data_root") == "/srv/lab"
    monkeypatch.setenv(resources.CONFIG_ENV, str(tmp_path / "missing.toml"))
    with pytest.raises(ConfigError, match="no config file"):
        limit("heavy_jobs")


@pytest.mark.parametrize("content, words", [
    ("[limits]\nmax_layer = 3\n", "unknown limit 'max_layer'"),
    ("[limits\n", "cannot read the config file"),
    ("limits = 3\n", "must be a table"),
])
def test_a_bad_config_file_is_one_line(tmp_path, content, words):
    (tmp_path / "explorer.toml").write_text(content)
    with pytest.raises(ConfigError, match=words.replace("[", r"\[")):
        limit("max_layers")


def test_the_refusal_names_the_limit_the_need_and_how_to_raise_it(monkeypatch):
    monkeypatch.setenv("EXPLORER_MAX_LAYERS", "100")
    resources.check("max_layers", "'net'", 100)  # at the limit: allowed
    with pytest.raises(BudgetError) as info:
        resources.check("max_layers", "'net'", 101)
    error = info.value
    assert error.limit == "max_layers" and isinstance(error, ValueError)
    assert str(error) == ("'net' would need 101 layers, over the limit max_layers = 100 layers "
                          "(raise it with EXPLORER_MAX_LAYERS or max_layers under [limits] in explorer.toml)")
    monkeypatch.setenv("EXPLORER_MAX_WEIGHT_BYTES", "1GiB")
    with pytest.raises(BudgetError, match=r"would need 1\.50 GiB, over the limit max_weight_bytes = 1\.00 GiB"):
        resources.check("max_weight_bytes", "the weights", 3 * 2**29)


def test_derived_defaults_follow_the_limits_they_are_made_of(monkeypatch):
    monkeypatch.setenv("EXPLORER_HEAVY_JOBS", "2")
    monkeypatch.setenv("EXPLORER_MODEL_CACHE_BYTES", "1GiB")
    monkeypatch.setenv("EXPLORER_MAX_ACTIVATION_BYTES", "3GiB")
    assert limit("server_memory_bytes") == int(1.5 * 2**30) + 2**30 + 2 * 3 * 2**30
    monkeypatch.delenv("EXPLORER_HEAVY_JOBS")
    cores = len(os.sched_getaffinity(0))
    assert 1 <= limit("heavy_jobs") <= max(1, cores // 2)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_release_memory_returns_what_the_allocator_kept():
    """With the allocator told to keep freed memory, a freed 400 MiB stays resident until release_memory."""
    code = textwrap.dedent("""
        import ctypes, sys
        from explorer import resources
        assert resources.keep_freed_memory()
        mib = 2**20
        blocks = [ctypes.create_string_buffer(4 * mib) for _ in range(100)]  # touched: zero-filled
        held = resources.rss_bytes()
        del blocks
        kept = resources.rss_bytes()
        released = resources.release_memory()
        after = resources.rss_bytes()
        print(held // mib, kept // mib, after // mib, released)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    held, kept, after, released = int(out[0]), int(out[1]), int(out[2]), out[3] == "True"
    assert kept > held - 100, "the allocator gave the memory back before being asked"
    assert released and after < kept - 300, (held, kept, after)


def test_the_limits_command_says_each_value_and_where_it_comes_from(tmp_path):
    (tmp_path / "explorer.toml").write_text("[limits]\nmax_layers = 321\n")
    env = {**os.environ, "EXPLORER_HEAVY_JOBS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "explorer", "limits"], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env=env).stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "321 layers" in lines["max_layers"] and "(explorer.toml)" in lines["max_layers"]
    assert "1 job " in lines["heavy_jobs"] and "(EXPLORER_HEAVY_JOBS)" in lines["heavy_jobs"]
    assert "(default)" in lines["max_weight_bytes"] and set(lines) >= set(LIMITS)
    rows = json.loads(subprocess.run([sys.executable, "-m", "explorer", "limits", "--json"], capture_output=True,
                                     text=True, check=True, cwd=tmp_path, env=env).stdout)
    assert {row["name"]: row["value"] for row in rows}["max_layers"] == 321
