"""End to end in a real browser: `streamlit run app.py`, Debian's chromium, Playwright."""

from __future__ import annotations

from browser import app_url, browser, keep, metric, needs_chromium, wait_idle, wait_metric_changes  # noqa: F401

pytestmark = needs_chromium


def test_residual_toggle_changes_the_totals(app_url, browser):
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
