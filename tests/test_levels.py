"""Level, stage and step names: built and read in one place (fpn_core.levels)."""

from __future__ import annotations

import pytest

from fpn_core.levels import (
    level_above,
    level_below,
    level_name,
    level_of,
    level_of_step,
    stage_of,
    step_key,
    step_of,
    stride_of,
)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_level_names_strides_and_neighbours(k):
    level = level_name(k)
    assert level == f"p{k}" and stride_of(level) == 2**k
    assert level_above(level) == level_name(k + 1) and level_below(level_above(level)) == level
    if k <= 5:
        assert level_of(stage_of(level)) == level and stride_of(stage_of(level)) == stride_of(level)


@pytest.mark.parametrize("step", ["lateral", "top_down", "output", "pool"])
def test_step_names_round_trip(step):
    key = step_key("p4", step)
    assert key == f"p4.{step}"
    assert level_of_step(key) == "p4" and step_of(key) == step
    assert level_of_step("c3") == "c3"  # a stage's timing key is its own name
