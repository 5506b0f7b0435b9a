"""Section 1: a full analysis against torchvision's ``BackboneWithFPN`` with the same weights.

The reference is ``resnet_fpn_backbone("resnet50", weights=None, trainable_layers=0)``:
ResNet-50 with ``FrozenBatchNorm2d`` and torchvision's FPN with ``LastLevelMaxPool``, width 256,
stages c2..c5. Its frozen BatchNorm statistics are drawn at random (they are the identity at
init, which would let a broken fold pass), its FPN biases too, and the same tensors are saved as a
detection-format file that the engine loads. Both sides then see the same image at the same size.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .measure import Context, paired, square_image
from .report import Row, Table, fmt

SECTION = "1 full analysis vs torchvision reference"
REF_STAGES: tuple[str, ...] = ("c2", "c3", "c4", "c5")
#: torchvision's output keys and our level names for stages c2..c5 with p6.
KEY_TO_LEVEL = OrderedDict([("0", "p2"), ("1", "p3"), ("2", "p4"), ("3", "p5"), ("pool", "p6")])
MAX_REL_ERR = 1e-3


def build_reference(seed: int = 0) -> nn.Module:
    """torchvision's ResNet-50-FPN (eval) with random conv weights and random frozen-BN statistics."""
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.misc import FrozenBatchNorm2d

    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
        torch.manual_seed(seed)
        ref = resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=0)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in ref.modules():
            if isinstance(m, FrozenBatchNorm2d):
                n = m.weight.numel()
                m.weight.copy_(torch.rand(n, generator=gen) * 0.8 + 0.6)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
            elif isinstance(m, nn.Conv2d) and m.bias is not None:  # the FPN's convs
                m.bias.copy_(torch.randn(m.bias.numel(), generator=gen) * 0.1)
    return ref.eval().requires_grad_(False)


def save_detection_file(ref: nn.Module, path: Path) -> Path:
    """Save the reference as torchvision detection checkpoints name it (``backbone.body.*``, ``backbone.fpn.*``)."""
    state = {f"backbone.body.{k}": v for k, v in ref.body.state_dict().items()}
    state.update({f"backbone.fpn.{k}": v for k, v in ref.fpn.state_dict().items()})
    torch.save(state, path)
    return path


def reference_pair(ctx: Context):
    """The reference module and our ``Pyramid`` loaded from the same tensors (built once per run)."""
    if "reference_pair" in ctx.cache:
        return ctx.cache["reference_pair"]
    from fpn_core import PyramidConfig, build_pyramid

    ref = build_reference()
    with tempfile.TemporaryDirectory(prefix="fpn-bench-") as tmp:
        path = save_detection_file(ref, Path(tmp) / "reference_fpn.pth")
        config = PyramidConfig(weights=str(path), stages=REF_STAGES, out_channels=256, p6=True, device=str(ctx.device))
        ours = build_pyramid(config, allow_download=False)
        plain = build_pyramid(
            PyramidConfig(weights=str(path), stages=REF_STAGES, p6=True, device=str(ctx.device), optimize=False),
            allow_download=False,
        )
    assert ours.provenance.source == "local file" and ours.provenance.fpn_pretrained, ours.provenance
    ref = ref.to(ctx.device)
    ctx.cache["reference_pair"] = (ref, ours, plain)
    return ref, ours, plain


def reference_input(image: np.ndarray, ours, device: torch.device) -> Tensor:
    """The normalized input the reference sees (``image`` is already at the analysis size), NCHW."""
    from fpn_core.images import to_tensor

    return to_tensor(image, ours.backbone.mean, ours.backbone.std).to(device)


def relative_errors(ref_out: dict[str, Tensor], levels: dict[str, Tensor]) -> dict[str, float]:
    """max |ours - ref| / max |ref| per level."""
    errs = {}
    for key, level in KEY_TO_LEVEL.items():
        r, o = ref_out[key].float(), levels[level].float()
        assert r.shape == o.shape, (key, r.shape, o.shape)
        errs[level] = float((o - r).abs().max() / r.abs().max().clamp_min(1e-30))
    return errs


def run(ctx: Context) -> None:
    """Target 1: our full analysis (with its per-level timing) <= 0.85x the reference, equal outputs."""
    from fpn_core import run_pyramid

    rep = ctx.report
    rep.section(SECTION)
    ref, ours, plain = reference_pair(ctx)
    sizes = (224,) if ctx.quick else (224, 512, 800)
    table = Table(
        SECTION,
        "reference vs ours (median ms; ratio = median of per-pair ours/ref)",
        ["size", "ref ms", "ours ms", "ratio", "max rel err", "spread"],
    )
    for size in sizes:
        image = square_image(size)
        x = reference_input(image, ours, ctx.device)

        def run_ref(x=x):
            with torch.inference_mode():
                return ref(x)

        def run_ours(image=image, size=size):
            return run_pyramid(ours, image, size=size)

        with torch.inference_mode():
            errs = relative_errors(ref(x), run_ours().levels)
        worst = max(errs.values())
        res = paired(run_ref, run_ours, pairs=ctx.pairs, warmup=ctx.warmup, device=ctx.device)
        per_level = ", ".join(f"{k} {v:.1e}" for k, v in errs.items())
        rep.row(
            Row(
                SECTION,
                f"{size} px: full analysis / reference",
                res.ratio,
                "x",
                0.85,
                "<=",
                f"ref {fmt(res.a)} ms, ours {fmt(res.b)} ms (run_pyramid with StepTimer); {res.spread()}",
            )
        )
        rep.row(Row(SECTION, f"{size} px: max relative error over p2..p6", worst, "", MAX_REL_ERR, "<=", per_level))
        table.rows.append([str(size), fmt(res.a), fmt(res.b), fmt(res.ratio), f"{worst:.1e}", res.spread()])
    rep.table(table)

    # What the load-time optimization buys: the same engine with optimize=False (no fold, NCHW).
    size = 224 if ctx.quick else 512
    image = square_image(size)
    res = paired(
        lambda: run_pyramid(plain, image, size=size),
        lambda: run_pyramid(ours, image, size=size),
        pairs=ctx.pairs,
        warmup=ctx.warmup,
        device=ctx.device,
    )
    rep.row(
        Row(
            SECTION,
            f"{size} px: optimize=True / optimize=False (BN fold + channels_last)",
            res.ratio,
            "x",
            detail=f"optimize=False {fmt(res.a)} ms, optimize=True {fmt(res.b)} ms; {res.spread()}",
        )
    )
    rep.note(
        SECTION,
        "the reference times a prepared NCHW tensor; ours includes resize-copy, normalization, "
        "the device slot, StepTimer and result assembly (run_pyramid), so the comparison favours the reference",
    )
