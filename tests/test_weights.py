"""Weights resolution on files the tests make themselves: cache, local file, COCO, download, fallbacks.

No test here skips the load: each one runs the real loading code on a real file.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import time
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

import fpn_core.weights as weights
from fpn_core import PyramidConfig, assemble_pyramid, build_backbone
from fpn_core.weights import WeightFile, WeightsError, load_state_dict_file
from tests.conftest import malicious_checkpoint, named_by_hash


def _use_record(monkeypatch, key: str, filename: str) -> WeightFile:
    """Point the registry's record ``key`` at a test file name (its hash prefix is the test file's)."""
    wf = dataclasses.replace(weights.WEIGHT_FILES[key], filename=filename, url="https://invalid.example/none")
    monkeypatch.setitem(weights.WEIGHT_FILES, key, wf)
    return wf


def _resnet_state(seed: int = 7) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = resnet50()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


def test_cache_file_loads_without_network(hub, monkeypatch):
    state = _resnet_state()
    path = hub / "tmp.pth"
    torch.save(state, path)
    path = named_by_hash(path, "resnet50")
    _use_record(monkeypatch, "imagenet", path.name)
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not download"))
    bb = build_backbone("imagenet", optimize=False)
    assert bb.provenance.pretrained and bb.provenance.source == "torch hub cache"
    assert bb.provenance.path == str(path) and not bb.provenance.fallbacks
    assert torch.equal(bb.layer3[2].conv2.weight, state["layer3.2.conv2.weight"])
    assert torch.equal(bb.layer3[2].bn2.running_var, state["layer3.2.bn2.running_var"])


def test_absent_file_without_network_falls_back_quickly_with_reason(hub, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    t0 = time.monotonic()
    bb = build_backbone("imagenet", allow_download=True)
    assert time.monotonic() - t0 < 15
    prov = bb.provenance
    assert not prov.pretrained and prov.source == "random init"
    reasons = " ".join(prov.fallbacks)
    assert "not in the torch hub cache" in reasons and "could not download" in reasons
    assert str(hub / "resnet50-11ad3fa6.pth") in reasons  # says where to place it by hand


def test_stalled_download_times_out_instead_of_hanging(hub, monkeypatch):
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: time.sleep(30))
    t0 = time.monotonic()
    with pytest.raises(WeightsError, match="no answer in 1 s"):
        weights.download(weights.IMAGENET, dest_dir=hub, timeout=1.0)
    assert time.monotonic() - t0 < 5


def test_downloads_off_falls_back_and_says_so(hub, monkeypatch):
    monkeypatch.setenv(weights.ALLOW_DOWNLOAD_ENV, "0")
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: pytest.fail("must not download"))
    bb = build_backbone("imagenet")
    assert any("downloads are off" in r for r in bb.provenance.fallbacks)


def test_hash_mismatch_in_cache_is_refused(hub, monkeypatch):
    torch.save(_resnet_state(), hub / "resnet50-11ad3fa6.pth")  # real name, wrong content
    bb = build_backbone("imagenet", allow_download=False)
    assert not bb.provenance.pretrained
    assert any("does not match the hash 11ad3fa6" in r for r in bb.provenance.fallbacks)


def test_corrupt_file_gives_clear_error(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(_resnet_state(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_state_dict_file(path)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        load_state_dict_file(tmp_path / "empty.pth")
    with pytest.raises(WeightsError, match="does not exist"):
        load_state_dict_file(tmp_path / "missing.pth")


def test_wrong_shapes_give_clear_message(hub, tmp_path):
    state = _resnet_state()
    state["layer1.0.conv1.weight"] = torch.zeros(3, 3, 1, 1)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    bb = build_backbone(str(path), allow_download=False)
    assert not bb.provenance.pretrained
    assert any("does not fit ResNet-50" in r and "layer1.0.conv1.weight" in r for r in bb.provenance.fallbacks)
    del state["layer1.0.conv1.weight"]
    torch.save(state, path)
    bb = build_backbone(str(path), allow_download=False)
    assert any("missing keys" in r for r in bb.provenance.fallbacks)


@pytest.mark.parametrize("where", ["hub cache", "operator file", "coco file"])
def test_malicious_pickle_never_runs(hub, tmp_path, monkeypatch, where):
    marker = tmp_path / "pwned"
    if where == "hub cache":
        path = named_by_hash(malicious_checkpoint(hub / "x.pth", marker), "resnet50")  # passes the hash check
        _use_record(monkeypatch, "imagenet", path.name)
        requested, operator_file = "imagenet", None
    elif where == "operator file":
        path = malicious_checkpoint(tmp_path / "operator.pth", marker)
        requested, operator_file = "imagenet", str(path)
    else:
        path = named_by_hash(malicious_checkpoint(hub / "x.pth", marker), "fasterrcnn_resnet50_fpn_coco")
        _use_record(monkeypatch, "coco-fpn", path.name)
        requested, operator_file = "coco-fpn", None
    bb = build_backbone(requested, allow_download=False, operator_file=operator_file)
    assert not marker.exists(), "the pickle payload ran"
    assert not bb.provenance.pretrained
    assert any("refused" in r and str(path) in r for r in bb.provenance.fallbacks), bb.provenance.fallbacks
    # and the unsafe loader would have run it: the test's payload is real
    with path.open("rb") as fh:
        pickle.load(fh)
    assert marker.exists()


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_operator_file_comes_first(hub, tmp_path, monkeypatch, wrapper):
    state = _resnet_state(seed=11)
    path = tmp_path / "mine.pth"
    torch.save({wrapper: state}, path)
    bb = build_backbone("imagenet", allow_download=False, optimize=False, operator_file=str(path))
    assert bb.provenance.source == "local file" and bb.provenance.path == str(path)
    assert torch.equal(bb.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])


def _detector_file(hub: Path, state: dict[str, torch.Tensor], stem: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """A detector checkpoint in the hub cache under its torchvision name; returns it and its FPN tensors."""
    path = hub / "detector.pth"
    torch.save(state, path)
    fpn = {k.removeprefix("backbone.fpn."): v for k, v in state.items() if k.startswith("backbone.fpn.")}
    return named_by_hash(path, stem), fpn


def _coco_file(hub: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    body = {k: v for k, v in _resnet_state(seed=5).items() if not k.startswith("fc.")}
    body = {k: v for k, v in body.items() if not k.endswith("num_batches_tracked")}  # FrozenBatchNorm has none
    torch.manual_seed(6)
    fpn = FeaturePyramidNetwork([256, 512, 1024, 2048], 256, LastLevelMaxPool()).state_dict()
    state = {**{f"backbone.body.{k}": v for k, v in body.items()}, **{f"backbone.fpn.{k}": v for k, v in fpn.items()}}
    state["rpn.head.conv.0.0.weight"] = torch.zeros(1)  # the rest of a detector is ignored
    return _detector_file(hub, state, "fasterrcnn_resnet50_fpn_coco")


def test_coco_weights_give_a_trained_fpn_at_width_256_only(hub, monkeypatch):
    path, fpn_state = _coco_file(hub)
    _use_record(monkeypatch, "coco-fpn", path.name)
    bb = build_backbone("coco-fpn", allow_download=False)
    assert bb.provenance.pretrained and bb.provenance.path == str(path)
    model = assemble_pyramid(bb, PyramidConfig(weights="coco-fpn", stages=("c2", "c3", "c4", "c5")))
    assert model.provenance.fpn_pretrained
    assert torch.equal(model.fpn.layer_blocks[3][0].weight, fpn_state["layer_blocks.3.0.weight"])
    c3c5 = assemble_pyramid(bb, PyramidConfig(weights="coco-fpn"))  # c3..c5 take COCO blocks 1..3
    assert torch.equal(c3c5.fpn.inner_blocks[0][0].weight, fpn_state["inner_blocks.1.0.weight"])
    narrow = assemble_pyramid(bb, PyramidConfig(weights="coco-fpn", out_channels=128))
    assert not narrow.provenance.fpn_pretrained and "only at width 256" in narrow.provenance.fpn


def test_missing_coco_falls_back_to_imagenet_chain(hub):
    bb = build_backbone("coco-fpn", allow_download=False)
    assert bb.provenance.requested == "coco-fpn" and bb.provenance.source == "random init"
    assert any("fasterrcnn_resnet50_fpn_coco" in r for r in bb.provenance.fallbacks)
    assert any("resnet50-11ad3fa6.pth" in r for r in bb.provenance.fallbacks)


def _retinanet_file(hub: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """torchvision's RetinaNet with random weights, saved in its own key layout."""
    from torchvision.models.detection import retinanet_resnet50_fpn

    torch.manual_seed(8)
    state = retinanet_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    return _detector_file(hub, state, "retinanet_resnet50_fpn_coco")


