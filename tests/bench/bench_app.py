"""Benchmark: how fast the app answers.

* A knob change: one AppTest rerun after flipping a knob, for Xception
  (residual) and Inception V3 (aux head); target under 1 s. Each change is to
  a configuration not seen before (the caches are cold for it), then back to
  one already seen (warm).
* Cold start: from `streamlit run app.py` to the first page showing its
  totals and graph in Debian's chromium; target under 10 s.

    python tests/bench/bench_app.py
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def knob_changes() -> None:
    from streamlit.testing.v1 import AppTest

    def knob(at, kind: str, label: str):  # knob keys carry a generation: find the widget by its label
        return next(w for w in getattr(at.sidebar, kind) if w.label == label)

    for preset, label, values in [("xception", "Residual connections", [False, True]),
                                  ("inception_v3", "Auxiliary head", [False, True])]:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        if preset != "xception":
            at.sidebar.selectbox[0].select(preset).run()
        cold, warm = [], []
        for width in (1.0, 0.75, 0.5):  # a new width each round makes the first flip a new configuration
            knob(at, "select_slider", "Width multiplier").set_value(width).run()
            for i, value in enumerate(values * 2):
                start = time.perf_counter()
                knob(at, "toggle", label).set_value(value).run()
                (cold if i < 2 else warm).append(time.perf_counter() - start)
                assert not at.exception, at.exception[0].value
        for label, times in (("new configuration", cold), ("seen configuration", warm)):
            t = statistics.median(times)
            print(f"knob change {preset:13s} {label:19s} {t:6.3f} s  ratio to 1 s target: {t:.2f}")


def cold_start() -> None:
    import socket

    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "0"})
    try:
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        healthy = time.perf_counter() - start
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}")
            page.locator('[data-testid="stMetricValue"]').first.wait_for(timeout=60_000)
            page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
            page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                   timeout=60_000)
            shown = time.perf_counter() - start
            browser.close()
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"cold start: server healthy after {healthy:.2f} s, first page complete after {shown:.2f} s "
          f"(ratio to 10 s target: {shown / 10:.2f})")


if __name__ == "__main__":
    knob_changes()
    cold_start()
