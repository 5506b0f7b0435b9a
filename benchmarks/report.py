"""Target rows and tables: printed as the suite goes, then written as JSON and markdown."""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

_OPS = {
    "<=": lambda m, t: m <= t,
    "<": lambda m, t: m < t,
    ">=": lambda m, t: m >= t,
    ">": lambda m, t: m > t,
}


@dataclass
class Row:
    """One measured figure, with its target when the issue sets one.

    Attributes:
        section: the section it belongs to (e.g. ``"1 reference"``).
        name: what was measured.
        measured: the figure (None when skipped).
        unit: its unit, e.g. ``"x"`` for a ratio or ``"ms"``.
        target: the bound, or None for an informational row.
        op: how ``measured`` must compare to ``target``: ``<=``, ``<``, ``>=`` or ``>``.
        detail: how it was measured, the spread, anything that helps read it.
        skipped: why it was not measured, if it was not.
    """

    section: str
    name: str
    measured: float | None
    unit: str = ""
    target: float | None = None
    op: str = "<="
    detail: str = ""
    skipped: str | None = None

    @property
    def status(self) -> str:
        if self.skipped is not None or self.measured is None or not math.isfinite(self.measured):
            return "SKIP"
        if self.target is None:
            return "info"
        return "PASS" if _OPS[self.op](self.measured, self.target) else "MISS"

    @property
    def margin(self) -> str:
        """How far from the target: headroom when met, the excess when missed (absolute and relative)."""
        if self.status not in ("PASS", "MISS"):
            return ""
        assert self.measured is not None and self.target is not None
        gap = self.measured - self.target
        rel = abs(gap) / abs(self.target) * 100 if self.target else float("inf")
        if self.status == "PASS":
            return f"headroom {fmt(abs(gap))}{self.unit} ({rel:.0f}%)"
        word = "over" if self.op in ("<=", "<") else "short"
        return f"{word} by {fmt(abs(gap))}{self.unit} ({rel:.0f}%)"

    def measured_text(self) -> str:
        if self.status == "SKIP":
            return "-"
        assert self.measured is not None
        return f"{fmt(self.measured)}{self.unit}"

    def target_text(self) -> str:
        return "-" if self.target is None else f"{self.op} {fmt(self.target)}{self.unit}"


@dataclass
class Table:
    """A free-form table (scaling sweeps, per-run breakdowns)."""

    section: str
    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)


def fmt(value: float) -> str:
    """Three significant figures, without scientific notation for everyday magnitudes."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    if magnitude >= 0.001:
        return f"{value:.3f}"
    return f"{value:.2e}"


def _text_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(esc(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


_ROW_HEADERS = ["target row", "measured", "target", "status", "margin", "how / spread"]


def _row_cells(row: Row) -> list[str]:
    detail = row.skipped if row.status == "SKIP" and row.skipped else row.detail
    return [row.name, row.measured_text(), row.target_text(), row.status, row.margin, detail]


class Report:
    """Collects rows, tables and notes per section; prints each section as it completes."""

    def __init__(self, meta: dict) -> None:
        self.meta = {**meta, "python": platform.python_version(), "machine": platform.machine()}
        self.rows: list[Row] = []
        self.tables: list[Table] = []
        self.notes: dict[str, list[str]] = {}
        self.sections: list[str] = []

    def section(self, name: str) -> str:
        if name not in self.sections:
            self.sections.append(name)
        print(f"\n=== {name} ===", flush=True)
        return name

    def row(self, row: Row) -> Row:
        self.rows.append(row)
        print(f"  [{row.status}] {row.name}: {row.measured_text()} (target {row.target_text()}) {row.margin}".rstrip())
        if row.status == "SKIP" and row.skipped:
            print(f"         skipped: {row.skipped}")
        elif row.detail:
            print(f"         {row.detail}")
        return row

    def table(self, table: Table) -> Table:
        self.tables.append(table)
        print(f"\n  {table.title}")
        print("  " + _text_table(table.headers, table.rows).replace("\n", "\n  "))
        return table

    def note(self, section: str, text: str) -> None:
        self.notes.setdefault(section, []).append(text)
        print(f"  note: {text}", flush=True)

    # ------------------------------------------------------------------ output

    def summary_text(self) -> str:
        rows = [_row_cells(r) for r in self.rows]
        counts = {s: sum(r.status == s for r in self.rows) for s in ("PASS", "MISS", "info", "SKIP")}
        head = ", ".join(f"{n} {s}" for s, n in counts.items())
        return f"SUMMARY ({head})\n" + _text_table(_ROW_HEADERS, rows)

    def markdown(self) -> str:
        parts = ["# FPN Explorer benchmarks", ""]
        parts += [f"- {k}: {v}" for k, v in self.meta.items()]
        parts.append("")
        for section in self.sections:
            parts += [f"## {section}", ""]
            rows = [_row_cells(r) for r in self.rows if r.section == section]
            if rows:
                parts += [_md_table(_ROW_HEADERS, rows), ""]
            for table in (t for t in self.tables if t.section == section):
                parts += [f"**{table.title}**", "", _md_table(table.headers, table.rows), ""]
            for note in self.notes.get(section, []):
                parts.append(f"- {note}")
            parts.append("")
        parts += ["## Summary", "", "```", self.summary_text(), "```", ""]
        return "\n".join(parts)

    def as_json(self) -> dict:
        return {
            "meta": self.meta,
            "rows": [{**asdict(r), "status": r.status, "margin": r.margin} for r in self.rows],
            "tables": [asdict(t) for t in self.tables],
            "notes": self.notes,
        }

    def write(self, out_dir: Path, stem: str) -> tuple[Path, Path]:
        """Write ``<stem>.md`` and ``<stem>.json`` into ``out_dir``; returns both paths."""
        out_dir.mkdir(parents=True, exist_ok=True)
        md, js = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
        md.write_text(self.markdown(), encoding="utf-8")
        js.write_text(json.dumps(self.as_json(), indent=2), encoding="utf-8")
        return md, js