def test_retinanet_weights_give_every_page_a_trained_c3_c5_fpn(hub, monkeypatch):
    """The RetinaNet checkpoint: trained backbone, and a trained FPN for c3..c5 (the seed's own pyramid)."""
    path, fpn_state = _retinanet_file(hub)
    _use_record(monkeypatch, "coco-retinanet", path.name)
    bb = build_backbone("coco-retinanet", allow_download=False)
    assert bb.provenance.pretrained and bb.provenance.path == str(path)
    assert bb.fpn_stages == ("c3", "c4", "c5")
    model = assemble_pyramid(bb, PyramidConfig(weights="coco-retinanet"))
    assert model.provenance.fpn_pretrained and "RetinaNet" in model.provenance.fpn
    for i in range(3):
        assert torch.equal(model.fpn.inner_blocks[i][0].weight, fpn_state[f"inner_blocks.{i}.0.weight"])
        assert torch.equal(model.fpn.layer_blocks[i][0].bias, fpn_state[f"layer_blocks.{i}.0.bias"])
    c4c5 = assemble_pyramid(bb, PyramidConfig(weights="coco-retinanet", stages=("c4", "c5")))
    assert torch.equal(c4c5.fpn.inner_blocks[0][0].weight, fpn_state["inner_blocks.1.0.weight"])
    with_c2 = assemble_pyramid(bb, PyramidConfig(weights="coco-retinanet", stages=("c2", "c3", "c4", "c5")))
    assert not with_c2.provenance.fpn_pretrained and "trained on c3, c4, c5 only" in with_c2.provenance.fpn
    narrow = assemble_pyramid(bb, PyramidConfig(weights="coco-retinanet", out_channels=128))
    assert not narrow.provenance.fpn_pretrained and "only at width 256" in narrow.provenance.fpn


