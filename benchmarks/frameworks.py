"""Issue 19: opening a ~160 MB mmdetection or detectron2 checkpoint, against the 3 s target.

Four files of the size of a published R50-FPN Faster R-CNN (ResNet-50, FPN and the heads'
tensors, random weights) are written in each layout: mmdetection v2 (the old non-zip
serialization, read whole), mmdetection v3 and a detectron2 ``.pth`` (zip, memory-mapped), and a
detectron2 model-zoo ``.pkl`` (numpy arrays through the restricted unpickler). The figure is the
median of ``read_framework_checkpoint`` (load, check, map the names); building the pyramid from
the record is reported beside it. The files were just written, so they are in the page cache:
this measures the reader, not the disk.
"""

from __future__ import annotations

import pickle
import statistics
import tempfile
import time
from pathlib import Path

import torch

from .measure import Context, wait_for_quiet
from .report import Row

SECTION = "opening mmdetection and detectron2 checkpoints (issue 19)"
TARGET_S = 3.0


def _checkpoint_tensors() -> tuple[dict, dict, dict]:
    """ResNet-50 (torchvision names), the FPN convs, and head tensors: about 160 MB of float32 in all."""
    from torchvision.models import resnet50

    resnet = {k: v for k, v in resnet50(weights=None).state_dict().items() if not k.startswith("fc.")}
    gen = torch.Generator().manual_seed(0)
    fpn = {}
    for i, c in enumerate((256, 512, 1024, 2048)):
        fpn[f"lateral{i}"] = (torch.randn(256, c, 1, 1, generator=gen), torch.zeros(256))
        fpn[f"output{i}"] = (torch.randn(256, 256, 3, 3, generator=gen), torch.zeros(256))
    heads = {
        "rpn_conv": torch.randn(256, 256, 3, 3, generator=gen),
        "shared_fc0": torch.randn(1024, 256 * 7 * 7, generator=gen),
        "shared_fc1": torch.randn(1024, 1024, generator=gen),
        "fc_cls": torch.randn(81, 1024, generator=gen),
        "fc_reg": torch.randn(320, 1024, generator=gen),
    }
    return resnet, fpn, heads


def _d2_name(key: str) -> str:
    if not key.startswith("layer"):
        key = "stem." + key
    for t in (1, 2, 3, 4):
        key = key.replace(f"layer{t}", f"res{t + 1}")
    for t in (1, 2, 3):
        key = key.replace(f"bn{t}", f"conv{t}.norm")
    return "backbone.bottom_up." + key.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")


def write_files(folder: Path) -> dict[str, Path]:
    """The four layouts of one ~160 MB checkpoint."""
    resnet, fpn, heads = _checkpoint_tensors()
    mm = {f"backbone.{k}": v for k, v in resnet.items()}
    d2 = {_d2_name(k): v for k, v in resnet.items() if not k.endswith("num_batches_tracked")}
    for i in range(4):
        (lw, lb), (ow, ob) = fpn[f"lateral{i}"], fpn[f"output{i}"]
        mm.update({f"neck.lateral_convs.{i}.conv.weight": lw, f"neck.lateral_convs.{i}.conv.bias": lb})
        mm.update({f"neck.fpn_convs.{i}.conv.weight": ow, f"neck.fpn_convs.{i}.conv.bias": ob})
        d2.update({f"backbone.fpn_lateral{i + 2}.weight": lw, f"backbone.fpn_lateral{i + 2}.bias": lb})
        d2.update({f"backbone.fpn_output{i + 2}.weight": ow, f"backbone.fpn_output{i + 2}.bias": ob})
    mm.update({f"roi_head.bbox_head.{k}.weight": v for k, v in heads.items()})
    d2.update({f"roi_heads.box_head.{k}.weight": v for k, v in heads.items()})
    classes = tuple(f"class {i}" for i in range(80))
    paths = {
        "mmdetection v2 (old serialization)": folder / "mmdet_v2.pth",
        "mmdetection v3 (zip, mmap)": folder / "mmdet_v3.pth",
        "detectron2 .pth (zip, mmap)": folder / "d2_final.pth",
        "detectron2 zoo .pkl (numpy pickle)": folder / "d2_zoo.pkl",
    }
    v2 = {"meta": {"mmdet_version": "2.28.2", "CLASSES": classes}, "state_dict": mm}
    torch.save(v2, paths["mmdetection v2 (old serialization)"], _use_new_zipfile_serialization=False)
    v3 = {"meta": {"mmdet_version": "3.3.0", "dataset_meta": {"classes": classes}}, "state_dict": mm}
    torch.save(v3, paths["mmdetection v3 (zip, mmap)"])
    torch.save({"model": d2, "iteration": 89999}, paths["detectron2 .pth (zip, mmap)"])
    with paths["detectron2 zoo .pkl (numpy pickle)"].open("wb") as fh:
        pickle.dump({"model": {k: v.numpy() for k, v in d2.items()}, "__author__": "Detectron2 Model Zoo"}, fh)
    return paths


def _median_s(fn, runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        wait_for_quiet(0.5, window_s=0.1)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def run(ctx: Context) -> None:
    """Time opening each layout (target <= 3 s) and building the pyramid from it (information)."""
    from fpn_core.frameworks import build_framework_pyramid, read_framework_checkpoint
    from fpn_core.pyramid import PyramidConfig

    rep = ctx.report
    rep.section(SECTION)
    runs = 3 if ctx.quick else 5
    config = PyramidConfig(device=str(ctx.device))
    with tempfile.TemporaryDirectory(prefix="fpn-frameworks-") as tmp:
        for label, path in write_files(Path(tmp)).items():
            mb = path.stat().st_size / 1e6
            opened, times = _median_s(lambda path=path: read_framework_checkpoint(path), runs)
            spread = ", ".join(f"{t:.2f}" for t in times)
            rep.row(
                Row(
                    SECTION,
                    f"{label}, {mb:.0f} MB: open (read_framework_checkpoint)",
                    opened,
                    " s",
                    target=TARGET_S,
                    detail=f"median of {runs} runs ({spread} s); file in the page cache",
                )
            )
            record = read_framework_checkpoint(path)
            built, _ = _median_s(lambda record=record: build_framework_pyramid(record, config), max(1, runs - 2))
            rep.row(Row(SECTION, f"{label}: build the pyramid from the record", built, " s", detail="BatchNorm folded"))
