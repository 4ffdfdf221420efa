"""What the explorer may use of the machine: the limits, and the memory allocator.

Every limit has one entry in :data:`LIMITS`: a default that fits a laptop,
what it bounds, and two ways to change it:

* the environment: ``EXPLORER_<NAME>`` (``EXPLORER_MAX_ACTIVATION_BYTES=8GiB``);
* a config file: ``explorer.toml`` in the current folder, or the file
  ``$EXPLORER_CONFIG`` names, with a ``[limits]`` table
  (``max_activation_bytes = "8 GiB"``).

The environment wins over the file, the file over the default. Sizes are
bytes, written as a number or with a unit (``512 MiB``, ``2GiB``, ``1.5e9``).
A request over a limit is refused *before* anything is allocated, with a
:class:`BudgetError` that names the limit, what was asked and how to raise it.

The allocator part (:func:`keep_freed_memory`, :func:`release_memory`) tunes
glibc's ``malloc`` for the process: keep freed blocks while work runs (fast
forwards), give them back to the OS when heavy work ends.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
import sys
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from explorer.errors import ExplorerError
from explorer.format import mib

CONFIG_ENV = "EXPLORER_CONFIG"
CONFIG_FILE = "explorer.toml"
GiB, MiB = 2**30, 2**20


class BudgetError(ExplorerError, ValueError):
    """A request over one of the :data:`LIMITS`. ``limit`` is the limit's name; the message says what
    was asked, the limit's value and how to raise it."""

    def __init__(self, limit: str, message: str) -> None:
        self.limit = limit
        super().__init__(message)


class ConfigError(ExplorerError, ValueError):
    """A limit's value (in the environment or the config file) cannot be read."""


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def total_memory() -> int:
    """The machine's physical memory in bytes (0 when it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _default_heavy_jobs() -> int:
    # Torch already spreads one job over every core: two at once on two cores only halves each. Each
    # heavy job may hold up to max_activation_bytes, so memory bounds the count too.
    by_cores = max(1, _cpu_count() // 2)
    memory = total_memory()
    by_memory = max(1, memory // (2 * limit("max_activation_bytes"))) if memory else 1
    return int(min(by_cores, by_memory, 8))


def _default_server_memory() -> int:
    # What the server itself needs (Python, torch, Streamlit, the page caches: ~1.5 GiB measured with
    # both ImageNet networks loaded), the model cache, and each heavy job's activations.
    return int(1.5 * GiB) + limit("model_cache_bytes") + limit("heavy_jobs") * limit("max_activation_bytes")


def _default_data_root() -> str:
    return str(Path(__file__).resolve().parents[1] / "data")


@dataclass(frozen=True)
class Limit:
    """One limit: its name (also the config key), default (a value, or a function of the other limits
    and the machine), unit (``bytes``, ``count``, ``px`` or ``path``) and what it bounds."""

    name: str
    default: int | str | Callable[[], int | str]
    unit: str
    help: str
    noun: str = ""  # what a count counts: "layers"

    @property
    def env(self) -> str:
        """The environment variable that sets it: ``EXPLORER_MAX_LAYERS``."""
        return f"EXPLORER_{self.name.upper()}"

    def format(self, value: int | str) -> str:
        """A value of this limit for people: ``4.00 GiB``, ``5,000``, ``2,048 px``."""
        if self.unit == "bytes":
            return mib(int(value))
        if self.unit == "px":
            return f"{int(value):,} px"
        if self.unit == "count":
            noun = self.noun[:-1] if int(value) == 1 and self.noun.endswith("s") else self.noun
            return f"{int(value):,} {noun}".rstrip()
        return str(value)


LIMITS: dict[str, Limit] = {limit_.name: limit_ for limit_ in (
    Limit("max_weight_bytes", 2 * GiB, "bytes", "fp32 weights of one network"),
    Limit("max_activation_bytes", 4 * GiB, "bytes",
          "activation memory of one pass at its batch: the peak for inference, every kept activation and "
          "its gradient for explanations and training"),
    Limit("max_layers", 5000, "count", "layers of one network, repeated blocks unrolled", "layers"),
    Limit("max_input_size", 2048, "px", "a network's input height and width, and the size images are resized to"),
    Limit("model_cache_bytes", 2 * GiB, "bytes", "networks (with their copies) the server keeps loaded"),
    Limit("heavy_jobs", _default_heavy_jobs, "count",
          "explanations, profiles, scorecards and training that run at once; the rest wait in line "
          "(default: half the cores, at most one per 2 × max_activation_bytes of memory)", "jobs"),
    Limit("server_memory_bytes", _default_server_memory, "bytes",
          "the server's stated memory budget: 1.5 GiB + model_cache_bytes + heavy_jobs × max_activation_bytes"),
    Limit("upload_dir_bytes", 1 * GiB, "bytes", "uploaded checkpoints kept on disk (the oldest are removed)"),
    Limit("data_root", _default_data_root, "path", "the only folder the app reads Lab data from (and below it)"),
    Limit("zip_max_bytes", 1 * GiB, "bytes", "what an uploaded zip of Lab data may inflate to"),
    Limit("zip_max_members", 20000, "count", "files in an uploaded zip of Lab data", "files"),
)}

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_value(limit_: Limit, raw: object, where: str) -> int | str:
    """A limit's value from the environment or the config file (``where`` names it in errors)."""
    if limit_.unit == "path":
        if not isinstance(raw, str) or not raw.strip():
            raise ConfigError(f"{where}: expected a folder path, got {raw!r}")
        return raw.strip()
    if isinstance(raw, bool):
        raise ConfigError(f"{where}: expected a number, got {raw!r}")
    if isinstance(raw, (int, float)):
        number = float(raw)
    else:
        text = str(raw)
        match = _SIZE.match(text) if len(text) < 40 else None
        if match is None or (match.group(2) and limit_.unit != "bytes"):
            example = "a number of bytes, e.g. 4GiB or 512MiB" if limit_.unit == "bytes" else "a whole number"
            raise ConfigError(f"{where}: cannot read {text[:40]!r} ({example})")
        number = float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()]
    if not number >= 1 or number > 2**62:
        raise ConfigError(f"{where}: must be between 1 and 2**62, got {raw!r}")
    return int(number)


