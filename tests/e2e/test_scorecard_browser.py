"""Which map to trust? in a real browser: a scorecard of the shipped digits model made in the background
(progress and Cancel shown while it runs), its table with the best of each measure marked, its curves
and cascade, and the card still there after an unrelated change on the page.

Every wait is on a condition with a generous timeout; no sleep is an assertion.
"""

from __future__ import annotations

from browser import (  # noqa: F401 (fixtures)
    app_url,
    browser,
    choose_digits,
    keep,
    needs_chromium,
    set_number,
    wait_idle,
    wait_run,
)

pytestmark = needs_chromium

LONG = 240_000  # ms: a guard against a hang, not a measured time


def assert_no_errors(page) -> None:
    wait_idle(page, LONG)
    for test_id in ("stException", "stAlertContentError"):
        found = page.locator(f'[data-testid="{test_id}"]')
        assert found.count() == 0, found.first.inner_text()


def scorecard_table(page):
    return page.locator('[data-testid="stTable"]', has_text="deletion ↓")


def test_score_the_maps_of_the_digits_model_and_keep_the_card(app_url, browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1400, "height": 1100})
    page = context.new_page()
    page.goto(f"{app_url}/classify", wait_until="domcontentloaded")
    choose_digits(page, timeout=LONG)

    page.get_by_role("heading", name="Which map to trust?").scroll_into_view_if_needed()
    expect(page.get_by_text("Press Score the maps")).to_be_visible(timeout=LONG)
    assert scorecard_table(page).count() == 0  # nothing ran by itself
    # the default methods, made light: few curve steps, noise draws and IG path points
    set_number(page, "Curve steps", 5, LONG, where=page)
    set_number(page, "Noise draws", 2, LONG, where=page)
    set_number(page, "IG path points", 4, LONG, where=page)
    settings = page.locator('[data-testid="stCaptionContainer"]', has_text="Settings:")
    expect(settings).to_contain_text("1 image × 4 methods × 7 measures on Mini Xception (digits)")
    expect(settings).to_contain_text("5 steps")

    page.get_by_role("button", name="Score the maps", exact=True).click()
    # the progress and Cancel while it runs in the background
    progress = page.locator('[data-testid="stProgress"]', has_text="Scoring 1 image × 4 methods × 7 measures")
    progress.first.wait_for(timeout=LONG)
    # (a fragment redrawing briefly shows its stale copy beside the new one: the first of them)
    expect(page.locator(".st-key-score_cancel button").first).to_be_visible()
    expect(page.get_by_role("button", name="Score the maps", exact=True).first).to_be_disabled()

    table = scorecard_table(page)
    table.first.wait_for(timeout=LONG)
    wait_idle(page, LONG)
    assert page.locator(".st-key-score_cancel").count() == 0  # the polling ended
    text = table.first.inner_text()
    for method in ("Saliency", "Integrated Gradients", "Grad-CAM", "Guided Backprop", "random order (chance)"):
        assert method in text
    for header in ("deletion ↓", "insertion ↑", "sparseness ↑", "randomization ↓"):
        assert header in text
    assert text.count("★") == 7  # the best of each measure, marked once per column
    curves = page.locator(".js-plotly-plot", has_text="fraction of pixels removed")
    cascade = page.locator(".js-plotly-plot", has_text="+ entry flow")
    expect(curves).to_have_count(1)
    expect(cascade).to_have_count(1)
    expect(page.get_by_role("button", name="Download the scorecard (JSON)")).to_be_visible()
    table.first.scroll_into_view_if_needed()
    keep(page, tmp_path, "app_scorecard.png")
    assert_no_errors(page)

    # an unrelated change on the page (top classes) reruns it: the card stays, nothing is scored again
    page.get_by_text("Preprocessing and device").click()
    set_number(page, "Top classes", 3, LONG, where=page)
    wait_idle(page, LONG)
    expect(scorecard_table(page)).to_have_count(1)
    assert scorecard_table(page).first.inner_text() == text
    expect(curves).to_have_count(1)
    expect(cascade).to_have_count(1)
    expect(page.get_by_role("button", name="Score the maps", exact=True)).to_be_disabled()
    expect(page.get_by_text("Scored: the card is below")).to_be_visible()
    assert page.locator('[data-testid="stProgress"]', has_text="Scoring").count() == 0
    assert_no_errors(page)
    context.close()
