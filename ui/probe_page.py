"""The scale probe page: which level responds inside each object, the paper's assignment rule, stride grids."""

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import streamlit as st

from fpn_core.figures import line_figure
from fpn_core.levels import hex_color, stride_of
from fpn_core.paper import LEVEL_RULE_LATEX
from fpn_core.probe import (
    GRID_TEXT,
    RANDOM_WEIGHTS_TEXT,
    READING_TEXT,
    SCALES_TEXT,
    assign_level_k,
    box_responses,
    scale_boxes,
    stride_grid,
)
from fpn_core.scales import Box
from ui import cache, loading, panels
from ui import settings as S

PROBE_SCALES, PROBE_OWN = "Scales image (known boxes)", "Sidebar image (your boxes)"
PROBE_SOURCES: tuple[str, ...] = (PROBE_SCALES, PROBE_OWN)
BOX_COLUMNS: tuple[str, ...] = ("label", "x0", "y0", "x1", "y1")
BOX_COLOUR = (235, 90, 20)


def default_boxes(width: int, height: int) -> pd.DataFrame:
    """Two starting boxes for a user's image: the central half and a small central box."""
    cx, cy = width // 2, height // 2
    rows = [
        {"label": "centre half", "x0": width // 4, "y0": height // 4, "x1": 3 * width // 4, "y1": 3 * height // 4},
        {
            "label": "small centre",
            "x0": cx - width // 16,
            "y0": cy - height // 16,
            "x1": cx + width // 16,
            "y1": cy + height // 16,
        },
    ]
    return pd.DataFrame(rows, columns=list(BOX_COLUMNS))


def parse_boxes(
    table: pd.DataFrame | Sequence[Mapping[str, object]], width: int, height: int
) -> tuple[list[Box], list[str]]:
    """Validate boxes typed by a user, in original-image pixels.

    Args:
        table: rows with ``label, x0, y0, x1, y1`` (a DataFrame or a list of dicts).
        width: the image's width in pixels.
        height: the image's height in pixels.

    Returns:
        The valid boxes, and one message per refused row (row number and why).
    """
    rows = table.to_dict("records") if isinstance(table, pd.DataFrame) else [dict(r) for r in table]
    boxes: list[Box] = []
    problems: list[str] = []
    for i, row in enumerate(rows, start=1):
        values = [row.get(c) for c in ("x0", "y0", "x1", "y1")]
        if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            continue  # an empty row the editor just added
        try:
            x0, y0, x1, y1 = (float(v) for v in values)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            problems.append(f"Row {i}: every corner needs a number (x0, y0, x1, y1).")
            continue
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            problems.append(f"Row {i}: every corner needs a number (x0, y0, x1, y1).")
            continue
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            problems.append(
                f"Row {i}: need 0 ≤ x0 < x1 ≤ {width} and 0 ≤ y0 < y1 ≤ {height} (the image is {width} × {height} px), "
                f"got ({x0:g}, {y0:g}, {x1:g}, {y1:g})."
            )
            continue
        raw_label = row.get("label")
        label = (
            str(raw_label).strip()
            if raw_label is not None and str(raw_label).strip() not in ("", "nan", "None")
            else f"box {i}"
        )
        if any(b.label == label for b in boxes):
            label = f"{label} (row {i})"
        boxes.append(Box(label, round(x0), round(y0), round(x1), round(y1)))
    return boxes, problems


def probe_table(rows: Sequence[Mapping[str, object]], levels: Sequence[str]) -> list[dict[str, object]]:
    """One row per box: size, the paper's k and level, the strongest level, and each level's response."""
    out: dict[str, dict[str, object]] = {}
    for row in rows:
        label = str(row["box"])
        entry = out.setdefault(
            label,
            {
                "box": label,
                "size √(wh), px": round(float(row["size_px"]), 1),  # type: ignore[arg-type]
                "paper k": None,
                "paper level": row["rule_level"],
                "strongest level": row["strongest"],
                "agree": "✓" if row["rule_level"] == row["strongest"] else "✗",
            },
        )
        x0, y0, x1, y1 = row["xyxy"]  # type: ignore[misc]
        if x1 > x0 and y1 > y0:
            entry["paper k"] = assign_level_k(x1 - x0, y1 - y0)
        entry[str(row["level"])] = round(float(row["relative"]), 2)  # type: ignore[arg-type]
    return [out[k] for k in out if all(level in out[k] for level in levels)]


@st.fragment
def show_probe_page(settings: S.Settings) -> None:
    """The "Scale probe" page below its title; its own widgets rerun only this fragment."""
    source = st.segmented_control("Probe on", PROBE_SOURCES, default=PROBE_SCALES, key=S.KEY_PROBE_SOURCE)
    if source == PROBE_OWN:
        if settings.image is None:
            loading.choose_image_prompt("Then enter its boxes here.")
            return
        chosen = settings.image
        image, digest, name = chosen.array, chosen.digest, chosen.name
        h, w = image.shape[:2]
        st.markdown(
            f"Enter boxes in the pixels of **{name}** as loaded ({w} × {h} px): one row per object, "
            "`x0, y0` top-left, `x1, y1` bottom-right (exclusive). Add rows at the bottom of the table."
        )
        table = st.data_editor(
            default_boxes(w, h),
            num_rows="dynamic",
            key=f"{S.KEY_PROBE_BOXES}_{digest[:12]}",
            column_config={
                "label": st.column_config.TextColumn("label"),
                **{c: st.column_config.NumberColumn(c, min_value=0, step=1, format="%d") for c in BOX_COLUMNS[1:]},
            },
            width=620,
        )
        boxes, problems = parse_boxes(table, w, h)
        for problem in problems:
            st.warning(problem)
    else:
        loaded = cache.load_scales()
        chosen = S.ImageChoice("scales (synthetic)", loaded.digest, loaded.image)
        image, digest = loaded.image, loaded.digest
        boxes = list(cache.scales_boxes())
        st.markdown(SCALES_TEXT)
    if not boxes:
        st.info("No valid box to probe yet.")
        return
    analysis = loading.load_analysis(settings, image=chosen)
    if analysis is None:
        return
    net_image = analysis.output.image
    scaled = scale_boxes(boxes, image.shape[:2], net_image.shape[:2])
    levels = analysis.output.levels
    rows = box_responses(levels, scaled, net_image.shape[:2], aggregation=settings.style.aggregation)
    table = probe_table(rows, list(levels))
    nh, nw = net_image.shape[:2]
    st.subheader("Which level responds most strongly inside each object?")
    st.latex(LEVEL_RULE_LATEX)
    st.caption(
        f"The paper's rule (eq. 1), clamped to the levels present among p2..p5. Sizes are in the pixels of the "
        f"network input ({nw} × {nh} px; the boxes were scaled from the image). Per-level columns: mean response "
        "inside the box in standard deviations above that level's average (comparable across levels)."
    )
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        column_config={
            "agree": st.column_config.TextColumn("rule = strongest?"),
            **{level: st.column_config.NumberColumn(f"{level} response", format="%.2f") for level in levels},
        },
    )
    left, right = st.columns([3, 2], gap="large")
    with right:
        agree = sum(1 for r in table if r["agree"] == "✓")
        st.markdown(f"The strongest level matches the paper's rule for **{agree} of {len(table)}** boxes.")
        st.markdown(READING_TEXT)
        if not analysis.model.provenance.pretrained:
            st.caption(RANDOM_WEIGHTS_TEXT)
    with left:
        order = sorted(range(len(table)), key=lambda i: float(table[i]["size √(wh), px"]))  # type: ignore[arg-type]
        sizes = [float(table[i]["size √(wh), px"]) for i in order]  # type: ignore[arg-type]
        series = {level: [float(table[i][level]) for i in order] for level in levels}  # type: ignore[arg-type]
        title = "Response per level vs object size"
        st.markdown(f"**{title}**")
        chart = pd.DataFrame(series, index=pd.Index(sizes, name="object size √(w·h), px"))
        st.line_chart(
            chart,
            x_label="object size √(w·h), px in the network input",
            y_label="response (std above level mean)",
            color=[hex_color(level) for level in chart.columns],
        )
        panels.download_button(
            panels.Download(
                line_figure,
                (sizes, series),
                {
                    "title": title,
                    "xlabel": "object size √(w·h), px in the network input",
                    "ylabel": "response (std above level mean)",
                    "logx": len(set(sizes)) == len(sizes) and min(sizes) > 0,
                },
                file_name="probe_response_vs_size.png",
                key="download_probe_lines",
            ),
            settings.export_scale,
        )
    _show_stride_grids(analysis, scaled, settings.export_scale)


