"""Load test: six real browser sessions at once on one real `streamlit run app.py` server.

Five sessions flip the sidebar's knobs (each its own configuration every round), check that the
Parameters total is the one :mod:`explorer.cost` gives for that exact configuration, then explain a
digit on Classify & Explain (Saliency and Grad-CAM, the page's quick defaults). One more session steps
the "Classes" knob through new values (100,000, 99,999, ...) with random weights, so each step builds
and classifies a new Xception with a 200-million-parameter head. Meanwhile a thread samples the
server's resident memory (the server process and its children) every 0.2 s.

It fails (exit 1) when the server's peak memory goes over ``server_memory_bytes`` (read here with the
server's environment), when a session's totals are not its own configuration's, when an error box or
an exception shows in any session, or when a session does not finish its rounds. An explanation that
waits in line for a free place is not a failure. Loopback only; the server and the browsers are
stopped on exit.

    python tests/bench/bench_load.py                        # 6 sessions, 3 rounds
    python tests/bench/bench_load.py --sessions 2 --rounds 1  # a quick try
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LONG = 300_000  # ms: a guard against a hang on a loaded 2-core machine, not a measured time
SAMPLE_S = 0.2
SIDEBAR_NETWORK = "Sidebar network (Xception, edited)"
QUEUED = "Waiting for a free place"  # the line for heavy work: waiting there is not a failure
_print_lock = threading.Lock()
_started = time.monotonic()


def say(message: str) -> None:
    """A progress line, with the seconds since the start (sessions print from their own threads)."""
    with _print_lock:
        print(f"[{time.monotonic() - _started:6.1f} s] {message}", flush=True)


def _paths() -> None:
    for path in (ROOT, ROOT / "tests" / "e2e"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


# -- the server and its memory -----------------------------------------------------------------------

def log_tail(log: Path, chars: int = 4000) -> str:
    """The end of the server's log, without its routine lines (media requests, a fragment's late poll)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    kept = [line for line in lines if '"GET /media/' not in line and "does not exist anymore" not in line]
    return "\n".join(kept)[-chars:]


def tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and all its descendants, from /proc."""
    from explorer.resources import rss_bytes

    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])  # after "(comm) state"
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo.extend(child for child, parent in parents.items() if parent == p and child not in tree)
    return sum(rss_bytes(p) for p in tree)


class Sampler(threading.Thread):
    """Samples the server tree's RSS every SAMPLE_S seconds: the peak and the timeline (seconds, bytes)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.timeline = pid, 0, []
        self._halt = threading.Event()

    def sample(self) -> int:
        rss = tree_rss(self.pid)
        self.timeline.append((time.monotonic() - _started, rss))
        self.peak = max(self.peak, rss)
        return rss

    def run(self) -> None:
        while not self._halt.wait(SAMPLE_S):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# -- one browser session -------------------------------------------------------------------------------

@dataclass
class Session:
    """One browser session: what it is and how it went."""

    name: str
    kind: str  # "knobs" or "classes"
    index: int
    rounds_done: int = 0
    round_seconds: list[float] = field(default_factory=list)
    step: str = "opening"  # where it is (said when it fails)
    checks: int = 0  # totals that matched the session's own configuration
    queued: int = 0  # explanations that waited in line first
    lost_clicks: int = 0  # sidebar page links clicked again because the first click did not open the page
    failure: str | None = None
    errors: list[str] = field(default_factory=list)  # error boxes and exceptions seen
    screenshot: str | None = None


def _errors_on(page) -> list[str]:
    """The text of every error box and exception on the page."""
    boxes = page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]')
    return [text[:300] for text in boxes.all_inner_texts()]  # no wait: a rerun may remove one meanwhile


def _check_errors(page, session: Session, where: str) -> None:
    found = _errors_on(page)
    if found:
        session.errors += [f"{where}: {text}" for text in found]
        raise AssertionError(f"error box {where}: {found[0]}")


def _goto(page, session: Session, title: str) -> None:
    """Open the page ``title`` from the sidebar, and wait until its own title shows: a click that lands
    while the previous page's last rerun is under way can be lost, so it is clicked again (and counted)."""
    from browser import sidebar, wait_idle, wait_run

    link = sidebar(page).get_by_role("link", name=title)
    for _ in range(5):
        wait_idle(page, LONG)
        link.click()
        wait_run(page, LONG)
        try:
            page.wait_for_function(
                "(title) => { const h = document.querySelector('[data-testid=\"stMain\"] h1');"
                " return h && h.innerText.includes(title)"
                " && !document.querySelector('[data-testid=\"stElementContainer\"][data-stale=\"true\"]') }",
                arg=title, timeout=60_000)
            return
        except Exception:  # noqa: BLE001 - the click was lost: again
            session.lost_clicks += 1
            say(f"{session.name}: {session.step}: the click on '{title}' did not open it; clicking again")
    raise AssertionError(f"the page '{title}' did not open after 5 clicks on its link")


