"""End to end in a real browser: `streamlit run app.py`, Debian's chromium, Playwright.

Set ``EXPLORER_SAVE_SCREENSHOTS=1`` to also write the screenshots to
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
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("streamlit") / "server.log"
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"streamlit did not come up:\n{log.read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


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
    """Wait until the script run finished (Streamlit's running indicator is gone)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=timeout)


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


def keep(page, tmp_path: Path, name: str) -> Path:
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=False)
    if os.environ.get("EXPLORER_SAVE_SCREENSHOTS"):
        target = ROOT / "docs" / "images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, target)
    return shot


def test_residual_toggle_changes_the_totals(app_url, browser, tmp_path):
    from explorer.cost import count_costs
    from explorer.spec import load_spec

    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_text("Parameters").first.wait_for(timeout=90_000)
    wait_idle(page)
    spec = load_spec("xception")
    before = metric(page, "Parameters")
    assert before == f"{count_costs(spec).totals['params']:,}"
    page.locator('[data-testid="stSidebar"]').get_by_text("Residual connections").click()
    after = wait_metric_changes(page, "Parameters", before)
    assert after == f"{count_costs(spec.with_overrides(residual=False)).totals['params']:,}"
    assert keep(page, tmp_path, "app_architecture.png").stat().st_size > 10_000
    page.close()


def test_two_sessions_at_once_keep_their_own_specs(app_url, browser):
    """Two browser sessions edit different knobs at the same time on one server."""
    from explorer.cost import count_costs
    from explorer.spec import load_spec

    spec = load_spec("xception")
    contexts = [browser.new_context(viewport={"width": 1400, "height": 900}) for _ in range(2)]
    a, b = (c.new_page() for c in contexts)
    for page in (a, b):
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_text("Parameters").first.wait_for(timeout=90_000)
        wait_idle(page)
    before = metric(a, "Parameters")
    # Both edits go out before either page is waited on, so the two script runs overlap.
    a.locator('[data-testid="stSidebar"]').get_by_text("Residual connections").click()
    middle = b.locator('[data-testid="stSidebar"]').get_by_label("Middle-flow blocks", exact=True)
    middle.fill("2")
    middle.press("Enter")
    wanted = {a: count_costs(spec.with_overrides(residual=False)).totals["params"],
              b: count_costs(spec.with_overrides(middle_repeats=2)).totals["params"]}
    for page, params in wanted.items():
        assert wait_metric_changes(page, "Parameters", before) == f"{params:,}"
    for c in contexts:
        c.close()


def test_explain_shows_a_map(app_url, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(f"{app_url}/classify", wait_until="domcontentloaded")
    page.get_by_text("Shipped digits model").first.wait_for(timeout=90_000)
    wait_idle(page)
    page.get_by_text("Shipped digits model").first.click()
    wait_idle(page)
    page.get_by_text("digit 0 (#0)").first.click()
    wait_idle(page, 120_000)
    page.get_by_role("button", name="Explain", exact=True).click()
    page.get_by_text("Grad-CAM: target").first.wait_for(timeout=120_000)
    wait_idle(page)
    figure = page.locator(".js-plotly-plot").last
    figure.scroll_into_view_if_needed()
    assert figure.locator(".heatmap, image, .layer-above image, g.imagelayer image").count() >= 1
    assert keep(page, tmp_path, "app_explain.png").stat().st_size > 10_000
    page.close()
