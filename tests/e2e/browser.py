"""Fixtures and helpers of the real-browser tests: one `streamlit run app.py` server per module, Debian's chromium.

Set ``EXPLORER_SAVE_SCREENSHOTS=1`` to also write the screenshots that :func:`keep` takes to
``docs/images/`` (that is how the README's pictures are made).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(log: Path, timeout: float = 90) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free loopback port, its output in ``log``; returns once it answers its
    health check (RuntimeError with the log's end if it does not within ``timeout`` seconds)."""
    port = free_port()
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_app(proc)
            raise RuntimeError(f"streamlit did not come up:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    try:
        proc, url = start_app(tmp_path_factory.mktemp("streamlit") / "server.log")
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield url
    finally:
        stop_app(proc)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        yield b
        b.close()


def wait_idle(page, timeout: float = 60_000) -> None:
    """Wait until the script run finished: Streamlit's running indicator is gone and no element of the
    previous run is left (a widget under a new key replaces its old copy only once the run is over)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
        " && !document.querySelector('[data-testid=\"stElementContainer\"][data-stale=\"true\"]')",
        timeout=timeout)


def wait_run(page, timeout: float = 60_000) -> None:
    """After an action: wait for the script run it starts (if it shows within 2 s) to finish.

    :func:`wait_idle` alone can return before a run has even begun; this one gives the run time to
    show Streamlit's running indicator first, so what is read next comes from the finished run.
    """
    try:
        page.wait_for_selector('[data-testid="stStatusWidget"]', timeout=2_000)
    except Exception:  # the run was over before it could be seen, or no run was needed
        pass
    wait_idle(page, timeout)


def metric(page, label: str) -> str:
    box = page.locator('[data-testid="stMetric"]', has_text=label).first
    return box.locator('[data-testid="stMetricValue"]').inner_text()


def wait_metric_changes(page, label: str, before: str, timeout: float = 90_000) -> str:
    """Wait until the metric ``label`` no longer shows ``before`` and the run is done; return the new value."""
    page.wait_for_function(
        "([label, before]) => [...document.querySelectorAll('[data-testid=\"stMetric\"]')].some("
        "m => m.innerText.includes(label) && !m.innerText.includes(before))", arg=[label, before], timeout=timeout)
    wait_idle(page)
    return metric(page, label)


def open_tab(page, name: str, timeout: float = 60_000) -> None:
    """Click the tab ``name`` and wait until it is the selected one: a click that lands while a rerun
    redraws the tabs can be lost (the panel stays hidden), so it is clicked again until it holds."""
    tab = page.get_by_role("tab", name=name).first
    deadline = time.monotonic() + timeout / 1000
    while True:
        wait_idle(page, timeout)
        tab.click()
        wait_idle(page, timeout)
        if tab.get_attribute("aria-selected") == "true":
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the tab '{name}' was clicked but never became the selected one")


def choose_digits(page, sample: str = "digit 0 (#0)", timeout: float = 180_000) -> None:
    """On Classify & Explain: the shipped digits model (offline it is the default; online, choose it) and
    one of its samples, each run finished."""
    digits = page.get_by_role("radiogroup", name="Weights").get_by_role("radio", name="Shipped digits model")
    digits.wait_for(timeout=timeout)
    wait_idle(page, timeout)
    if digits.get_attribute("aria-checked") != "true":
        digits.click()
        wait_idle(page, timeout)
    page.get_by_text(sample).first.click()
    wait_idle(page, timeout)


def keep(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.mouse.move(0, 0)  # no tooltip of whatever was clicked last
    page.screenshot(path=str(shot), full_page=False)
    if os.environ.get("EXPLORER_SAVE_SCREENSHOTS"):
        target = ROOT / "docs" / "images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)
    return shot


def sidebar(page):
    return page.locator('[data-testid="stSidebar"]')


def set_number(page, label: str, value: int, timeout: float = 60_000, where=None) -> None:
    """Type ``value`` into the number box ``label`` (in ``where``, default the sidebar) and wait for the run."""
    box = (sidebar(page) if where is None else where).get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    wait_run(page, timeout)
