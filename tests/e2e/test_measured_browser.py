"""The Measured view in a real browser: a small Xception measured in the background, its roofline drawn,
the profile kept across further clicks and pages, and the graph coloured by the measured time.

The network is made small in the sidebar (one middle block, 64 px images) so a measurement takes seconds;
every wait is on a condition with a generous timeout, no sleep is an assertion.
"""

from __future__ import annotations

import os

import pytest
from browser import (  # noqa: F401 (fixtures)
    app_url,
    browser,
    keep,
    metric,
    needs_chromium,
    open_tab,
    set_number,
    sidebar,
    wait_idle,
    wait_run,
)

pytestmark = needs_chromium

LONG = 120_000  # ms: a guard against a hang, not a measured time


@pytest.fixture(scope="module", autouse=True)
def ceilings_cache(tmp_path_factory):
    """The server's measured ceilings go to a folder of this test's, not the user's cache (set before the
    server starts: it reads the environment when it is launched)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXPLORER_CACHE_DIR", str(tmp_path_factory.mktemp("ceilings")))
        yield


@pytest.fixture
def page(ceilings_cache, app_url, browser):  # noqa: F811 (the fixtures imported above)
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = context.new_page()
    page.goto(f"{app_url}/costs", wait_until="domcontentloaded")
    page.get_by_text("Parameters").first.wait_for(timeout=LONG)
    wait_idle(page, LONG)
    yield page
    context.close()


def assert_no_errors(page) -> None:
    wait_idle(page, LONG)
    for test_id in ("stException", "stAlertContentError"):
        found = page.locator(f'[data-testid="{test_id}"]')
        assert found.count() == 0, found.first.inner_text()


def roofline(page):
    """The roofline chart: the plotly figure whose x axis is the arithmetic intensity."""
    return page.locator(".js-plotly-plot", has_text="arithmetic intensity (FLOP/byte)")


def test_measure_a_small_xception_and_see_its_roofline(page, tmp_path):
    from playwright.sync_api import expect

    set_number(page, "Middle-flow blocks", 1, LONG)
    set_number(page, "Input size (px)", 64, LONG)
    open_tab(page, "Measured")
    measure = page.get_by_role("button", name="Measure", exact=True)
    measure.wait_for(timeout=LONG)
    # nothing ran by itself on the way here
    expect(page.get_by_text("Press Measure to time every layer")).to_be_visible()
    assert roofline(page).count() == 0

    box = page.get_by_label("Timed runs", exact=True)
    box.fill("3")
    box.press("Enter")
    wait_run(page, LONG)
    measure.click()
    roofline(page).first.wait_for(timeout=LONG)
    wait_idle(page, LONG)
    chart = roofline(page).first
    expect(chart).to_contain_text("achieved FLOP/s")
    expect(chart).to_contain_text("measured peak")
    for kind in ("depthwise", "pointwise"):  # their own legend entries, and their medians marked
        expect(chart.locator(".legendtext", has_text=kind).first).to_be_visible()
    forward = metric(page, "Forward (measured)")
    assert forward.endswith(" ms")
    expect(page.locator(".js-plotly-plot", has_text="share of the MACs beside share of the time")).to_have_count(1)
    chart.scroll_into_view_if_needed()
    keep(page, tmp_path, "app_measured.png")
    assert_no_errors(page)

    # a further click on the page keeps the profile: no new measurement, the same numbers
    page.get_by_role("radiogroup", name="Colour the layers by").get_by_role("radio", name="flow").click()
    wait_run(page, LONG)
    expect(roofline(page).first.locator(".legendtext", has_text="middle").first).to_be_visible(timeout=LONG)
    assert metric(page, "Forward (measured)") == forward
    expect(page.get_by_role("button", name="Measure again", exact=True)).to_be_visible()

    # a knob changed: the profile shown says it is of the configuration before
    sidebar(page).get_by_text("Residual connections").click()
    wait_run(page, LONG)
    open_tab(page, "Measured")
    expect(page.get_by_text("not of the sidebar's configuration")).to_be_visible(timeout=LONG)
    expect(page.get_by_role("button", name="Measure", exact=True)).to_be_visible()
    sidebar(page).get_by_text("Residual connections").click()  # back: its profile is shown again, unmeasured
    wait_run(page, LONG)
    open_tab(page, "Measured")
    expect(page.get_by_role("button", name="Measure again", exact=True)).to_be_visible(timeout=LONG)
    assert metric(page, "Forward (measured)") == forward

    # the Architecture page's graph can now be coloured by that measured time
    sidebar(page).get_by_role("link", name="Architecture").click()
    wait_run(page, LONG)
    colour = page.get_by_role("radiogroup", name="Colour by")
    colour.get_by_role("radio", name="measured time").click()
    wait_run(page, LONG)
    graph = page.locator(".js-plotly-plot", has_text="measured time").first
    graph.wait_for(timeout=LONG)
    expect(page.get_by_text("each layer's median time measured on")).to_be_visible()
    assert_no_errors(page)
    if os.environ.get("EXPLORER_SAVE_SCREENSHOTS"):
        keep(page, tmp_path, "app_graph_time.png")