def _show_stride_grids(analysis: cache.Analysis, boxes: Sequence[Box], export_scale: int) -> None:
    """One image per level with its stride grid (one cell per feature-map position) and the boxes."""
    st.subheader("What stride means: one cell per feature-map position")
    st.caption(GRID_TEXT)
    net_image = analysis.output.image
    corners = [(b.x0, b.y0, max(b.x1 - 1, b.x0), max(b.y1 - 1, b.y0)) for b in boxes]  # x1, y1 exclusive
    with_boxes = panels.draw_boxes(net_image, corners, [BOX_COLOUR] * len(corners), width=2)
    levels = list(analysis.output.levels.items())
    per_row = 2
    for start in range(0, len(levels), per_row):
        cols = st.columns(per_row, gap="medium")
        for col, (name, tensor) in zip(cols, levels[start : start + per_row], strict=False):
            fh, fw = (int(s) for s in tensor.shape[-2:])
            stride = stride_of(name)
            grid = stride_grid(with_boxes, stride, feature_hw=(fh, fw), color=(255, 255, 255), alpha=0.75)
            with col:
                panels.show_image(
                    grid,
                    caption=f"{name} · stride {stride} · grid {fw} × {fh} = {fw * fh} cells",
                    download_name=f"stride_grid_{name}.png",
                    scale=export_scale,
                    key=f"download_grid_{name}",
                )
