"""Names, strides and channel widths of backbone stages and pyramid levels.

This is the one place where level names are defined: backbone stages are ``c1..c5``
(stride ``2**k``), pyramid levels are ``p2..p6`` (stride ``2**k``), and torchvision's
``'0'..'3', 'pool'`` output keys are translated here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

#: ResNet-50 stages that can feed the FPN, fine to coarse.
FPN_STAGES: tuple[str, ...] = ("c2", "c3", "c4", "c5")
#: The early/middle/late stages of the original design.
DEFAULT_STAGES: tuple[str, ...] = ("c3", "c4", "c5")

#: One RGB color per pyramid level, used wherever a level is named (boxes, bars, legends).
LEVEL_COLORS: dict[str, tuple[int, int, int]] = {
    "p2": (230, 75, 53),  # red: finest, smallest objects
    "p3": (245, 160, 30),  # orange
    "p4": (60, 170, 80),  # green
    "p5": (50, 120, 200),  # blue
    "p6": (140, 80, 180),  # purple
    "p7": (120, 120, 120),  # grey: coarsest
}
#: One RGB color per backbone stage, used wherever a stage is named (contributions, legends).
STAGE_COLORS: dict[str, tuple[int, int, int]] = {
    "c1": (150, 150, 150),
    "c2": (214, 39, 40),
    "c3": (31, 119, 180),
    "c4": (44, 160, 44),
    "c5": (255, 127, 14),
}


def color_of(name: str) -> tuple[int, int, int]:
    """The app-wide RGB color of a level ``p2..p7`` or a stage ``c1..c5``."""
    table = LEVEL_COLORS if name.startswith("p") else STAGE_COLORS
    if name not in table:
        raise ValueError(f"no color for {name!r}; expected one of {', '.join([*STAGE_COLORS, *LEVEL_COLORS])}")
    return table[name]


def hex_color(name: str) -> str:
    """The color of a level or stage as ``"#rrggbb"`` (for matplotlib and markdown)."""
    return "#{:02x}{:02x}{:02x}".format(*color_of(name))


def stage_index(name: str) -> int:
    """Return k for a stage ``ck`` or a level ``pk`` (stride is ``2**k``).

    Raises:
        ValueError: if ``name`` is not of the form ``c<k>`` or ``p<k>``.
    """
    if len(name) == 2 and name[0] in "cp" and name[1].isdigit():
        return int(name[1])
    raise ValueError(f"expected a stage name like 'c3' or a level like 'p3', got {name!r}")


def level_of(stage: str) -> str:
    """The pyramid level built from a stage: ``c3`` -> ``p3``."""
    return f"p{stage_index(stage)}"


def level_name(k: int) -> str:
    """The pyramid level of stride ``2**k``: ``3`` -> ``p3``."""
    return f"p{int(k)}"


def level_above(level: str) -> str:
    """The next coarser level: ``p5`` -> ``p6``."""
    return level_name(stage_index(level) + 1)


def level_below(level: str) -> str:
    """The next finer level: ``p6`` -> ``p5``."""
    return level_name(stage_index(level) - 1)


def step_key(level: str, step: str) -> str:
    """The name of one FPN step of a level in timings and counts: ``("p3", "lateral")`` -> ``"p3.lateral"``."""
    return f"{level}.{step}"


def level_of_step(key: str) -> str:
    """The level a step belongs to: ``"p3.lateral"`` -> ``"p3"``; a stage or level name stays as it is."""
    return key.split(".", 1)[0]


def step_of(key: str) -> str:
    """The step part of a step's name: ``"p3.lateral"`` -> ``"lateral"``."""
    return key.split(".", 1)[1]


def stage_of(level: str) -> str:
    """The stage a pyramid level is built from: ``p3`` -> ``c3``."""
    return f"c{stage_index(level)}"


def stride_of(name: str) -> int:
    """Stride in input pixels of a stage or level: ``c3`` and ``p3`` -> 8."""
    return 2 ** stage_index(name)


def torchvision_key_to_level(key: str, stages: Sequence[str]) -> str:
    """Translate an output key of torchvision's FPN into our level name.

    torchvision's FPN names each output by its input's key (``'0'..'3'`` from
    ``IntermediateLayerGetter``, or our stage names) and the extra max-pool level ``'pool'``.
    With ``stages=('c2','c3','c4','c5')`` the keys ``'0'..'3','pool'`` are ``p2..p6``.
    """
    if key == "pool":
        return f"p{stage_index(stages[-1]) + 1}"
    if key.isdigit():
        return level_of(stages[int(key)])
    return level_of(key)


def validate_stages(stages: Sequence[str]) -> tuple[str, ...]:
    """Check that ``stages`` is a contiguous run of two or more of ``c2..c5``, fine to coarse.

    Raises:
        ValueError: naming the bad value.
    """
    stages = tuple(stages)
    if len(stages) < 2 or any(s not in FPN_STAGES for s in stages):
        raise ValueError(f"stages must be two or more of {', '.join(FPN_STAGES)}, got {', '.join(stages) or 'none'}")
    first = FPN_STAGES.index(stages[0])
    if stages != FPN_STAGES[first : first + len(stages)]:
        raise ValueError(f"stages must be a contiguous run, fine to coarse (e.g. c3,c4,c5), got {','.join(stages)}")
    return stages


@dataclass(frozen=True)
class FeatureSpec:
    """One recorded feature map: its name, the module that makes it, channels and stride."""

    name: str
    module: str
    num_chs: int
    reduction: int


class FeatureInfo(Sequence[FeatureSpec]):
    """Channel and stride metadata a model exposes (after timm's ``feature_info``)."""

    def __init__(self, specs: Sequence[FeatureSpec]) -> None:
        self._specs = tuple(specs)
        self._by_name = {s.name: s for s in self._specs}

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, str):
            return self._by_name[index]
        return self._specs[index]

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self) -> Iterator[FeatureSpec]:
        return iter(self._specs)

    def __repr__(self) -> str:
        return f"FeatureInfo({', '.join(f'{s.name}:{s.num_chs}/{s.reduction}' for s in self)})"

    def names(self) -> list[str]:
        return [s.name for s in self._specs]

    def channels(self, names: Sequence[str] | None = None) -> list[int]:
        return [self[n].num_chs for n in (names or self.names())]

    def reduction(self, names: Sequence[str] | None = None) -> list[int]:
        return [self[n].reduction for n in (names or self.names())]
