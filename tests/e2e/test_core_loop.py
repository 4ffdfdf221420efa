"""The core loop in a real browser, where widget state lives in the page (AppTest cannot see it):
knobs that come back after a reset or an edit, the A label, the blocks table, and one walk through
the whole main loop that fails on any exception or error box."""

from __future__ import annotations

import re

import pytest
from browser import (  # noqa: F401 (fixtures)
    app_url,
    browser,
    keep,
    metric,
    needs_chromium,
    open_tab,
    sidebar,
    wait_idle,
    wait_metric_changes,
    wait_run,
)

from playwright.sync_api import expect

from explorer.cost import count_costs
from explorer.format import si
from explorer.spec import Spec, load_spec, parse_spec

pytestmark = needs_chromium

XCEPTION = load_spec("xception")


def params_of(spec) -> str:
    """The parameter total as the app shows it, from the cost model (the oracle the tests share)."""
    return f"{count_costs(spec).totals['params']:,}"


@pytest.fixture
def page(app_url, browser):
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = context.new_page()
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_text("Parameters").first.wait_for(timeout=90_000)
    wait_idle(page)
    yield page
    context.close()


def assert_no_errors(page) -> None:
    """No exception and no error box anywhere on the page."""
    wait_idle(page)
    exceptions = page.locator('[data-testid="stException"]')
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert exceptions.count() == 0, exceptions.first.inner_text()
    assert errors.count() == 0, errors.first.inner_text()


def only(locator):
    """The one element ``locator`` finds, once the run has removed the stale copy a new widget key leaves."""
    expect(locator).to_have_count(1, timeout=30_000)
    return locator


def residual_on(page) -> bool:
    return only(sidebar(page).get_by_role("switch", name="Residual connections")).is_checked()


def middle_blocks(page) -> str:
    return only(sidebar(page).get_by_label("Middle-flow blocks", exact=True)).input_value()


def set_middle_blocks(page, n: int) -> None:
    box = sidebar(page).get_by_label("Middle-flow blocks", exact=True)
    box.fill(str(n))
    box.press("Enter")


def unrelated_click(page) -> None:
    """A click that must not change the network: the graph's "Size by" control."""
    wait_idle(page)  # the run that drew the control is over (a rerun briefly shows a stale copy of it)
    radio = only(page.get_by_role("radiogroup", name="Size by")).get_by_role("radio", name="parameters")
    radio.click()
    wait_run(page)
    expect(only(radio)).to_have_attribute("aria-checked", "true")


def choose(page, label: str, option: str, where=None) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    (where or page).get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    wait_run(page)


def test_reset_then_an_unrelated_click_keeps_the_base_values(page):
    base = params_of(XCEPTION)
    sidebar(page).get_by_text("Residual connections").click()
    wait_metric_changes(page, "Parameters", base)
    set_middle_blocks(page, 2)
    assert wait_metric_changes(page, "Parameters", params_of(XCEPTION.with_overrides(residual=False))) == \
        params_of(XCEPTION.with_overrides(residual=False, middle_repeats=2))
    sidebar(page).get_by_role("button", name="Reset knobs").click()
    assert wait_metric_changes(page, "Parameters", params_of(XCEPTION.with_overrides(
        residual=False, middle_repeats=2))) == base
    assert residual_on(page) and middle_blocks(page) == "8"  # the widgets show the base's values
    unrelated_click(page)
    assert metric(page, "Parameters") == base
    assert residual_on(page) and middle_blocks(page) == "8"


def test_a_yaml_edit_sticks_across_a_further_click(page):
    open_tab(page, "YAML")
    area = page.locator("textarea[aria-label=\"Spec (YAML)\"]")
    expect(area).to_have_value(re.compile("repeat: 8"), timeout=30_000)  # a tab draws its content when opened
    text = area.input_value()
    area.fill(text.replace("repeat: 8", "repeat: 4"))
    area.press("Control+Enter")
    wait_run(page)
    page.get_by_role("button", name="Validate and apply YAML").click()
    four = XCEPTION.with_overrides(middle_repeats=4)
    assert wait_metric_changes(page, "Parameters", params_of(XCEPTION)) == params_of(four)
    assert middle_blocks(page) == "4"
    assert page.get_by_text("Applied the YAML").count() == 1  # the edit is confirmed, with its delta
    unrelated_click(page)
    assert metric(page, "Parameters") == params_of(four)
    assert middle_blocks(page) == "4"


