"""The step-by-step lesson table (fpn_core.lesson): every case has its text, and the cases follow the steps."""

from __future__ import annotations

import string

import pytest
import torch

from fpn_core import PyramidConfig
from fpn_core.fpn import LevelSteps
from fpn_core.lesson import CASES, PANELS, STEPS, level_lesson, panel_case, panel_text, shape_line
from fpn_core.levels import stride_of
from fpn_core.paper import TABLE1

T = torch.zeros(1, 8, 4, 4)


def _steps(lateral: bool = True, top_down: bool = True, output: bool = True) -> LevelSteps:
    return LevelSteps(T if lateral else None, T if top_down else None, T, T if output else None)


def test_the_table_has_one_row_per_step_and_case_and_only_known_names() -> None:
    pairs = [(row.step, row.case) for row in PANELS]
    assert len(pairs) == len(set(pairs))
    assert {row.step for row in PANELS} == set(STEPS)
    assert {row.case for row in PANELS} <= set(CASES)
    for row in PANELS:
        assert (row.tensor is None) == bool(row.missing), "a missing map says why; a present one shows its tensor"
        fields = {
            name for text in (row.title, row.prose, row.missing) for _, name, _, _ in string.Formatter().parse(text)
        }
        assert fields - {None} <= {
            "level",
            "stage",
            "above",
            "c_in",
            "d",
            "upsample",
            "merge",
            "op",
            "ar[no-lateral]",
            "ar[no-top-down]",
            "ar[finest-only]",
        }, row


@pytest.mark.parametrize(
    ("steps", "top", "missing"),
    [
        (_steps(), False, set()),
        (_steps(top_down=False), True, {"top_down"}),
        (_steps(top_down=False), False, {"top_down"}),
        (_steps(lateral=False), False, {"lateral"}),
        (_steps(output=False), False, {"output"}),
    ],
)
def test_each_level_has_five_panels_and_the_missing_ones_say_why(steps: LevelSteps, top: bool, missing: set) -> None:
    config = PyramidConfig(out_channels=16, stages=("c3", "c4", "c5"))
    level = "p5" if top else "p4"
    panels = level_lesson(level, torch.zeros(1, 16, 4, 4), steps, config)
    assert [p.step for p in panels] == list(STEPS)
    assert {p.step for p in panels if p.tensor is None} == missing
    for p in panels:
        assert "{" not in p.title + p.caption + p.missing, "every field is filled in"
        if p.tensor is not None:
            assert p.caption.startswith(shape_line(p.caption.split("**")[1], p.tensor, stride_of(level)))
    top_down = panels[STEPS.index("top_down")]
    if "top_down" in missing:
        assert top_down.case == ("top" if top else "ablated")
        assert top_down.missing == panel_text("top_down", top_down.case).missing


def test_merged_says_which_inputs_it_had() -> None:
    assert panel_case("merged", _steps(), top=False) == "both"
    assert panel_case("merged", _steps(top_down=False), top=True) == "lateral only"
    assert panel_case("merged", _steps(lateral=False), top=False) == "top-down only"


def test_ablation_prose_cites_the_papers_number() -> None:
    config = PyramidConfig(out_channels=16, stages=("c3", "c4", "c5"))
    for step, ablation, steps in (
        ("lateral", "no-lateral", _steps(lateral=False)),
        ("top_down", "no-top-down", _steps(top_down=False)),
        ("output", "finest-only", _steps(output=False)),
    ):
        panel = next(p for p in level_lesson("p4", T, steps, config) if p.step == step)
        assert str(TABLE1[ablation].ar) in panel.caption, ablation
