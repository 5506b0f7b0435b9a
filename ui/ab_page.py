"""The A/B comparison page: two configurations side by side, their difference per level, the paper's ablations."""

from collections.abc import Iterator, Mapping
from dataclasses import replace

import numpy as np
import streamlit as st

from fpn_core import ABLATIONS, FPN_STAGES, Provenance, PyramidConfig
from fpn_core.compare import PRESETS, compare_levels
from fpn_core.levels import stride_of, validate_stages
from fpn_core.maps import MapRange, map_range
from fpn_core.paper import TABLE1_SOURCE, ablation_label, ablation_note, table1_rows
from fpn_core.weights import COCO, how_to_place
from ui import cache, frame, loading, panels, sidebar
from ui import settings as S

SIDES: tuple[str, ...] = ("a", "b")
NO_PRESET = "(none: set both sides yourself)"


def ab_key(side: str, field: str) -> str:
    """The widget key of one side's field, e.g. ``ab_a_out_channels``."""
    return f"{S.KEY_AB_PREFIX}{side}_{field}"


def sidebar_fields(settings: S.Settings) -> dict[str, object]:
    """The A/B fields as the sidebar sets them (each side's default)."""
    config = settings.config
    return {
        "out_channels": config.out_channels,
        "stages": list(config.stages),
        "upsample": config.upsample,
        "merge": config.merge,
        "weights": config.weights,
        "ablation": "full",
    }


def preset_fields(preset: str, base: Mapping[str, object]) -> tuple[dict[str, object], dict[str, object]]:
    """Side A's and B's fields for a preset of ``fpn_core.compare.PRESETS``, on top of ``base``."""
    changes_a, changes_b = PRESETS[preset]
    side_a = {**base, **changes_a}
    side_b = {**base, **changes_b}
    return side_a, side_b


def _apply_preset() -> None:
    """on_change of the preset box: write the preset's values into both sides' widgets."""
    preset = st.session_state.get(S.KEY_AB_PRESET)
    if preset not in PRESETS:
        return
    base = sidebar_fields(frame.read_settings())
    for side, fields in zip(SIDES, preset_fields(preset, base), strict=True):
        for field, value in fields.items():
            st.session_state[ab_key(side, field)] = value


#: Each side's fields and the sidebar control each is drawn from (``ui.settings.controls``).
SIDEBAR_CONTROLS: dict[str, str] = {
    "out_channels": S.KEY_OUT_CHANNELS,
    "stages": S.KEY_STAGES,
    "upsample": S.KEY_UPSAMPLE,
    "merge": S.KEY_MERGE,
    "weights": S.KEY_WEIGHTS,
}
#: The ablation, which the sidebar does not offer (the Step by step and A/B pages do).
ABLATION_CONTROL = S.Control(
    "ablation", "Ablation", "select", "full", tuple(ABLATIONS), labels={a: ablation_label(a) for a in ABLATIONS}
)
#: Fields drawn side by side in one row.
PAIRED = ("upsample", "merge")


def side_controls(side: str) -> dict[str, S.Control]:
    """One side's controls, by field: the sidebar's (and the ablation's) under the side's own keys."""
    table = sidebar.table()
    controls = {field: table[key] for field, key in SIDEBAR_CONTROLS.items()}
    controls["ablation"] = ABLATION_CONTROL
    return {field: replace(c, key=ab_key(side, field), check=None) for field, c in controls.items()}


def _side_widgets(
    side: str, base: Mapping[str, object], settings: S.Settings
) -> tuple[PyramidConfig | None, dict[str, object]]:
    """One side's widgets (defaults from the sidebar); its configuration, or None when invalid."""
    for field, value in base.items():
        st.session_state.setdefault(ab_key(side, field), value)
    fields: dict[str, object] = {}
    row: Iterator[object] | None = None  # the paired fields' columns, made where the first one goes
    for field, control in side_controls(side).items():
        if field in PAIRED:
            row = row or iter(st.columns(len(PAIRED)))
        fields[field] = sidebar.draw(control, next(row) if row is not None and field in PAIRED else st)
    ablation, stages = fields["ablation"], fields["stages"]
    st.caption(ablation_note(str(ablation)))
    ordered = tuple(s for s in FPN_STAGES if s in stages)  # type: ignore[operator]
    try:
        validate_stages(ordered)
    except ValueError:
        st.error(f"Pick a contiguous run of two or more stages; {', '.join(ordered) or 'nothing'} is not.")
        return None, fields
    return (
        PyramidConfig(
            out_channels=int(fields["out_channels"]),  # type: ignore[call-overload]
            stages=ordered,
            upsample=str(fields["upsample"]),
            merge=str(fields["merge"]),
            ablation=str(ablation),
            weights=str(fields["weights"]),
            p6=settings.config.p6,
            device=settings.config.device,
        ),
        fields,
    )


def describe_config(config: PyramidConfig) -> str:
    """``"d = 256 · c2..c5 · nearest · sum · imagenet · full"``."""
    return (
        f"d = {config.out_channels} · {config.stages[0]}..{config.stages[-1]} · {config.upsample} · "
        f"{config.merge} · {config.weights} · {config.ablation}"
    )