def test_an_uploaded_spec_sticks_across_a_further_click(page, tmp_path):
    two = XCEPTION.with_overrides(middle_repeats=2)
    path = tmp_path / "two_blocks.yaml"
    path.write_text(two.to_yaml())
    open_tab(page, "File")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    assert wait_metric_changes(page, "Parameters", params_of(XCEPTION)) == params_of(two)
    assert middle_blocks(page) == "2"
    unrelated_click(page)
    assert metric(page, "Parameters") == params_of(two)
    assert middle_blocks(page) == "2"


def test_the_a_label_follows_the_network_it_pins(page):
    sidebar(page).get_by_role("link", name="Costs").click()
    wait_run(page)
    open_tab(page, "Compare A / B")
    expect(page.get_by_label("Label for A", exact=True)).to_have_value("xception", timeout=30_000)
    choose(page, "Network", "inception_v3", sidebar(page))
    wait_metric_changes(page, "Parameters", params_of(XCEPTION))
    open_tab(page, "Compare A / B")
    expect(page.get_by_label("Label for A", exact=True)).to_have_value("inception_v3")
    page.get_by_role("button", name="Pin current as A").click()
    page.get_by_text("A: inception_v3 — B: inception_v3").first.wait_for(timeout=30_000)
    wait_idle(page)
    choose(page, "Network", "xception", sidebar(page))
    wait_metric_changes(page, "Parameters", params_of(load_spec("inception_v3")))
    open_tab(page, "Compare A / B")
    page.get_by_text("A: inception_v3 — B: xception").first.wait_for(timeout=30_000)
    expect(page.get_by_label("Label for A", exact=True)).to_have_value("xception")
    assert_no_errors(page)


def settled_box(page, locator) -> dict:
    """The element's box once the page has stopped moving it (tabs draw late, scrolling is smooth)."""
    last = None
    for _ in range(40):
        box = locator.bounding_box()
        if box == last:
            return box
        last = box
        page.wait_for_timeout(150)
    return last


def edit_blocks_cell(page, row: int, column: int, value: str) -> None:
    """Type ``value`` into the blocks table's cell (row, column): move there with the keyboard, open the
    cell's editor, type, commit, and wait until the grid holds the new text."""
    open_tab(page, "Blocks table")
    grid = page.locator('[data-testid="stDataFrame"]').first
    expect(grid.get_by_test_id("glide-cell-1-0")).to_have_text(XCEPTION.blocks[0].name)  # drawn once opened
    grid.scroll_into_view_if_needed()
    box = settled_box(page, grid)
    selected = grid.locator('[role="gridcell"][aria-selected="true"]')
    for _ in range(3):  # the first click on a fresh grid may only focus it
        page.mouse.click(box["x"] + 60, box["y"] + 52)  # the first body cell (name of the first block)
        try:
            expect(selected).to_have_count(1, timeout=2_000)
            break
        except AssertionError:
            continue
    expect(selected).to_have_attribute("data-testid", "glide-cell-1-0")
    for _ in range(row):
        page.keyboard.press("ArrowDown")
    for _ in range(column):
        page.keyboard.press("ArrowRight")
    expect(selected).to_have_attribute("data-testid", f"glide-cell-{column + 1}-{row}")
    page.keyboard.press("Enter")
    editor = page.locator("textarea.gdg-input")
    editor.fill(value)
    editor.press("Enter")
    # the grid's accessible copy: glide-cell-COLUMN-ROW, columns counted from 1
    expect(grid.get_by_test_id(f"glide-cell-{column + 1}-{row}")).to_have_text(value)
    wait_run(page)