def _params(spec) -> str:
    """The parameter total as the app shows it, from the cost model (the oracle)."""
    from explorer.cost import count_costs

    return f"{count_costs(spec).totals['params']:,}"


def _expect_params(page, session: Session, spec, where: str) -> None:
    """The Parameters metric settles on ``spec``'s own total (else: what it shows instead)."""
    from browser import wait_idle
    from playwright.sync_api import expect

    want = _params(spec)
    value = page.locator('[data-testid="stMetric"]', has_text="Parameters").first.locator(
        '[data-testid="stMetricValue"]')
    try:
        expect(value).to_have_text(want, timeout=LONG)
    except AssertionError:
        shown = value.all_inner_texts()  # no wait: the metric may not be on the page at all
        raise AssertionError(f"{where}: Parameters shows {shown[0] if shown else 'nothing (no such metric here)'}, "
                             f"its own configuration has {want}") from None
    wait_idle(page, LONG)
    session.checks += 1


MID = {"none": "none (the paper's best)", "relu": "ReLU", "elu": "ELU"}


def knob_plan(index: int, rounds: int, sessions: int) -> list[dict]:
    """Each round's knobs of knob session ``index``: middle-flow blocks differ in every round of every
    session (so no two configurations have the same total); residual and the mid activation vary too."""
    plan, residual = [], True
    for r in range(rounds):
        if (index + r) % 2 == 0:
            residual = not residual
        plan.append({"residual": residual, "middle_repeats": (1 + index + sessions * r) % 33,
                     "mid_activation": ("none", "relu", "elu")[(index + r) % 3]})
    return plan


def _explain(page, session: Session, sample: str, where: str) -> None:
    """On Classify & Explain: the digits model, one sample, Explain with the page's quick methods, and wait
    until every map is made (an explanation waiting in line for a free place is fine)."""
    from browser import choose_digits, wait_idle, wait_run

    choose_digits(page, sample, timeout=LONG)
    page.get_by_role("heading", name=f"{sample}.png").first.wait_for(timeout=LONG)  # the image to explain
    _check_errors(page, session, f"{where}, classifying")
    page.get_by_role("button", name="Explain", exact=True).click()
    wait_run(page, LONG)  # the run the click starts replaces any earlier maps before they are read
    made = page.locator('[data-testid="stAlertContentSuccess"]', has_text="maps made")
    deadline, queued = time.monotonic() + LONG / 1000, False
    while not (texts := made.all_inner_texts()):
        if not queued and page.get_by_text(QUEUED).count():
            queued = True
            session.queued += 1
            say(f"{session.name}: {where}: the explanation waits in line")
        _check_errors(page, session, f"{where}, explaining")
        if time.monotonic() > deadline:
            raise AssertionError(f"{where}: the explanation did not finish in {LONG / 1000:.0f} s")
        page.wait_for_timeout(500)
    text = texts[0]
    done = re.search(r"(\d+) of (\d+) maps made", text)
    if not done or done[1] != done[2]:
        raise AssertionError(f"{where}: {text}")
    page.wait_for_function("() => { const p = [...document.querySelectorAll('.js-plotly-plot')].pop();"
                           " return p && p.querySelectorAll('g.imagelayer image, image').length >= 2 }",
                           timeout=LONG)
    wait_idle(page, LONG)
    _check_errors(page, session, f"{where}, explained")


PRESET_KNOBS = {"residual": True, "middle_repeats": 8, "mid_activation": "none"}  # Xception's own values


def _changed(knobs: dict) -> dict:
    return {k: v for k, v in knobs.items() if v != PRESET_KNOBS[k]}


def _whose(shown: str, sessions: int, rounds: int) -> str:
    """Which planned configuration has the total ``shown``: a session seeing another's would show that."""
    from explorer.spec import load_spec

    xception = load_spec("xception")
    for index in range(sessions):
        for r, knobs in enumerate(knob_plan(index, rounds, sessions)):
            if _params(xception.with_overrides(**_changed(knobs))) == shown:
                return f"knobs-{index + 1}'s round {r + 1}"
    return "the preset's" if _params(xception) == shown else "no planned configuration's"


