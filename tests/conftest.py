"""Shared fixtures: the presets, reference networks at random init (no download)."""

from __future__ import annotations

import os

import pytest
import torch

from reference import randomize_, reference_model

os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's small networks on one thread: as fast, and immune to the stalls two OpenMP
    threads suffer on a loaded 2-core machine (every small kernel waits for both to be scheduled)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def timm_xception():
    pytest.importorskip("timm")
    return randomize_(reference_model("xception"), seed=1)


@pytest.fixture(scope="session")
def tv_inception():
    return randomize_(reference_model("inception_v3"), seed=2)
