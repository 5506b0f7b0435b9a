"""The architecture diagram of a live pyramid: Graphviz DOT source (the home page draws it), or a matplotlib figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .levels import FeatureInfo, level_above, level_below, level_of, stride_of
from .pyramid import PyramidConfig, PyramidOutput

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DiagramShapes", "architecture_dot", "architecture_figure"]

_NODE_STYLE = {
    "stage": 'fillcolor="#DCE8F7", color="#6B8BB5"',
    "unused": 'fillcolor="#F7F7F7", color="#C5CCD6", fontcolor="#8A99AD"',
    "conv": 'fillcolor="#FFF4DB", color="#C9A227"',
    "level": 'fillcolor="#DDF2E3", color="#3C8D5A"',
    "merge": 'shape=circle, fillcolor="#FFFFFF", width=0.4, fixedsize=true',
}


@dataclass(frozen=True)
class DiagramShapes:
    """The shapes a diagram labels (each ``(N, C, H, W)``).

    Attributes:
        input_hw: the network input's height and width.
        stages: ``c1..c5``.
        levels: the pyramid's output levels ``p*``.
        top_down: level -> the upsampled map entering it, where a top-down path enters.
    """

    input_hw: tuple[int, int]
    stages: Mapping[str, Sequence[int]]
    levels: Mapping[str, Sequence[int]]
    top_down: Mapping[str, Sequence[int]]

    @classmethod
    def of(cls, out: PyramidOutput) -> DiagramShapes:
        """The shapes of one analysis."""
        h, w = out.image.shape[:2]
        return cls(
            input_hw=(int(h), int(w)),
            stages={name: tuple(t.shape) for name, t in out.stages.items()},
            levels={name: tuple(t.shape) for name, t in out.levels.items()},
            top_down={level: tuple(s.top_down.shape) for level, s in out.steps.items() if s.top_down is not None},
        )


def _node(name: str, label: str, style: str) -> str:
    return f'  {name} [label="{label}", {_NODE_STYLE[style]}];'


def _chw(shape: Sequence[int]) -> str:
    """``"512 × 64 × 64"``: channels × height × width."""
    return " × ".join(str(int(s)) for s in shape[-3:])


def architecture_dot(config: PyramidConfig, info: FeatureInfo, shapes: DiagramShapes) -> str:
    """A Graphviz DOT diagram of the pyramid, with real shapes for one image.

    One row per level, coarse at the top: the backbone stage c_k, its lateral 1x1 conv, the
    merge with the upsampled map from the row above, the 3x3 conv and the output p_k; p6 above.
    Shapes are channels × height × width.

    Args:
        config: the pyramid.
        info: the backbone's feature info (names each stage's module).
        shapes: the shapes computed for the chosen image (``DiagramShapes.of(out)``).
    """
    d = config.out_channels
    stages, levels = shapes.stages, shapes.levels
    h, w = shapes.input_hw
    up = f"2× {config.upsample}"
    merge = "+" if config.merge == "sum" else "mean"
    lines = [
        "digraph FPN {",
        "  rankdir=BT; nodesep=0.3; ranksep=0.35; newrank=true;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10, color="#55657A"];',
        _node("img", f"image\\n3 × {h} × {w}", "unused").replace("#8A99AD", "#1F2933"),
    ]
    prev = "img"
    for name in ("c1", "c2", "c3", "c4", "c5"):
        label = f"{name} ({info[name].module})\\n{_chw(stages[name])}\\nstride {stride_of(name)}"
        lines += [_node(name, label, "stage" if name in config.stages else "unused"), f"  {prev} -> {name};"]
        prev = name
    top = config.stages[-1]
    for stage in config.stages:
        level = level_of(stage)
        row = [stage, f"lat_{level}"]
        lines.append(_node(f"lat_{level}", f"1×1 conv\\n{int(stages[stage][1])} → {d}", "conv"))
        lines.append(f"  {stage} -> lat_{level};")
        src = f"lat_{level}"
        if stage != top and level in shapes.top_down:
            above = f"m_{level_above(level)}"
            lines.append(_node(f"m_{level}", merge, "merge"))
            lines.append(f"  lat_{level} -> m_{level};")
            lines.append(
                f'  {above} -> m_{level} [label=" {up}\\n {_chw(shapes.top_down[level])}", '
                'color="#2F6DB5", fontcolor="#2F6DB5", constraint=false];'
            )
            src = f"m_{level}"
            row.append(src)
        elif stage == top:
            lines.append(f'  m_{level} [label="", shape=point, width=0.06];')
            lines.append(f"  lat_{level} -> m_{level} [arrowhead=none];")
            src = f"m_{level}"
            row.append(src)
        if level in levels:
            lines.append(_node(f"conv_{level}", f"3×3 conv\\n{d} → {d}", "conv"))
            label = f"{level}\\n{_chw(levels[level])}\\nstride {stride_of(level)}"
            lines += [f"  {src} -> conv_{level};", _node(level, label, "level"), f"  conv_{level} -> {level};"]
            row += [f"conv_{level}", level]
        lines.append(f"  {{rank=same; {'; '.join(row)};}}")
    inputs = {level_of(s) for s in config.stages}
    for name in (n for n in levels if n not in inputs):
        label = f"{name}\\n{_chw(levels[name])}\\nstride {stride_of(name)}"
        lines.append(_node(name, label, "level"))
        lines.append(f'  {level_below(name)} -> {name} [label=" subsample ×2\\n (max_pool k=1, s=2)"];')
    lines.append("}")
    return "\n".join(lines)


_FIG_STYLE = {
    "stage": ("#DCE8F7", "#6B8BB5", "#1F2933"),
    "unused": ("#F7F7F7", "#C5CCD6", "#8A99AD"),
    "conv": ("#FFF4DB", "#C9A227", "#1F2933"),
    "level": ("#DDF2E3", "#3C8D5A", "#1F2933"),
    "merge": ("#FFFFFF", "#55657A", "#1F2933"),
}


def architecture_figure(config: PyramidConfig, info: FeatureInfo, shapes: DiagramShapes) -> Figure:
    """The same diagram as :func:`architecture_dot`, drawn with matplotlib (no Graphviz needed).

    Rows are the stages c1..c5 bottom to top (the image below them) and, beside each stage the
    FPN reads, its lateral 1×1 conv, the merge with the map coming down from the row above, the
    3×3 conv and the output p_k; p6 sits above p5. Shapes are channels × height × width.

    Args:
        config: the pyramid.
        info: the backbone's feature info (names each stage's module).
        shapes: the shapes computed for the chosen image (``DiagramShapes.of(out)``).

    Returns:
        The figure (``matplotlib.figure.Figure``, no pyplot), 12.5 × 6 inches.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    d = config.out_channels
    h, w = shapes.input_hw
    fig = Figure(figsize=(12.5, 6.0), facecolor="white")
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(-1.2, 13.2)
    ax.set_ylim(-1.6, 5.6)
    ax.axis("off")
    col = {"stage": 0.0, "lateral": 3.4, "merge": 5.7, "conv": 8.0, "level": 11.0}

    def node(x: float, y: float, text: str, style: str, size: float = 10.0) -> None:
        face, edge, ink = _FIG_STYLE[style]
        shape = "circle,pad=0.35" if style == "merge" else "round,pad=0.4"
        ax.text(
            x, y, text, ha="center", va="center", fontsize=size, color=ink,
            bbox={"boxstyle": shape, "facecolor": face, "edgecolor": edge, "linewidth": 1.2},
        )  # fmt: skip

    def arrow(x0: float, y0: float, x1: float, y1: float, color: str = "#55657A", label: str = "") -> None:
        ax.annotate(
            "", xy=(x1, y1), xytext=(x0, y0),
            arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 1.3, "shrinkA": 0, "shrinkB": 0},
        )  # fmt: skip
        if label:
            ax.text((x0 + x1) / 2 + 0.15, (y0 + y1) / 2, label, fontsize=8.5, color=color, ha="left", va="center")

    node(col["stage"], -1.0, f"image\n3 × {h} × {w}", "unused")
    below = -1.0
    for k, name in enumerate(("c1", "c2", "c3", "c4", "c5")):
        y = float(k)
        style = "stage" if name in config.stages else "unused"
        node(
            col["stage"],
            y,
            f"{name} ({info[name].module})\n{_chw(shapes.stages[name])} · stride {stride_of(name)}",
            style,
        )
        arrow(col["stage"], below + 0.3, col["stage"], y - 0.3)
        below = y
    top = config.stages[-1]
    merge = "+" if config.merge == "sum" else "mean"
    for stage in config.stages:
        level = level_of(stage)
        y = float(int(stage[1]) - 1)
        node(col["lateral"], y, f"1×1 conv\n{int(shapes.stages[stage][1])} → {d}", "conv")
        arrow(col["stage"] + 1.55, y, col["lateral"] - 0.95, y)
        src_x = col["lateral"] + 0.95
        if stage != top and level in shapes.top_down:
            node(col["merge"], y, merge, "merge", size=11)
            arrow(src_x, y, col["merge"] - 0.35, y)
            arrow(
                col["merge"], y + 0.72, col["merge"], y + 0.3, "#2F6DB5",
                f"2× {config.upsample}\n{_chw(shapes.top_down[level])}",
            )  # fmt: skip
            src_x = col["merge"] + 0.35
        if level in shapes.levels:
            node(col["conv"], y, f"3×3 conv\n{d} → {d}", "conv")
            arrow(src_x, y, col["conv"] - 0.9, y)
            node(col["level"], y, f"{level}\n{_chw(shapes.levels[level])} · stride {stride_of(level)}", "level")
            arrow(col["conv"] + 0.9, y, col["level"] - 1.4, y)
    inputs = {level_of(s) for s in config.stages}
    for name in (n for n in shapes.levels if n not in inputs):
        y = float(int(name[1]) - 1)
        node(col["level"], y, f"{name}\n{_chw(shapes.levels[name])} · stride {stride_of(name)}", "level")
        arrow(col["level"], y - 0.7, col["level"], y - 0.3, label="subsample ×2 (max_pool k=1, s=2)")
    stacked = [level_of(s) for s in config.stages]
    for upper, lower in zip(stacked[1:], stacked[:-1], strict=False):
        if lower in shapes.top_down:  # the merged map of the row above goes down
            y = float(int(upper[1]) - 1)
            x = col["merge"] if upper != level_of(top) else col["lateral"] + 1.2
            ax.plot([x, col["merge"]], [y - 0.05, y - 0.28], color="#2F6DB5", linewidth=1.3)
    return fig
