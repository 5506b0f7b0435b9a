"""AppTest checks of the "Receptive fields" page: the ERF table and figures, the keyboard path, the shares.

The model has its seeded random init (``conftest.py``); the page runs at input size 128.
"""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import open_page
from ui import settings as S

PAGE = "pages/10_Receptive_fields.py"
#: The default pyramid: c3..c5 in, p3..p6 out; the page shows c2..c5 too.
NAMES = ["c2", "c3", "c4", "c5", "p3", "p4", "p5", "p6"]


@pytest.fixture(scope="module")
def at() -> AppTest:
    page = open_page(PAGE, size=128)
    assert not page.exception, page.exception
    return page


def _table(at: AppTest):
    (frame,) = [df.value for df in at.dataframe if "theoretical RF (px)" in df.value.columns]
    return frame.set_index("map")


def _sentences(at: AppTest) -> list[str]:
    """The reading under each level's composite: at the point, then over the whole level."""
    return [m.value for m in at.markdown if m.value.startswith("At this point")]


def _number(at: AppTest, key: str):
    return next(n for n in at.number_input if n.key == key)


def test_page_shows_erf_table_and_figures(at: AppTest) -> None:
    table = _table(at)
    assert list(table.index) == NAMES
    # The default point is the image centre, so every cell is near the middle of its map.
    assert _number(at, S.KEY_RF_X).value > 0 and _number(at, S.KEY_RF_Y).value > 0
    # One ERF panel per stage and level, one composite per level, and a PNG download for each figure.
    assert len(at.get("download_button")) >= len(NAMES) + 4 + 2  # + the radius plot and the shares
    assert len(at.get("image")) >= len(NAMES) + 4
    text = "\n".join(m.value for m in at.markdown)
    assert "Luo et al." in text and "top-down" in text and "theoretical receptive field" in text


def test_radii_and_theoretical_rf_grow_with_depth(at: AppTest) -> None:
    table = _table(at)
    rf = table["theoretical RF (px)"]
    r90 = table["ERF r90 (px)"]
    # Deeper stages see further, in theory and in effect.
    assert rf["c2"] < rf["c3"] < rf["c4"] < rf["c5"]
    assert r90["c2"] < r90["c3"] < r90["c4"]
    # The top-down path: a p3 cell (stride 8, like c3) sees at least as far as a c5 cell.
    assert rf["p3"] >= rf["c5"] > rf["c3"]
    assert r90["p3"] > r90["c3"]
    # The ERF fills only part of the theoretical square, less so deeper down.
    ratio = table["2·r90 / RF side"]
    assert (ratio > 0).all() and (ratio <= 1).all()
    assert ratio["c2"] > ratio["c5"]
    growth = next(m.value for m in at.markdown if "the top-down path brings" in m.value)
    assert f"**c3** sees {rf['c3']} px" in growth and f"**p3** {rf['p3']} px" in growth


def test_shares_sum_to_one_hundred_percent(at: AppTest) -> None:
    sentences = _sentences(at)
    assert len(sentences) == 4 and "of p3 comes from c3" in sentences[0], sentences
    for sentence in sentences:
        for clause in re.split(r"(?<=\.) ", sentence):
            if "%" in clause:
                assert sum(int(p) for p in re.findall(r"(\d+)%", clause)) == 100, clause
            else:
                assert "all of" in clause, clause


def test_keyboard_path_moves_the_point_and_the_reading() -> None:
    at = open_page(PAGE, size=128)
    before_cells = _table(at)["cell (row, col)"]
    before = [i.value for i in at.info if "comes from" in i.value]
    _number(at, S.KEY_RF_X).set_value(5)
    _number(at, S.KEY_RF_Y).set_value(5).run()
    assert not at.exception, at.exception
    after_cells = _table(at)["cell (row, col)"]
    assert after_cells["p3"] == "(0, 0)" and after_cells["c2"] == "(0, 0)"
    assert (after_cells != before_cells).all()
    after = [i.value for i in at.info if "comes from" in i.value]
    assert before and after and after != before
    # A corner cell's ERF is clipped by the border: its theoretical square starts at the image edge.
    assert _table(at)["ERF r90 (px)"]["p3"] > 0


def test_channel_and_magnitude_change_the_maps() -> None:
    at = open_page(PAGE, size=128)
    summed = _table(at)["ERF r50 (px)"]
    _number(at, S.KEY_RF_CHANNEL).set_value(7).run()
    assert not at.exception, at.exception
    one_channel = _table(at)["ERF r50 (px)"]
    assert not one_channel.equals(summed)
    at.radio(key=S.KEY_RF_MAGNITUDE).set_value("squared").run()
    assert not at.exception, at.exception
    squared = _table(at)["ERF r50 (px)"]
    # Squaring weights the peak more, so half the mass lies closer to the centre. (A channel that
    # a ReLU zeroes at this cell has no gradient at all: its radii are empty, on both readings.)
    both = one_channel.notna()
    assert both.sum() >= 4 and squared[both].notna().all()
    assert (squared[both] <= one_channel[both] + 1e-6).all()
    assert (squared[both] < one_channel[both]).any()
