"""The Feature Pyramid Network: torchvision's module, with the steps recorded for teaching.

``FPN`` subclasses ``torchvision.ops.FeaturePyramidNetwork`` and adds no parameters,
so its state dict is interchangeable with torchvision's (COCO-trained Faster R-CNN FPN weights
load as they are). With default options its forward is exactly torchvision's.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from . import packed
from .backbone import RESNET50_FEATURE_INFO
from .levels import level_above, level_name, level_of, stage_index, step_key
from .timing import NULL_RECORDER, Recorder

UPSAMPLE_MODES: tuple[str, ...] = ("nearest", "bilinear")
MERGE_MODES: tuple[str, ...] = ("sum", "mean")
#: The ablations of the FPN paper's Table 1.
ABLATIONS: dict[str, str] = {
    "full": "Full FPN: lateral 1x1, top-down path, 3x3 smoothing",
    "no-top-down": "No top-down path (bottom-up pyramid): each level is the 3x3 of its lateral alone",
    "no-lateral": "Top-down path without lateral connections: only the top level enters through a 1x1",
    "finest-only": "Single finest level only: the full top-down path, output at the finest level alone",
}
MIN_OUT_CHANNELS, MAX_OUT_CHANNELS = 16, 512
#: What the FPN outputs page says the levels are, and how its rows follow one level (the deck's notes too).
LEVELS_INTRO = "Every pyramid level p_k has the same width d, at strides 4 … 64."
STEPS_INTRO = (
    "Each row follows one level: the backbone stage c_k, its **lateral 1×1** projection to d channels, "
    "the **upsampled** map coming down from the level above, and the output **p_k** after the 3×3 conv."
)


def validate_out_channels(out_channels: int) -> int:
    """Check an FPN width: a multiple of 8 from 16 to 512.

    Raises:
        ValueError: naming the bad value.
    """
    if not (
        isinstance(out_channels, int) and MIN_OUT_CHANNELS <= out_channels <= MAX_OUT_CHANNELS and out_channels % 8 == 0
    ):
        raise ValueError(
            f"out_channels must be a multiple of 8 from {MIN_OUT_CHANNELS} to {MAX_OUT_CHANNELS}, got {out_channels!r}"
        )
    return out_channels


def fpn_parameters(stages: Sequence[str], out_channels: int) -> int:
    """Parameters of the FPN on ResNet-50's ``stages``: per stage a 1x1 lateral (C·d + d) and a
    3x3 output conv (9·d² + d); the top-down path and p6 have none."""
    d = out_channels
    return sum(c * d + d + 9 * d * d + d for c in RESNET50_FEATURE_INFO.channels(stages))


def _check_choice(name: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


@dataclass
class LevelSteps:
    """What happened at one pyramid level, fine maps (N, C, H, W).

    Attributes:
        lateral: the 1x1 lateral conv of c_k (None where the ablation skips it).
        top_down: the coarser merged map upsampled to this size (None at the top level).
        merged: lateral and top-down combined (sum or mean): the input of the 3x3.
        output: p_k, the 3x3 conv of ``merged`` (None where the ablation outputs nothing).
    """

    lateral: Tensor | None
    top_down: Tensor | None
    merged: Tensor
    output: Tensor | None


class FPN(FeaturePyramidNetwork):
    """torchvision's FPN with upsampling, merge and ablation options and recorded steps.

    Args:
        in_channels_list: channels of each input map, fine to coarse.
        out_channels: the pyramid's channel width d.
        extra_blocks: e.g. ``LastLevelMaxPool()`` for p6 (stride-2 subsampling of the top level), or
            torchvision's ``LastLevelP6P7`` (RetinaNet, FCOS: p6 and p7 by stride-2 3×3 convs).
        norm_layer: torchvision's norm layer in every lateral and output convolution (the v2 R-CNNs:
            ``nn.BatchNorm2d``); None for plain convolutions with a bias.
        upsample: ``"nearest"`` (the paper, torchvision) or ``"bilinear"``.
        merge: ``"sum"`` (the paper) or ``"mean"``.
        ablation: one of ``ABLATIONS``.
        seed: re-initialize the convolutions from this seed (torchvision's init, own generator),
            so the same width and seed give the same weights in every process.
    """

    def __init__(
        self,
        in_channels_list: list[int],
        out_channels: int,
        extra_blocks: ExtraFPNBlock | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
        *,
        upsample: str = "nearest",
        merge: str = "sum",
        ablation: str = "full",
        seed: int | None = None,
    ) -> None:
        if seed is None:
            super().__init__(in_channels_list, out_channels, extra_blocks, norm_layer)
        else:
            # Every tensor is drawn anew from the seed below: build on the meta device, so that
            # torchvision's own two inits (the convolution's and the FPN's) are not drawn for nothing
            # (they were two thirds of building an FPN, which a width step on the slider does).
            with torch.device("meta"):
                super().__init__(in_channels_list, out_channels, extra_blocks, norm_layer)
            self.to_empty(device="cpu")
        self.upsample = _check_choice("upsample", upsample, UPSAMPLE_MODES)
        self.merge = _check_choice("merge", merge, MERGE_MODES)
        self.ablation = _check_choice("ablation", ablation, tuple(ABLATIONS))
        if seed is not None:
            self.reset_parameters(seed)

    def reset_parameters(self, seed: int) -> None:
        """torchvision's init (``kaiming_uniform_(a=1)``, zero bias) drawn from a seeded generator;
        norm layers (the v2 R-CNNs' BatchNorm) start as their own ``reset_parameters`` leaves them."""
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_uniform_(m.weight, a=1, generator=gen)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif m is not self and callable(getattr(m, "reset_parameters", None)):
                    m.reset_parameters()

    def forward(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.forward_steps(x)[0]

    def get_result_from_inner_blocks(self, x: Tensor, idx: int) -> Tensor:
        """torchvision's, with the lateral convolution packed (``fpn_core.packed``: same outputs)."""
        return packed.run(self.inner_blocks[idx], x)

    def get_result_from_layer_blocks(self, x: Tensor, idx: int) -> Tensor:
        """torchvision's, with the 3x3 convolution packed (``fpn_core.packed``: same outputs)."""
        return packed.run(self.layer_blocks[idx], x)

    def output_levels(self, input_levels: Sequence[str]) -> list[str]:
        """The levels this FPN outputs for inputs at ``input_levels`` (fine to coarse): one per input, then
        one per level its extra block adds above the top (max-pool: p6; P6/P7: p6, p7)."""
        if self.ablation == "finest-only":
            return [input_levels[0]]
        top = stage_index(input_levels[-1])
        return [*input_levels, *(level_name(top + 1 + i) for i in range(extra_level_count(self.extra_blocks)))]

    def _top_down(self, coarse: Tensor, size: torch.Size) -> Tensor:
        if self.upsample == "nearest":
            return F.interpolate(coarse, size=size, mode="nearest")
        return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)

    def _combine(self, lateral: Tensor, top_down: Tensor) -> Tensor:
        merged = lateral + top_down
        return merged * 0.5 if self.merge == "mean" else merged

    def forward_steps(
        self,
        x: dict[str, Tensor],
        recorder: Recorder = NULL_RECORDER,
        level_names: Sequence[str] | None = None,
    ) -> tuple[OrderedDict[str, Tensor], list[LevelSteps]]:
        """Compute the pyramid and keep every intermediate step.

        Args:
            x: input maps, fine to coarse (torchvision's convention; output keys are its keys).
            recorder: times or counts the steps ``<level>.lateral``, ``<level>.top_down``,
                ``<level>.output``, and ``<extra>.pool`` (max-pool P6) or ``p6.extra`` and ``p7.extra``
                (P6/P7 convolutions, each timed on its own).
            level_names: names for the recorder's steps, one per input plus one for the first extra
                level (default: the input keys and ``"pool"``, or ``"p6"`` for P6/P7).

        Returns:
            The outputs (torchvision's keys and order) and one ``LevelSteps`` per input level.
        """
        names = list(x.keys())
        feats = list(x.values())
        n = len(feats)
        step_names = list(level_names) if level_names is not None else names
        steps: list[LevelSteps | None] = [None] * n
        ablation = self.ablation

        # Top level: only a lateral enters; no top-down input exists above it.
        with recorder.step(step_key(step_names[n - 1], "lateral")):
            last_inner = self.get_result_from_inner_blocks(feats[-1], -1)
        steps[-1] = LevelSteps(lateral=last_inner, top_down=None, merged=last_inner, output=None)

        for idx in range(n - 2, -1, -1):
            name = step_names[idx]
            lateral = None
            if ablation != "no-lateral":
                with recorder.step(step_key(name, "lateral")):
                    lateral = self.get_result_from_inner_blocks(feats[idx], idx)
            if ablation == "no-top-down":
                assert lateral is not None
                steps[idx] = LevelSteps(lateral=lateral, top_down=None, merged=lateral, output=None)
                continue
            with recorder.step(step_key(name, "top_down")):
                size = feats[idx].shape[-2:]
                top_down = self._top_down(last_inner, size)
                last_inner = top_down if lateral is None else self._combine(lateral, top_down)
            steps[idx] = LevelSteps(lateral=lateral, top_down=top_down, merged=last_inner, output=None)

        # 3x3 smoothing, coarse to fine as torchvision does; finest-only smooths just one level.
        outputs_idx = [0] if ablation == "finest-only" else list(range(n - 1, -1, -1))
        results: dict[int, Tensor] = {}
        for idx in outputs_idx:
            step = steps[idx]
            assert step is not None
            with recorder.step(step_key(step_names[idx], "output")):
                step.output = results[idx] = self.get_result_from_layer_blocks(step.merged, idx)

        out_names = [names[i] for i in sorted(results)]
        out_maps = [results[i] for i in sorted(results)]
        block = self.extra_blocks
        first = step_names[n] if len(step_names) > n else None
        if isinstance(block, LastLevelP6P7) and ablation != "finest-only":
            # torchvision's LastLevelP6P7.forward, one step per level (P6P7 subclasses may drop the ReLU).
            p6_name = first or "p6"
            with recorder.step(step_key(p6_name, "extra")):
                p6 = packed.run(block.p6, out_maps[-1] if block.use_P5 else feats[-1])
            with recorder.step(step_key(level_above(p6_name) if first else "p7", "extra")):
                p7 = packed.run(block.p7, F.relu(p6) if getattr(block, "relu_before_p7", True) else p6)
            out_maps, out_names = [*out_maps, p6, p7], [*out_names, "p6", "p7"]
        elif block is not None and ablation != "finest-only":
            with recorder.step(step_key(first or "pool", "pool")):
                out_maps, out_names = block(out_maps, feats, out_names)
        return OrderedDict(zip(out_names, out_maps, strict=True)), [s for s in steps if s is not None]


def build_extra_block(p6: bool) -> ExtraFPNBlock | None:
    """``LastLevelMaxPool`` (torchvision's p6: ``max_pool2d(kernel_size=1, stride=2)``, a subsampling)."""
    return LastLevelMaxPool() if p6 else None


def extra_steps(block: nn.Module | None, top_stage: str) -> dict[str, tuple[str, str, nn.Module | None]]:
    """Each level an extra block adds above ``top_stage``'s level: its step, what it does, its module.

    ``LastLevelMaxPool``: ``{"p6": ("pool", "subsample p5 by 2 ...", None)}``; ``LastLevelP6P7`` (and
    subclasses with ``relu_before_p7``): P6 and P7 as 3x3 stride-2 convolutions, step ``"extra"``.
    """
    if block is None:
        return {}
    top = level_of(top_stage)
    p6 = level_above(top)
    if isinstance(block, LastLevelP6P7):
        relu = " after a ReLU" if getattr(block, "relu_before_p7", True) else ""
        return {
            p6: ("extra", f"3x3 stride-2 conv on {top if block.use_P5 else top_stage}", block.p6),
            level_above(p6): ("extra", f"3x3 stride-2 conv on {p6}{relu}", block.p7),
        }
    return {p6: ("pool", f"subsample {top} by 2 (torchvision max_pool2d kernel 1, stride 2)", None)}


def extra_level_count(block: nn.Module | None) -> int:
    """How many levels an extra block adds above the top one: ``LastLevelP6P7`` 2, ``LastLevelMaxPool`` 1."""
    if block is None:
        return 0
    return 2 if isinstance(block, LastLevelP6P7) else 1


def extra_block_of(state: Mapping[str, Tensor]) -> ExtraFPNBlock:
    """The extra block a trained FPN state dict (torchvision's keys, without ``backbone.fpn.``) carries:
    ``LastLevelP6P7`` with the input width its ``p6`` conv reads (256: from P5; 2048: from C5), else
    ``LastLevelMaxPool``, which has no parameters."""
    p6 = state.get("extra_blocks.p6.weight")
    if p6 is None:
        return LastLevelMaxPool()
    return LastLevelP6P7(int(p6.shape[1]), int(p6.shape[0]))


def norm_layer_of(state: Mapping[str, Tensor]) -> Callable[..., nn.Module] | None:
    """The norm layer of a trained FPN's convolutions: BatchNorm when its laterals carry running statistics
    (torchvision's v2 R-CNNs), else None."""
    return nn.BatchNorm2d if "inner_blocks.0.1.running_var" in state else None