def test_the_registry_drives_the_choices_and_their_labels():
    from ui import settings as S

    assert (*weights.WEIGHT_FILES, "random") == weights.WEIGHT_CHOICES
    assert all(key == wf.key for key, wf in weights.WEIGHT_FILES.items())
    weights_control = S.controls(("a",), ("cpu",))[S.KEY_WEIGHTS]
    assert weights_control.options == weights.WEIGHT_CHOICES
    assert [weights_control.show(c) for c in weights.WEIGHT_FILES] == [wf.label for wf in weights.WEIGHT_FILES.values()]
    assert weights_control.show("random") == "random init"


def test_the_engine_reads_no_environment_for_the_operator_file(hub, tmp_path, monkeypatch):
    """FPN_WEIGHTS is read by the CLI and the dashboard; the engine takes the file as an argument."""
    path = tmp_path / "mine.pth"
    torch.save(_resnet_state(seed=11), path)
    monkeypatch.setenv(weights.WEIGHTS_ENV, str(path))
    assert not build_backbone("imagenet", allow_download=False).provenance.pretrained
    assert weights.operator_file_from_env() == str(path)
    given = build_backbone("imagenet", allow_download=False, operator_file=weights.operator_file_from_env())
    assert given.provenance.source == "local file" and given.provenance.path == str(path)
    monkeypatch.setenv(weights.WEIGHTS_ENV, "  ")
    assert weights.operator_file_from_env() is None


def _batchnorm_eps(bb) -> set[float]:
    return {m.eps for m in bb.modules() if isinstance(m, torch.nn.BatchNorm2d)}