def _knobs_shown(page) -> dict:
    """The knob values the sidebar's widgets show."""
    from browser import sidebar

    side = sidebar(page)
    mid = side.get_by_label("Activation between depthwise and pointwise", exact=True).input_value()
    return {"residual": side.get_by_role("switch", name="Residual connections").is_checked(),
            "middle_repeats": int(side.get_by_label("Middle-flow blocks", exact=True).input_value()),
            "mid_activation": next((k for k, label in MID.items() if label in mid), mid)}


def run_knobs(page, session: Session, rounds: int, sessions: int, url: str) -> None:
    """Knob session: each round its own knobs, the widgets showing them and the total being theirs, then a
    digit explained."""
    from browser import set_number, sidebar, wait_idle, wait_run

    from explorer.spec import load_spec

    xception = load_spec("xception")
    page.goto(url, wait_until="domcontentloaded")
    page.get_by_text("Parameters").first.wait_for(timeout=LONG)
    wait_idle(page, LONG)
    knobs = dict(PRESET_KNOBS)
    for r, want in enumerate(knob_plan(session.index, rounds, sessions)):
        start, where = time.monotonic(), f"round {r + 1}"
        session.step = f"{where}, knobs"
        if r:
            _goto(page, session, "Architecture")
        if want["residual"] != knobs["residual"]:
            sidebar(page).get_by_text("Residual connections").click()
            wait_run(page, LONG)
        if want["middle_repeats"] != knobs["middle_repeats"]:
            set_number(page, "Middle-flow blocks", want["middle_repeats"], LONG)
        if want["mid_activation"] != knobs["mid_activation"]:
            sidebar(page).get_by_label("Activation between depthwise and pointwise", exact=True).click()
            page.get_by_role("option", name=MID[want["mid_activation"]], exact=True).click()
            wait_run(page, LONG)
        knobs = want
        wait_idle(page, LONG)
        shown = _knobs_shown(page)
        if shown != knobs:  # an input that did not take: not the server's doing
            raise AssertionError(f"{where}: the sidebar shows {shown} after setting {knobs}")
        try:
            _expect_params(page, session, xception.with_overrides(**_changed(knobs)), where)
        except AssertionError as exc:
            total = re.search(r"shows ([\d,]+)", str(exc))
            raise AssertionError(f"{exc} (the total is {_whose(total[1], sessions, rounds)})" if total
                                 else str(exc)) from None
        _check_errors(page, session, f"{where}, knobs")
        session.step = f"{where}, explaining"
        _goto(page, session, "Classify & Explain")
        _explain(page, session, f"digit {(session.index + r) % 10} (#{(session.index + r) % 10})", where)
        session.round_seconds.append(time.monotonic() - start)
        session.rounds_done += 1
        say(f"{session.name}: {where} done in {session.round_seconds[-1]:.0f} s ({describe(_changed(knobs))})")


def describe(knobs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in knobs.items()) or "the preset"


def _add_network(page, label: str) -> None:
    """Pick one more network in the "Networks" multiselect (its menu may close under a rerun: retry)."""
    from browser import wait_idle

    option = page.get_by_role("option", name=label, exact=True)
    tag = page.locator('[data-testid="stMultiSelect"]', has_text="Networks").get_by_text(label, exact=True)
    for _ in range(10):
        page.get_by_label("Networks", exact=True).click()
        try:
            option.wait_for(timeout=20_000)
            option.click(timeout=10_000)
            tag.first.wait_for(timeout=20_000)
            break
        except Exception:  # noqa: BLE001 - the menu closed under a rerun: open it again
            page.keyboard.press("Escape")
            wait_idle(page, LONG)
    else:
        raise AssertionError(f"could not add '{label}' to the Networks")
    page.keyboard.press("Escape")
    wait_idle(page, LONG)


def _wait_heavy_run(page) -> None:
    """After an action that builds a network (seconds of work): wait for the run it starts to show (the
    running indicator, or the previous run's elements marked stale: with the minimal toolbar only those),
    then to end."""
    from browser import wait_idle

    try:
        page.wait_for_function(
            "() => document.querySelector('[data-testid=\"stStatusWidget\"]')"
            " || document.querySelector('[data-testid=\"stElementContainer\"][data-stale=\"true\"]')",
            timeout=30_000)
    except Exception:  # noqa: BLE001 - over before it could be seen
        say("(a run was not seen starting)")
    wait_idle(page, LONG)


