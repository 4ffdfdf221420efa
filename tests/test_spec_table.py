"""The block table (explorer/spec/table.py): cells as the app's data editor hands them back, and round trips.

The editor gives NaN for an emptied numeric cell, floats such as ``32.0`` for whole numbers in a
column that also holds empty cells, ``"128, 128"`` for a list, ``""`` or ``None`` for an empty cell.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

from explorer.errors import SpecError
from explorer.spec import list_presets, load_spec, parse_spec
from explorer.spec.table import COLUMNS, spec_from_rows, spec_to_rows

XCEPTION = load_spec("xception")
NAN = float("nan")


def rows_by_name(spec, **kwargs) -> tuple[list[dict], dict[str, dict]]:
    rows = spec_to_rows(spec, **kwargs)
    return rows, {r["name"]: r for r in rows}


def blocks(spec) -> dict:
    return {b.name: b for b in spec.blocks}


@pytest.mark.parametrize("preset", list_presets())
@pytest.mark.parametrize("as_text", [False, True])
def test_every_preset_round_trips_rows_spec_rows_yaml(preset, as_text):
    spec = load_spec(preset)
    rows = spec_to_rows(spec, as_text=as_text)
    assert [r["name"] for r in rows] == [b.name for b in spec.blocks]
    assert all(list(r) == list(COLUMNS) for r in rows)
    back = spec_from_rows(spec, rows)
    assert back == spec
    assert spec_to_rows(back, as_text=as_text) == rows
    assert back.to_yaml() == spec.to_yaml()
    assert parse_spec(back.to_yaml()) == load_spec(preset)


@pytest.mark.parametrize("preset", list_presets())
def test_every_preset_round_trips_through_a_dataframe(preset):
    """A typed frame turns missing cells into NaN and whole numbers into floats (32 → 32.0)."""
    spec = load_spec(preset)
    rows = pd.DataFrame(spec_to_rows(spec), columns=list(COLUMNS)).to_dict("records")
    cells = [v for row in rows for v in row.values()]
    assert any(isinstance(v, float) and math.isnan(v) for v in cells)  # the cases under test are there
    assert any(isinstance(v, float) and v.is_integer() for v in cells)
    back = spec_from_rows(spec, rows)
    assert back == spec
    assert back.to_yaml() == spec.to_yaml()  # 32.0 became 32 again, NaN became nothing


def test_nan_and_empty_cells_are_missing_fields():
    rows, by_name = rows_by_name(XCEPTION)
    conv = by_name["entry.conv1"]
    conv.update(repeat=NAN, channels="", kernel="   ", residual=None, mid_activation=NAN, segments=NAN, more=NAN)
    assert spec_from_rows(XCEPTION, rows) == XCEPTION
    # emptying a cell that had a value drops the field: the block gets the schema's default
    conv["stride"] = NAN
    edited = blocks(spec_from_rows(XCEPTION, rows))["entry.conv1"]
    assert edited.stride == type(edited).model_fields["stride"].default != blocks(XCEPTION)["entry.conv1"].stride


def test_a_row_left_empty_is_no_block():
    rows = spec_to_rows(XCEPTION)
    added = [{c: None for c in COLUMNS}, {c: NAN for c in COLUMNS}, {c: "" for c in COLUMNS}]
    assert spec_from_rows(XCEPTION, rows + added) == XCEPTION


def test_whole_floats_are_ints_and_fractions_are_named_errors():
    rows, by_name = rows_by_name(XCEPTION)
    by_name["entry.conv1"]["out"] = 16.0
    by_name["middle.block"]["repeat"] = 3.0
    edited = blocks(spec_from_rows(XCEPTION, rows))
    assert edited["entry.conv1"].out == 16 and type(edited["entry.conv1"].out) is int
    assert edited["middle.block"].repeat == 3 and type(edited["middle.block"].repeat) is int
    by_name["entry.conv1"]["out"] = 16.5
    with pytest.raises(SpecError) as info:
        spec_from_rows(XCEPTION, rows)
    assert info.value.path == "blocks[0] (entry.conv1).out"


@pytest.mark.parametrize("cell", ["64, 96", " 64 ,96 ", "64,96", [64, 96]])
def test_list_cells(cell):
    rows, by_name = rows_by_name(XCEPTION)
    assert by_name["entry.block1"]["channels"] == "128, 128"  # how a list is written
    by_name["entry.block1"]["channels"] = cell
    assert list(blocks(spec_from_rows(XCEPTION, rows))["entry.block1"].channels) == [64, 96]


def test_a_bad_list_item_names_its_index():
    rows, by_name = rows_by_name(XCEPTION)
    by_name["entry.block1"]["channels"] = "128, x"
    with pytest.raises(SpecError) as info:
        spec_from_rows(XCEPTION, rows)
    assert info.value.path.endswith("(entry.block1).channels[1]")


def test_a_list_cell_in_brackets():
    rows, by_name = rows_by_name(XCEPTION)
    by_name["entry.block1"]["channels"] = "[64, 96]"
    assert list(blocks(spec_from_rows(XCEPTION, rows))["entry.block1"].channels) == [64, 96]


def test_a_cell_that_is_no_yaml_value_names_its_row_and_column():
    rows, by_name = rows_by_name(XCEPTION)
    index = next(i for i, row in enumerate(rows) if row["name"] == "entry.block1")
    by_name["entry.block1"]["out"] = "{"
    with pytest.raises(SpecError, match=rf"blocks\[{index}\]\.out: '{{' is not a value"):
        spec_from_rows(XCEPTION, rows)


def test_two_number_kernels_and_paddings():
    inception = load_spec("inception_v3")
    rows, by_name = rows_by_name(inception, as_text=True)
    by_name["Conv2d_4a_3x3"].update(kernel="3, 1", more="{padding: [1, 0]}")
    conv = blocks(spec_from_rows(inception, rows))["Conv2d_4a_3x3"]
    assert (tuple(conv.kernel), tuple(conv.padding)) == ((3, 1), (1, 0))


@pytest.mark.parametrize("word", ["yes", "no", "on", "off", "true", "False", "null", "Null", "none"])
def test_names_that_look_like_yaml_scalars_stay_text(word):
    rows, by_name = rows_by_name(XCEPTION, as_text=True)
    by_name["entry.conv1"]["name"] = word
    edited = spec_from_rows(XCEPTION, rows)
    assert edited.blocks[0].name == word and isinstance(edited.blocks[0].name, str)


@pytest.mark.parametrize("word", ["1", "0.5", "~"])
def test_a_name_that_is_no_identifier_is_refused_as_the_text_typed(word):
    rows, by_name = rows_by_name(XCEPTION, as_text=True)
    by_name["entry.conv1"]["name"] = word
    with pytest.raises(SpecError) as info:
        spec_from_rows(XCEPTION, rows)
    assert info.value.path == f"blocks[0] ({word}).name" and "identifier" in info.value.reason


def test_word_columns_are_never_read_as_yaml():
    """``none`` stays the activation named none; ``off`` is a bad residual, not False."""
    rows, by_name = rows_by_name(XCEPTION, as_text=True)
    by_name["entry.block1"]["mid_activation"] = "none"
    assert blocks(spec_from_rows(XCEPTION, rows))["entry.block1"].mid_activation == "none"
    by_name["entry.block1"]["residual"] = "off"
    with pytest.raises(SpecError) as info:
        spec_from_rows(XCEPTION, rows)
    assert info.value.path.endswith("(entry.block1).residual") and "'none'" in info.value.reason


@pytest.mark.parametrize("more, reason", [("{stride: 2", "not valid YAML"), ("[1, 2]", "must be a mapping")])
def test_a_bad_more_cell_names_its_row(more, reason):
    rows, by_name = rows_by_name(XCEPTION, as_text=True)
    by_name["entry.conv1"]["more"] = more
    with pytest.raises(SpecError) as info:
        spec_from_rows(XCEPTION, rows)
    assert info.value.path == "blocks[0].more" and reason in info.value.reason
