"""A long explanation in a real browser: maps appear as they finish, Cancel stops the rest, no error box.

On the shipped digits model, Saliency and Grad-CAM take a fraction of a second and Integrated
Gradients is made long on purpose (2,048 path points, one per pass: thousands of forward and backward
passes, tens of seconds on 2 CPU cores). Every wait is on a condition with a generous timeout; no
sleep is an assertion.
"""

from __future__ import annotations

from browser import app_url, browser, choose_digits, keep, metric, needs_chromium, wait_idle  # noqa: F401

pytestmark = needs_chromium

LONG = 180_000  # ms: a guard against a hang, not a measured time


def statuses(page, mark: str) -> int:
    """How many per-map status lines start with ``mark`` ("Done", "Running", "Cancelled", ...)."""
    return page.locator('[data-testid="stCaptionContainer"]', has_text=f"{mark} · ").count()


def assert_no_errors(page) -> None:
    exceptions = page.locator('[data-testid="stException"]')
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()
    assert errors.count() == 0, errors.first.inner_text()


def add_method(page, title: str) -> None:
    """Pick one more method in the "Methods" multiselect (its menu may close if a rerun redraws it: retry)."""
    option = page.get_by_role("option", name=title, exact=True)
    for _ in range(5):
        page.get_by_label("Methods", exact=True).click()
        try:
            option.wait_for(timeout=10_000)
            option.click(timeout=10_000)
            break
        except Exception:  # noqa: BLE001 - the menu closed under a rerun: open it again
            wait_idle(page, LONG)
    page.keyboard.press("Escape")
    wait_idle(page, LONG)
    tags = page.locator('[data-testid="stMultiSelect"]', has_text="Methods")
    tags.get_by_text(title, exact=True).first.wait_for(timeout=LONG)


def test_a_long_explanation_shows_maps_as_they_finish_and_can_be_cancelled(app_url, browser, tmp_path):
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(f"{app_url}/classify", wait_until="domcontentloaded")
    choose_digits(page, timeout=LONG)

    # Saliency and Grad-CAM are preselected; add Integrated Gradients, made long on purpose
    add_method(page, "Integrated Gradients")
    page.get_by_text("Cost of the long methods").click()
    for label, value in (("Integrated Gradients: path points (steps)", "2048"),
                         ("Integrated Gradients: points per pass", "1")):
        box = page.get_by_label(label, exact=True)
        box.fill(value)
        box.press("Enter")
        wait_idle(page, LONG)
    # IG's 2,048 path points and one pass to find the predicted class, said before it starts
    expect(page.get_by_text("Estimated time: about")).to_contain_text("2,049 image passes", timeout=LONG)

    page.get_by_role("button", name="Explain", exact=True).click()
    cancel = page.get_by_role("button", name="Cancel", exact=True)
    cancel.wait_for(timeout=LONG)
    # the quick maps are drawn while the long one still runs: the job has not ended
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stCaptionContainer\"]')]"
        ".filter(e => e.innerText.startsWith('Done · ')).length >= 2", timeout=LONG)
    running = page.locator('[data-testid="stCaptionContainer"]', has_text="Running · Integrated Gradients")
    running.first.wait_for(timeout=LONG)
    assert cancel.is_visible()
    # the finished maps are drawn while the job runs
    for title in ("Saliency", "Grad-CAM"):
        page.locator('[data-testid="stImage"]', has_text=title).first.wait_for(timeout=LONG)
    assert cancel.is_visible() and statuses(page, "Running") == 1
    assert keep(page, tmp_path, "app_explain_running.png").stat().st_size > 10_000

    cancel.click()
    page.get_by_text("Cancelled after").first.wait_for(timeout=LONG)
    wait_idle(page, LONG)
    assert statuses(page, "Cancelled") == 1
    assert statuses(page, "Done") == 2  # what finished stays; nothing more appeared
    assert statuses(page, "Running") == 0
    assert page.get_by_role("button", name="Cancel", exact=True).count() == 0  # the polling ended
    assert page.get_by_role("button", name="Explain", exact=True).is_enabled()
    # the final grid holds the two maps, and says the third was cancelled
    page.wait_for_function("() => { const p = [...document.querySelectorAll('.js-plotly-plot')].pop();"
                           " return p && p.querySelectorAll('g.imagelayer image, image').length >= 2"
                           " && p.innerText.includes('cancelled') }", timeout=LONG)
    assert_no_errors(page)
    context.close()