def run_classes(page, session: Session, rounds: int, steps: int, url: str) -> None:
    """Classes session: on Classify & Explain with random weights, each step a new "Classes" value
    (a new Xception built and classified); its total checked on the Architecture page at the end."""
    from browser import sidebar, wait_idle, wait_run
    from playwright.sync_api import expect

    from explorer.spec import load_spec

    page.goto(f"{url}/classify", wait_until="domcontentloaded")
    random_ = page.get_by_role("radiogroup", name="Weights").get_by_role("radio", name="Random (seeded)")
    random_.wait_for(timeout=LONG)
    wait_idle(page, LONG)
    random_.click()
    wait_run(page, LONG)
    page.get_by_role("button", name="cat", exact=True).click()  # a shipped sample picture
    wait_run(page, LONG)
    _check_errors(page, session, "opening")
    value = 100_000 - steps * rounds * session.index
    for r in range(rounds):
        start, where = time.monotonic(), f"round {r + 1}"
        for _ in range(steps):
            session.step = f"{where}, {value:,} classes"
            box = sidebar(page).get_by_label("Classes", exact=True)
            box.fill(str(value))
            box.press("Enter")
            _wait_heavy_run(page)
            if r == 0 and value == 100_000 - steps * rounds * session.index:
                _add_network(page, SIDEBAR_NETWORK)
            # its line over its top-5 chart: "Sidebar network (Xception, edited) · random (seed 0) weights"
            page.get_by_text(re.compile(re.escape(SIDEBAR_NETWORK) + " · random.* weights")).first.wait_for()
            wait_idle(page, LONG)
            expect(sidebar(page).get_by_label("Classes", exact=True)).to_have_value(str(value))
            _check_errors(page, session, f"{where}, {value:,} classes")
            say(f"{session.name}: classified with {value:,} classes")
            value -= 1
        session.round_seconds.append(time.monotonic() - start)
        session.rounds_done += 1
        say(f"{session.name}: {where} done in {session.round_seconds[-1]:.0f} s")
    session.step = "the total at the end"
    _goto(page, session, "Architecture")
    _expect_params(page, session, load_spec("xception").with_overrides(num_classes=value + 1), "at the end")
    _check_errors(page, session, "at the end")


def session_thread(session: Session, url: str, args, shots: Path, go: threading.Barrier) -> None:
    """One session on its own Playwright and Chromium (the sync API is bound to its thread)."""
    _paths()
    from browser import CHROMIUM
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"])
            try:
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.set_default_timeout(LONG)
                try:
                    go.wait()
                except threading.BrokenBarrierError:
                    pass
                try:
                    if session.kind == "knobs":
                        run_knobs(page, session, args.rounds, args.sessions - args.classes, url)
                    else:
                        run_classes(page, session, args.rounds, args.steps, url)
                except Exception as exc:  # noqa: BLE001 - recorded, with a screenshot
                    first = str(exc).splitlines()[0] if str(exc) else ""
                    session.failure = f"{session.step}: {type(exc).__name__}: {first}"
                    say(f"{session.name}: FAILED {session.failure}")
                    traceback.print_exc()
                    try:
                        shot = shots / f"{session.name}.png"
                        page.screenshot(path=str(shot), full_page=True)
                        session.screenshot = str(shot)
                    except Exception as gone:  # noqa: BLE001 - the page may be gone
                        say(f"{session.name}: no screenshot ({type(gone).__name__})")
            finally:
                browser.close()
    except Exception as exc:  # noqa: BLE001 - Playwright or Chromium did not start
        session.failure = session.failure or f"{type(exc).__name__}: {exc}"
        say(f"{session.name}: FAILED {session.failure}")
    finally:
        go.abort()  # nobody waits for a session that ended early


# -- the run -------------------------------------------------------------------------------------------