def config_path() -> Path:
    """The config file read for the limits: ``$EXPLORER_CONFIG``, else ``explorer.toml`` here."""
    return Path(os.environ.get(CONFIG_ENV) or CONFIG_FILE)


_FILE_CACHE: dict[tuple, dict] = {}
_FILE_LOCK = threading.Lock()


def _config_table() -> dict:
    path = config_path()
    try:
        stat = path.stat()
    except OSError:
        if os.environ.get(CONFIG_ENV):
            raise ConfigError(f"{CONFIG_ENV}: no config file at '{path}'") from None
        return {}
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    with _FILE_LOCK:
        if key not in _FILE_CACHE:
            try:
                data = tomllib.loads(path.read_text())
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"{path}: cannot read the config file: {exc}") from None
            table = data.get("limits", {})
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: [limits] must be a table")
            unknown = sorted(set(table) - set(LIMITS))
            if unknown:
                raise ConfigError(f"{path}: unknown limit '{unknown[0]}' (known: {', '.join(LIMITS)})")
            _FILE_CACHE.clear()
            _FILE_CACHE[key] = table
        return _FILE_CACHE[key]


def limit(name: str) -> int | str:
    """The value of one limit now: the environment, else the config file, else its default."""
    return setting(name)[0]


def setting(name: str) -> tuple[int | str, str]:
    """A limit's value now and where it comes from: its variable (``EXPLORER_MAX_LAYERS``), the
    config file (``explorer.toml``) or ``default``."""
    entry = LIMITS[name]
    raw = os.environ.get(entry.env)
    if raw is not None and raw.strip():
        return parse_value(entry, raw, entry.env), entry.env
    table = _config_table()
    if name in table:
        return parse_value(entry, table[name], f"{config_path()} [limits] {name}"), str(config_path())
    return (entry.default() if callable(entry.default) else entry.default), "default"


def limits() -> dict[str, int | str]:
    """Every limit's value now, by name."""
    return {name: limit(name) for name in LIMITS}


def how_to_raise(name: str) -> str:
    """``raise it with EXPLORER_MAX_LAYERS or max_layers in explorer.toml``."""
    return f"raise it with {LIMITS[name].env} or {name} under [limits] in {config_path()}"


def over(name: str, what: str, need: int, lower: str | None = None) -> BudgetError:
    """The refusal of ``what`` needing ``need`` against limit ``name`` (call only when over it); ``lower``
    names what the user may lower instead (``the batch size (batch_size)``)."""
    entry = LIMITS[name]
    hint = f"; or lower {lower}" if lower else ""
    return BudgetError(name, f"{what} would need {entry.format(need)}, over the limit {name} = "
                             f"{entry.format(limit(name))} ({how_to_raise(name)}){hint}")


def check(name: str, what: str, need: int, lower: str | None = None) -> None:
    """Raise :class:`BudgetError` when ``need`` is over the limit ``name`` (``lower``: see :func:`over`)."""
    if need > int(limit(name)):
        raise over(name, what, need, lower)


# -- the allocator ---------------------------------------------------------------------------------

def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc (e.g. musl)
        return None


@functools.lru_cache(maxsize=1)
def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse instead of returning them to the OS.

    By default glibc serves large allocations with mmap and unmaps them on
    free, so every activation-sized tensor of a forward pass is page-faulted
    in afresh. With non-inplace activations and adds (the house rule that
    keeps Captum's hooks right) a forward allocates hundreds of them. Raising
    the mmap and trim thresholds makes Xception's batch-8 CPU forward take
    0.85-0.87 of the time with glibc's defaults here (tests/bench/bench_memory.py).
    What is kept goes back to the OS when heavy work ends (:func:`release_memory`):
    without that, 0.74-0.94 of an IG's memory stayed resident after it. Returns
    whether it applied.
    """
    libc = _libc()
    if libc is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, (1 << 31) - 1))


def release_memory() -> bool:
    """Give the freed memory the allocator keeps back to the OS (glibc's ``malloc_trim``); True if any was."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.malloc_trim(0))


def rss_bytes(pid: int | None = None) -> int:
    """Resident memory of a process (this one by default), from ``/proc`` (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid or 'self'}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0