def test_batchnorm_eps_comes_from_the_record_of_the_loaded_file(hub, tmp_path, monkeypatch):
    path, _ = _coco_file(hub)
    _use_record(monkeypatch, "coco-fpn", path.name)
    assert _batchnorm_eps(build_backbone("coco-fpn", allow_download=False, optimize=False)) == {0.0}
    # the same file under another name is no record's: the default eps, as before
    renamed = tmp_path / "renamed.pth"
    renamed.write_bytes(path.read_bytes())
    local = build_backbone(str(renamed), allow_download=False, optimize=False)
    assert local.provenance.pretrained and _batchnorm_eps(local) == {1e-5}
    # a record without a legacy eps leaves the default
    monkeypatch.setitem(
        weights.WEIGHT_FILES, "coco-fpn", dataclasses.replace(weights.WEIGHT_FILES["coco-fpn"], batchnorm_eps=None)
    )
    assert _batchnorm_eps(build_backbone("coco-fpn", allow_download=False, optimize=False)) == {1e-5}


def test_normalization_comes_from_the_record_of_the_loaded_file(hub, monkeypatch):
    path, _ = _coco_file(hub)
    wf = _use_record(monkeypatch, "coco-fpn", path.name)
    monkeypatch.setitem(weights.WEIGHT_FILES, "coco-fpn", dataclasses.replace(wf, mean=(0.5, 0.5, 0.5)))
    bb = build_backbone("coco-fpn", allow_download=False)
    assert bb.provenance.pretrained and bb.mean == (0.5, 0.5, 0.5) and bb.std == weights.IMAGENET_STD
    random = build_backbone("random")
    assert (random.mean, random.std) == (weights.IMAGENET.mean, weights.IMAGENET.std)


def test_a_checkpoints_fpn_is_named_by_the_record_trained_on_its_stages():
    assert weights.fpn_record(("c3", "c4", "c5")) is weights.RETINANET_COCO
    assert weights.fpn_record(("c2", "c3", "c4", "c5")) is weights.COCO
    assert weights.fpn_record(("c4", "c5")) is weights.COCO  # any other local checkpoint: as Faster R-CNN's


def test_fpn_weights_takes_plain_values():
    assert weights.fpn_weights(("c3", "c4", "c5"), 256, 0) == ("random init (seed 0)", False)
    desc, trained = weights.fpn_weights(("c3", "c4", "c5"), 256, 0, ("c3", "c4", "c5"))
    assert trained and weights.RETINANET_COCO.detector in desc
    desc, trained = weights.fpn_weights(("c2", "c3"), 256, 3, ("c3", "c4", "c5"))
    assert not trained and "seed 3" in desc and "c3, c4, c5" in desc  # what it was trained on
    desc, trained = weights.fpn_weights(("c3", "c4", "c5"), 128, 0, ("c2", "c3", "c4", "c5"))
    assert not trained and "256" in desc  # the width it exists at


# --------------------------------------------------------------------------- the resolver, once