def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=6, help="browser sessions in all (default 6)")
    parser.add_argument("--classes", type=int, default=1, help="of which step the Classes knob (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per session (default 3)")
    parser.add_argument("--steps", type=int, default=2, help="Classes values per round (default 2)")
    parser.add_argument("--settle", type=float, default=10, help="seconds after the sessions end before the "
                                                                 "last memory sample (default 10)")
    parser.add_argument("--timeout", type=float, default=1800, help="give up on the sessions after this "
                                                                    "many seconds (default 1800)")
    args = parser.parse_args(argv)
    global _started
    _started = time.monotonic()
    args.classes = min(args.classes, args.sessions)
    _paths()
    os.chdir(ROOT)  # the server's folder: the same explorer.toml, if any
    from browser import CHROMIUM, start_app, stop_app

    from explorer.resources import LIMITS, limit

    if not Path(CHROMIUM).exists():
        print(f"needs Debian's chromium at {CHROMIUM}")
        return 2
    budget = limit("server_memory_bytes")
    out = Path(tempfile.mkdtemp(prefix="bench_load_"))
    log = out / "server.log"
    sessions = [Session(f"knobs-{i + 1}", "knobs", i) for i in range(args.sessions - args.classes)]
    sessions += [Session(f"classes-{i + 1}", "classes", i) for i in range(args.classes)]
    say(f"{len(sessions)} sessions x {args.rounds} rounds; budget server_memory_bytes = "
        f"{LIMITS['server_memory_bytes'].format(budget)}; files in {out}")
    proc = sampler = None
    threads: list[threading.Thread] = []
    start_rss = end_rss = 0
    try:
        proc, url = start_app(log, timeout=120)
        sampler = Sampler(proc.pid)
        start_rss = sampler.sample()
        sampler.start()
        say(f"server up at {url} (pid {proc.pid}), {mib(start_rss)} resident")
        go = threading.Barrier(len(sessions), timeout=LONG / 1000)
        threads = [threading.Thread(target=session_thread, args=(s, url, args, out, go), name=s.name, daemon=True)
                   for s in sessions]
        for t in threads:
            t.start()
        deadline = time.monotonic() + args.timeout
        for t, s in zip(threads, sessions):
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive() and not s.failure:
                s.failure = f"still running after {args.timeout:.0f} s"
        say(f"sessions over; peak so far {mib(sampler.peak)}; waiting {args.settle:.0f} s")
        time.sleep(args.settle)
        end_rss = sampler.sample()
    except Exception as exc:  # noqa: BLE001 - the server did not start: say why
        print(f"error: {exc}")
        return 1
    finally:
        if sampler is not None:
            sampler.stop()
        if proc is not None:
            stop_app(proc)
        for t in threads:
            t.join(30)  # a session still running sees the server go and closes its browser

    peak = sampler.peak
    failed = [s for s in sessions if s.failure or s.rounds_done < args.rounds]
    over = peak > budget
    print()
    print(f"{'session':<12}{'rounds':>8}{'s/round':>10}{'checks':>8}{'queued':>8}{'reclicks':>10}  outcome")
    for s in sessions:
        per = sum(s.round_seconds) / len(s.round_seconds) if s.round_seconds else float("nan")
        print(f"{s.name:<12}{s.rounds_done:>5}/{args.rounds:<2}{per:>10.1f}{s.checks:>8}{s.queued:>8}"
              f"{s.lost_clicks:>10}  "
              f"{s.failure or 'ok'}" + (f" (screenshot {s.screenshot})" if s.screenshot else ""))
    print(f"\nserver RSS: start {mib(start_rss)}, peak {mib(peak)}, end {mib(end_rss)} ({args.settle:.0f} s after "
          f"the sessions); budget {mib(budget)} (server_memory_bytes): "
          + ("OVER BUDGET by " + mib(peak - budget) if over else f"within, {peak / budget:.0%} of it"))
    when = max(sampler.timeline, key=lambda p: p[1])[0] if sampler.timeline else 0
    (out / "rss.csv").write_text("seconds,rss_bytes\n" + "".join(f"{t:.1f},{b}\n" for t, b in sampler.timeline))
    print(f"peak at {when:.0f} s; {len(sampler.timeline)} samples in {out / 'rss.csv'}; server log {log}")
    print("timeline (the highest sample of each 30 s): " + ", ".join(
        f"{t0:.0f} s {mib(max(b for t, b in sampler.timeline if t0 <= t < t0 + 30))}"
        for t0 in range(0, int(sampler.timeline[-1][0]) + 1, 30)
        if any(t0 <= t < t0 + 30 for t, _ in sampler.timeline)))
    for s in sessions:
        for e in s.errors:
            print(f"{s.name}: {e}")
    if failed or over:
        print(f"\nFAILED: {len(failed)} session(s) failed" + (", memory over budget" if over else "")
              + f"\n--- server log tail ---\n{log_tail(log)}")
        return 1
    print("\nall sessions finished their rounds with their own totals, no error box, memory within budget")
    return 0


if __name__ == "__main__":
    sys.exit(main())