def edited(block: str, **fields) -> Spec:
    """Xception with one block's fields changed, made from its data (not through the table code)."""
    data = XCEPTION.model_dump(mode="json")
    next(b for b in data["blocks"] if b["name"] == block).update(fields)
    return parse_spec(data)


@pytest.mark.parametrize(("block", "column", "value", "changed", "shown"), [
    ("middle.block", "repeat", "3", XCEPTION.with_overrides(middle_repeats=3), "Parameters"),
    ("entry.conv1", "out", "16", edited("entry.conv1", out=16), "Parameters"),
    ("entry.block2", "stride", "1", edited("entry.block2", stride=1), "MACs"),
])
def test_the_blocks_table_edits_repeat_out_and_stride(page, block, column, value, changed, shown):
    from explorer.spec.table import COLUMNS

    before = metric(page, shown)
    edit_blocks_cell(page, [b.name for b in XCEPTION.blocks].index(block), COLUMNS.index(column), value)
    page.get_by_role("button", name="Apply table").click()
    totals = count_costs(changed).totals
    expected = f"{totals['params']:,}" if shown == "Parameters" else si(totals["macs"])
    assert wait_metric_changes(page, shown, before) == expected
    expect(page.get_by_text("Applied the table")).to_have_count(1)
    assert_no_errors(page)


def test_a_narrow_screen_reflows(app_url, browser, tmp_path):
    """At 800 px nothing is truncated or cut off: metrics, segmented controls, the charts."""
    context = browser.new_context(viewport={"width": 800, "height": 1000})
    page = context.new_page()
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_text("Parameters").first.wait_for(timeout=90_000)
    wait_idle(page)
    sidebar(page).get_by_text("Residual connections").click()
    wait_metric_changes(page, "Parameters", params_of(XCEPTION))
    keep(page, tmp_path, "app_narrow.png")
    overflowing = page.evaluate("""() => {
        const main = document.querySelector('[data-testid="stMain"]').getBoundingClientRect();
        const clipped = (e) => e.scrollWidth > e.clientWidth + 1;
        const out = [];
        for (const e of document.querySelectorAll('[data-testid="stMetricValue"], [data-testid="stMetricDelta"]'))
            if (clipped(e) || clipped(e.firstElementChild || e)) out.push('metric ' + e.innerText);
        for (const e of document.querySelectorAll('[data-testid="stMain"] [role="radio"]')) {
            const r = e.getBoundingClientRect();
            if (clipped(e) || r.right > main.right + 1) out.push('control ' + e.innerText);
        }
        for (const e of document.querySelectorAll('[data-testid="stMain"] .js-plotly-plot')) {
            const r = e.getBoundingClientRect();
            if (r.right > main.right + 1) out.push('chart ending at ' + r.right + ' of ' + main.right);
        }
        return out;
    }""")
    assert overflowing == []
    context.close()


