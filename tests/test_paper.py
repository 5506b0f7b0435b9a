"""The FPN paper's table: one entry per ablation, and the text built from it quotes it exactly."""

from __future__ import annotations

from fpn_core.fpn import ABLATIONS
from fpn_core.paper import (
    CANONICAL_LEVEL,
    CANONICAL_SIZE,
    LEVEL_RULE,
    LEVEL_RULE_LATEX,
    TABLE1,
    TABLE1_BASELINE,
    ablation_label,
    ablation_note,
    table1_rows,
)
from fpn_core.probe import assign_level_k


def test_table1_has_one_row_per_ablation_and_the_fpn_beats_the_baseline() -> None:
    assert set(TABLE1) == set(ABLATIONS)
    assert TABLE1["full"].ar > TABLE1_BASELINE.ar
    assert TABLE1["full"].ar_small > TABLE1_BASELINE.ar_small
    assert max(TABLE1.values(), key=lambda row: row.ar) is TABLE1["full"]


def test_labels_and_notes_quote_the_table() -> None:
    assert ablation_label("no-top-down") == f"no-top-down — AR1k {TABLE1['no-top-down'].ar} (paper)"
    note = ablation_note("no-lateral")
    assert note.startswith(ABLATIONS["no-lateral"])
    assert f"AR1k **{TABLE1['no-lateral'].ar}**, small objects **{TABLE1['no-lateral'].ar_small}**" in note
    assert f"{TABLE1_BASELINE.ar} / {TABLE1_BASELINE.ar_small}" in note


def test_table1_rows_start_with_the_baseline_then_every_ablation() -> None:
    rows = table1_rows()
    assert rows[0]["setting"] == TABLE1_BASELINE.setting and rows[0]["ablation here"] == "—"
    assert [r["ablation here"] for r in rows[1:]] == list(TABLE1)
    assert [r["AR1k"] for r in rows[1:]] == [row.ar for row in TABLE1.values()]


def test_the_level_rule_text_is_the_rule_the_code_runs() -> None:
    assert assign_level_k(CANONICAL_SIZE, CANONICAL_SIZE) == CANONICAL_LEVEL
    assert assign_level_k(CANONICAL_SIZE / 2, CANONICAL_SIZE / 2) == CANONICAL_LEVEL - 1
    for text in (LEVEL_RULE, LEVEL_RULE_LATEX):
        assert f"{CANONICAL_LEVEL} + " in text and str(CANONICAL_SIZE) in text
