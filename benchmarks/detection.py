"""Section: a full detection at 800 px against torchvision's own detector, same image and weights.

The reference is torchvision's own builder of each of the eight detectors (``spec.builder``:
``fasterrcnn_resnet50_fpn`` … ``keypointrcnn_resnet50_fpn``) with ``weights=None,
weights_backbone=None`` (``BatchNorm2d`` in eval mode, one fused pass per norm:
a faster baseline than the trained models' ``FrozenBatchNorm2d``), with random BatchNorm statistics
so that the fold is really exercised. Its state dict is saved and loaded by
``fpn_core.detection.build_detector``, so both sides carry the same tensors. Both run at
torchvision's input size (shorter side 800) on the same photo: the reference on the prepared
float tensor, ours from the uint8 image through ``detect`` (conversion, transform, backbone,
FPN, heads, level tracing, copying the results to the CPU).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .measure import Context, paired, sample_images
from .report import Row, Table, fmt

SECTION = "detection vs torchvision"
TARGET = 0.9


def build_reference_detector(name: str, seed: int = 0) -> nn.Module:
    """torchvision's detector (eval) with seeded random weights and random BatchNorm statistics."""
    from torchvision.models import detection

    from fpn_core.detectors import DETECTORS

    builder = getattr(detection, DETECTORS[name].builder)
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG as it was
        torch.manual_seed(seed)
        model = builder(weights=None, weights_backbone=None)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=gen) * 0.8 + 0.6)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=gen) * 1.5 + 0.5)
    return model.eval().requires_grad_(False)


def _pair(ctx: Context, name: str):
    from fpn_core.detection import build_detector

    ref = build_reference_detector(name)
    with tempfile.TemporaryDirectory(prefix="fpn-bench-det-") as tmp:
        path = Path(tmp) / f"{name}-reference.pth"
        torch.save(ref.state_dict(), path)
        ours = build_detector(weights=str(path), device=ctx.device, allow_download=False)  # the file alone
    assert ours.provenance.source == "local file" and ours.spec.name == name, ours.provenance
    return ref.to(ctx.device), ours


def run(ctx: Context) -> None:
    """Target: a full detection at 800 px <= 0.9x torchvision's model, with the same detections."""
    from fpn_core.detection import DETECTOR_NAMES, detect

    rep = ctx.report
    rep.section(SECTION)
    image = sample_images()[0]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div(255).to(ctx.device)
    names = ("faster-rcnn",) if ctx.quick else DETECTOR_NAMES
    table = Table(
        SECTION,
        "torchvision vs ours, full detection at shorter side 800 (median ms; ratio = median of per-pair ours/ref)",
        ["detector", "input", "ref ms", "ours ms", "ratio", "detections", "max score diff", "spread"],
    )
    for name in names:
        ref, ours = _pair(ctx, name)

        def run_ref(ref=ref):
            with torch.inference_mode():
                return ref([x])[0]

        def run_ours(ours=ours):
            return detect(ours, image, 0.0)

        expected, got = run_ref(), run_ours()
        n = min(len(got), len(expected["scores"]))
        diff = float((got.scores[:n] - expected["scores"][:n].cpu()).abs().max()) if n else 0.0
        res = paired(run_ref, run_ours, pairs=ctx.pairs, warmup=ctx.warmup, device=ctx.device)
        h, w = got.input_hw
        rep.row(
            Row(
                SECTION,
                f"{name} at 800 px: full detection / torchvision's model",
                res.ratio,
                "x",
                TARGET,
                "<=",
                f"ref {fmt(res.a)} ms, ours {fmt(res.b)} ms on {w}x{h}; {res.spread()}",
            )
        )
        rep.row(
            Row(
                SECTION,
                f"{name}: detections ours vs torchvision (score >= 0.05)",
                float(len(got) - len(expected["scores"])),
                "",
                0.0,
                "<=",
                f"{len(got)} vs {len(expected['scores'])}; max score difference in rank order {diff:.1e}",
            )
        )
        table.rows.append(
            [name, f"{w}x{h}", fmt(res.a), fmt(res.b), fmt(res.ratio), str(len(got)), f"{diff:.1e}", res.spread()]
        )
    rep.table(table)
    rep.note(
        SECTION,
        "ours folds BatchNorm into the convolutions and runs channels_last; the reference is torchvision's "
        "model as built with weights=None (BatchNorm2d, contiguous) and gets a prepared float tensor",
    )