class _Toy(torch.nn.Module):
    """A model small enough to resolve many times: one conv and one BatchNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)
        self.bn = torch.nn.BatchNorm2d(2)


def _fit_toy(state):
    model = _Toy()
    if state is None:
        torch.nn.init.zeros_(model.conv.weight)
        return model
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError:
        raise WeightsError("does not fit the toy") from None
    return model


def _toy_file(path: Path, value: float) -> Path:
    model = _Toy()
    torch.nn.init.constant_(model.conv.weight, value)
    torch.save(model.state_dict(), path)
    return path


def test_candidates_in_order_for_every_use(tmp_path):
    rec = weights.WEIGHT_FILES["coco-fpn"]
    default = weights.IMAGENET
    records = {"imagenet": None, "coco-fpn": rec}
    chain = weights.weight_candidates("coco-fpn", default, records=records, operator_file="op.pth", env="MY_ENV")
    assert [(c.path, c.record) for c in chain] == [(None, rec), ("op.pth", None), (None, default)]
    assert {c.env for c in chain} == {"MY_ENV"}
    chain = weights.weight_candidates("mine.pth", default, records=records, operator_file="mine.pth")
    assert [(c.path, c.record) for c in chain] == [("mine.pth", None), (None, default)]  # no file twice
    assert weights.weight_candidates("imagenet", default, records=records)[0].record is default
    assert weights.weight_candidates("random", default, records=records, operator_file="op.pth") == []
    with pytest.raises(ValueError):
        weights.Candidate()


def test_resolve_takes_the_first_that_reads_and_fits(hub, tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"other": torch.zeros(1)}, bad)  # reads, does not fit
    good = _toy_file(tmp_path / "good.pth", 2.0)
    later = _toy_file(tmp_path / "later.pth", 3.0)
    chain = [weights.Candidate(path=str(tmp_path / "missing.pth")), weights.Candidate(path=str(bad))]
    chain += [weights.Candidate(path=str(good)), weights.Candidate(path=str(later))]
    out = weights.resolve_weights(chain, _fit_toy, requested="x", seed=0, allow_download=False)
    assert float(out.model.conv.weight.detach().mean()) == 2.0 and out.state is not None
    prov = out.provenance
    assert (prov.requested, prov.source, prov.path, prov.pretrained) == ("x", "local file", str(good), True)
    assert len(prov.fallbacks) == 2 and str(bad) in prov.fallbacks[1] and "toy" in prov.fallbacks[1]
    assert out.record is None


def test_resolve_ends_with_the_seeded_random_init(hub):
    chain = [weights.Candidate(record=weights.IMAGENET)]
    out = weights.resolve_weights(chain, _fit_toy, requested="imagenet", seed=9, allow_download=False)
    assert out.state is None and out.record is None and not out.provenance.pretrained
    assert out.provenance.source == "random init" and "9" in out.provenance.backbone
    assert float(out.model.conv.weight.detach().abs().sum()) == 0.0  # fit(None) made it
    assert len(out.provenance.fallbacks) == 1 and weights.IMAGENET.filename in out.provenance.fallbacks[0]


def test_download_when_allowed_lands_in_the_cache(hub, tmp_path, monkeypatch):
    src = named_by_hash(_toy_file(tmp_path / "x.pth", 1.0), "toy")
    record = WeightFile("toy", src.name, "https://invalid.example/toy.pth", "toy", "a toy file")
    payload = src.read_bytes()

    class Response(io.BytesIO):
        def __init__(self, data: bytes) -> None:
            super().__init__(data)
            self.headers = {"Content-Length": str(len(data))}

    timeouts: list[float] = []

    def urlopen(url, timeout):
        timeouts.append(timeout)
        return Response(payload)

    monkeypatch.setattr(weights.urllib.request, "urlopen", urlopen)
    seen: list[tuple[int, int]] = []
    out = weights.resolve_weights(
        [weights.Candidate(record=record)],
        _fit_toy,
        requested="toy",
        seed=0,
        allow_download=True,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert out.provenance.source == "download" and out.provenance.pretrained and out.record is record
    assert timeouts and all(t <= weights.DOWNLOAD_TIMEOUT_S for t in timeouts)  # a dead network cannot hang
    assert (hub / src.name).read_bytes() == payload and seen[-1] == (len(payload), len(payload))


def test_the_one_eps_rule_reads_the_record_of_the_loaded_file(hub, tmp_path):
    """A published file's legacy eps applies: found in the hub cache, or a local copy known by its
    name or (for the records this chain expects) by its SHA-256; any other file keeps the default."""
    src = named_by_hash(_toy_file(tmp_path / "x.pth", 1.0), "toy")
    record = WeightFile("toy", src.name, "https://invalid.example/toy.pth", "toy", "a toy", batchnorm_eps=0.0)
    renamed = tmp_path / "renamed.pth"
    renamed.write_bytes(src.read_bytes())
    other = _toy_file(tmp_path / "other.pth", 1.0)
    (hub / src.name).write_bytes(src.read_bytes())

    def eps(chain) -> float:
        out = weights.resolve_weights(chain, _fit_toy, requested="toy", seed=0, allow_download=False)
        assert out.provenance.pretrained
        return out.model.bn.eps

    expected = weights.Candidate(record=record)
    assert eps([expected]) == 0.0  # the hub cache
    assert eps([weights.Candidate(path=str(renamed)), expected]) == 0.0  # renamed, known by its hash
    assert eps([weights.Candidate(path=str(renamed))]) == 1e-5  # no chain record to compare with
    assert eps([weights.Candidate(path=str(other)), expected]) == 1e-5  # another file