def test_the_whole_main_loop_in_one_session(page, tmp_path):
    """Open, toggle residual, set the mid activation, pin A and compare, edit the table, classify and
    explain a digit, switch network, reset: every step shows what it should and no error on the way."""
    inception = load_spec("inception_v3")
    # 1. open: the preset's totals
    assert metric(page, "Parameters") == params_of(XCEPTION)
    assert_no_errors(page)
    # 2. residual off: a delta against the base
    no_skip = XCEPTION.with_overrides(residual=False)
    sidebar(page).get_by_text("Residual connections").click()
    assert wait_metric_changes(page, "Parameters", params_of(XCEPTION)) == params_of(no_skip)
    lost = count_costs(no_skip).totals["params"] - count_costs(XCEPTION).totals["params"]
    expect(delta(page, "Parameters")).to_contain_text(f"{lost:,}")
    keep(page, tmp_path, "app_architecture.png")
    assert_no_errors(page)
    # 3. ReLU between depthwise and pointwise: no parameters, but element-wise ops move
    relu = no_skip.with_overrides(mid_activation="relu")
    before = metric(page, "Element-wise ops")
    choose(page, "Activation between depthwise and pointwise", "ReLU", sidebar(page))
    assert wait_metric_changes(page, "Element-wise ops", before) == si(count_costs(relu).totals["elementwise_ops"])
    assert metric(page, "Parameters") == params_of(no_skip)
    assert_no_errors(page)
    # 4. pin A on the Costs page, change B, compare
    sidebar(page).get_by_role("link", name="Costs").click()
    wait_run(page)
    open_tab(page, "Compare A / B")
    page.get_by_role("button", name="Pin current as A").click()
    page.get_by_text("A: xception (residual connections off, ReLU between depthwise and pointwise)").first.wait_for(
        timeout=30_000)
    wait_idle(page)
    sidebar(page).get_by_text("Residual connections").click()
    wait_metric_changes(page, "Parameters", params_of(no_skip))
    open_tab(page, "Compare A / B")
    gained = count_costs(XCEPTION.with_overrides(mid_activation="relu")).totals["params"] - \
        count_costs(relu).totals["params"]
    expect(page.get_by_text("Against A (")).to_contain_text(f"Parameters +{gained:,}")
    assert_no_errors(page)
    # 5. edit the table on the Architecture page: 4 middle blocks (knobs included, they become the base)
    sidebar(page).get_by_role("link", name="Architecture").click()
    wait_run(page)
    shown = XCEPTION.with_overrides(mid_activation="relu")
    edit_blocks_cell(page, [b.name for b in XCEPTION.blocks].index("middle.block"), 3, "4")
    page.get_by_role("button", name="Apply table").click()
    assert wait_metric_changes(page, "Parameters", params_of(shown)) == \
        params_of(shown.with_overrides(middle_repeats=4))
    assert middle_blocks(page) == "4"
    assert_no_errors(page)
    # 6. the digits: classify and explain
    sidebar(page).get_by_role("link", name="Classify & Explain").click()
    digits = page.get_by_role("radiogroup", name="Weights").get_by_role("radio", name="Shipped digits model")
    digits.wait_for(timeout=120_000)
    wait_run(page, 120_000)
    if digits.get_attribute("aria-checked") != "true":
        digits.click()
        wait_run(page, 120_000)
    page.get_by_text("digit 3 (#3)").first.click()
    wait_run(page, 120_000)
    chart = page.locator(".js-plotly-plot").first
    expect(chart.locator(".yaxislayer-above .ytick text").first).to_be_visible(timeout=120_000)
    ticks = [t.text_content() for t in chart.locator(".yaxislayer-above .ytick text").all()]
    assert "3" in ticks and len(ticks) == 5, ticks  # five classes, each labelled by its name
    page.get_by_role("button", name="Explain", exact=True).click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=\"stCaptionContainer\"]')]"
        ".filter(e => e.innerText.startsWith('Done · ')).length >= 2", timeout=180_000)
    wait_idle(page, 120_000)
    assert_no_errors(page)
    # 7. switch network: Inception V3's totals
    choose(page, "Network", "inception_v3", sidebar(page))
    sidebar(page).get_by_role("link", name="Architecture").click()
    page.get_by_text("Parameters").first.wait_for(timeout=60_000)
    expect(page.locator('[data-testid="stMetric"]', has_text="Parameters").locator(
        '[data-testid="stMetricValue"]')).to_have_text(params_of(inception), timeout=60_000)
    assert_no_errors(page)
    # 8. a knob, then reset: back to the base, and it stays there
    sidebar(page).get_by_text("Auxiliary head").click()
    assert wait_metric_changes(page, "Parameters", params_of(inception)) == \
        params_of(inception.with_overrides(aux_logits=False))
    sidebar(page).get_by_role("button", name="Reset knobs").click()
    assert wait_metric_changes(page, "Parameters", params_of(inception.with_overrides(aux_logits=False))) == \
        params_of(inception)
    unrelated_click(page)
    assert metric(page, "Parameters") == params_of(inception)
    assert only(sidebar(page).get_by_role("switch", name="Auxiliary head")).is_checked()
    assert_no_errors(page)


def delta(page, label: str):
    """The delta line of the metric ``label``."""
    return page.locator('[data-testid="stMetric"]', has_text=label).first.locator('[data-testid="stMetricDelta"]')