def coco_missing_note(side: str, provenance: Provenance, out_channels: int) -> str:
    """Why a side that asked for the COCO FPN runs without it, and how to place the file."""
    if out_channels != 256:
        why = f"trained FPN weights exist only at width 256 (this side has d = {out_channels})"
    else:
        why = f"the COCO Faster R-CNN file `{COCO.filename}` was not found"
    return (
        f"**Side {side.upper()} asks for the COCO-trained FPN, but {why}.** This preset compares a trained FPN "
        f"with a random one, so it needs that file. {how_to_place(COCO)} Then press *Try again* (or restart "
        f"the app). Until then side {side.upper()} runs with "
        f"{provenance.backbone} and a random FPN."
    )


@st.fragment
def show_ab_page(settings: S.Settings) -> None:
    """The "A/B comparison" page below its title; its own widgets rerun only this fragment."""
    base = sidebar_fields(settings)
    st.selectbox(
        "Preset",
        (NO_PRESET, *PRESETS),
        key=S.KEY_AB_PRESET,
        on_change=_apply_preset,
        help="Sets both sides for a classic comparison; change any widget afterwards.",
        width=420,
    )
    with st.expander("What the paper measured for each ablation (Table 1)"):
        st.dataframe(table1_rows(), hide_index=True, width="content")
        st.caption(TABLE1_SOURCE + ". Higher is better. The maps here show what changes, not accuracy.")
    columns = st.columns(2, gap="large", border=True)
    configs: dict[str, PyramidConfig | None] = {}
    for side, col in zip(SIDES, columns, strict=True):
        with col:
            st.subheader(f"Side {side.upper()}")
            configs[side], _ = _side_widgets(side, base, settings)
    if settings.image is None:
        loading.choose_image_prompt()
        return
    analyses: dict[str, cache.Analysis | None] = {}
    for side, col in zip(SIDES, columns, strict=True):
        config = configs[side]
        if config is None:
            analyses[side] = None
            continue
        with col:
            analysis = loading.load_analysis(settings, config)
            analyses[side] = analysis
            if analysis is None:
                continue
            prov = analysis.model.provenance
            st.caption(f"Runs: {describe_config(config)}. Weights: {prov.summary()}.")
            if config.weights == "coco-fpn" and not prov.fpn_pretrained:
                st.info(coco_missing_note(side, prov, config.out_channels), icon=":material/info:")
            elif not prov.pretrained:
                st.caption("⚠️ Random backbone weights: the maps show an untrained network.")
    a, b = analyses.get("a"), analyses.get("b")
    if a is None or b is None:
        st.warning("Both sides need a valid configuration to be compared.")
        return
    if a.model.config == b.model.config:
        st.info("Both sides are the same configuration, so the difference is zero: pick a preset or change one side.")
    shared_backbone = a.output.backbone is b.output.backbone
    st.caption(
        "Both sides reuse one backbone pass (same image, size, weights and device): only the FPNs differ."
        if shared_backbone
        else "The sides use different backbone weights, so each ran its own backbone."
    )
    _show_difference(settings, a, b)


def _show_difference(settings: S.Settings, a: cache.Analysis, b: cache.Analysis) -> None:
    """Maps of both sides, their standardized difference per level, and a statistics table."""
    comparisons = compare_levels(a.output.levels, b.output.levels, aggregation=settings.style.aggregation)
    st.header("Difference per level")
    if not comparisons:
        st.warning("The two sides share no pyramid level (e.g. different stages, or finest-only on one side).")
        return
    st.markdown(
        "Each level's map is reduced over channels; **B − A** is taken after standardizing each map (zero mean, "
        "unit std), so a change of width or weight scale does not swamp the change of pattern. Red: B stronger, "
        "blue: A stronger."
    )
    style, label = settings.style, settings.aggregation_label
    for side, analysis, maps in (("A", a, [c.a for c in comparisons]), ("B", b, [c.b for c in comparisons])):
        shared = map_range(maps)
        rngs = [shared if style.scope == "shared" else map_range([m]) for m in maps]
        suptitle = f"Side {side}: {describe_config(analysis.model.config)}"
        st.markdown(f"#### {suptitle}")
        panels.show_maps_row(
            [(f"{c.level} (stride {stride_of(c.level)})", m, "") for c, m in zip(comparisons, maps, strict=True)],
            [panels.ColorScale(style.colormap, r, label) for r in rngs],
            suptitle=suptitle,
            file_name=f"ab_side_{side.lower()}.png",
            export_scale=settings.export_scale,
            key=f"download_ab_{side.lower()}",
        )
    limit = max(float(np.abs(c.difference).max()) for c in comparisons)
    limit = limit if limit > 0 else 1.0
    diff_scale = panels.ColorScale("RdBu_r", MapRange(-limit, limit), "B − A (std units)")
    title = "Standardized difference B − A per level (one symmetric scale)"
    st.markdown(f"#### {title}")
    panels.show_maps_row(
        [(f"{c.level}: B − A", c.difference, "") for c in comparisons],
        [diff_scale] * len(comparisons),
        suptitle=title,
        file_name="ab_difference.png",
        export_scale=settings.export_scale,
        key="download_ab_difference",
    )
    rows = [{"level": c.level, **c.stats} for c in comparisons]
    st.dataframe(
        rows,
        hide_index=True,
        width="stretch",
        column_config={
            name: st.column_config.NumberColumn(name, format="%.3f")
            for name in ("A mean", "B mean", "A std", "B std", "correlation", "mean |difference| (std units)")
        },
    )
    st.caption(
        "Correlation 1: the same pattern up to scale. Mean |difference| in std units: 0 is identical, about 1.1 "
        "is unrelated patterns."
    )
