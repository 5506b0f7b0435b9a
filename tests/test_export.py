"""The export bundle: every file present and valid, metadata true to the tensors, bytes deterministic."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fpn_core
from fpn_core import run_pyramid
from fpn_core.export import (
    EXPORT_STYLE,
    METADATA_NAME,
    build_export,
    check_export_settings,
    write_export,
    zip_export,
)
from fpn_core.images import load_image
from fpn_core.maps import MapStyle
from fpn_core.scales import make_scales_image
from tests.conftest import ROOT, run_cli_process

SIZE = 128


@pytest.fixture(scope="module")
def output(random_pyramid):
    model = random_pyramid(out_channels=32)
    return run_pyramid(model, make_scales_image(384, 256, sizes=(16, 32, 64, 128)).image, size=SIZE)


@pytest.fixture(scope="module")
def files(output):
    return build_export(output, timings=False)


def _expected_names(stage_names, level_names) -> set[str]:
    maps = [*stage_names, *level_names]
    return (
        {"input.png", "slide.png", METADATA_NAME}
        | {f"maps/{n}.png" for n in maps}
        | {f"overlays/{n}.png" for n in maps}
    )


def test_bundle_holds_every_file_as_a_valid_png(output, files):
    assert set(files) == _expected_names(output.stages, output.levels)
    for name, data in files.items():
        if name.endswith(".png"):
            with Image.open(io.BytesIO(data)) as img:
                img.verify()  # raises on a broken file
            with Image.open(io.BytesIO(data)) as img:
                assert img.format == "PNG" and min(img.size) > 1, name


def test_input_png_is_the_image_the_network_saw(output, files):
    with Image.open(io.BytesIO(files["input.png"])) as img:
        assert np.array_equal(np.asarray(img.convert("RGB")), output.image)


def test_metadata_matches_the_tensors(output, files):
    meta = json.loads(files[METADATA_NAME])
    tensors = {**output.stages, **output.levels}
    assert meta["shapes"] == {name: list(t.shape) for name, t in tensors.items()}
    assert set(meta["stats"]) == set(tensors)
    assert meta["stats"]["p3"]["mean"] == pytest.approx(float(output.levels["p3"].mean()), rel=1e-5)
    assert meta["config"] == output.config.as_dict()
    assert meta["weights"] == output.provenance.as_dict()
    assert meta["device"] == output.device
    assert (meta["input"]["height"], meta["input"]["width"]) == output.image.shape[:2]
    assert set(meta["versions"]) >= {"torch", "torchvision", "fpn_core"}
    # from a source checkout too: the package's version, which pyproject.toml reads from it
    assert meta["versions"]["fpn_core"] == fpn_core.__version__
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'version = { attr = "fpn_core.__version__" }' in pyproject
    assert meta["export"]["colormap"] == "jet" and meta["export"]["scale"] == 1.0
    assert meta["timings_ms"] is None  # timings=False


def test_bundle_is_deterministic_and_timings_change_only_the_metadata(output, files):
    timed = build_export(output, timings=True)
    assert {n: d for n, d in timed.items() if n != METADATA_NAME} == {
        n: d for n, d in files.items() if n != METADATA_NAME
    }
    meta, untimed = json.loads(timed[METADATA_NAME]), json.loads(files[METADATA_NAME])
    assert meta["timings_ms"] == pytest.approx(output.timings_ms) and "total" in meta["timings_ms"]
    assert meta["repeats"] == output.repeats and untimed["repeats"] is None
    for key in ("timings_ms", "repeats", "export"):
        meta.pop(key), untimed.pop(key)
    assert meta == untimed


def test_scale_makes_bigger_pngs(output, files):
    big = build_export(output, timings=False, scale=2)
    with Image.open(io.BytesIO(files["maps/p4.png"])) as small, Image.open(io.BytesIO(big["maps/p4.png"])) as large:
        assert large.size[0] > 1.8 * small.size[0]


def test_zip_holds_the_same_files_and_is_deterministic(files):
    archive = zip_export(files)
    assert zip_export(dict(reversed(list(files.items())))) == archive
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.namelist() == sorted(files)
        assert {info.date_time for info in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert all(zf.read(name) == data for name, data in files.items())


def test_write_export_writes_every_file(tmp_path, files):
    written = write_export(files, tmp_path / "bundle")
    assert len(written) == len(files)
    for name, data in files.items():
        assert (tmp_path / "bundle" / name).read_bytes() == data


@pytest.mark.parametrize("name", ["../escape.png", "/abs.png", ""])
def test_write_export_refuses_names_outside_the_folder(tmp_path, name):
    with pytest.raises(ValueError, match="relative"):
        write_export({name: b"x"}, tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"colormap": "nope"}, "colormap"),
        ({"alpha": 1.5}, "alpha"),
        ({"aggregation": "sum"}, "aggregation"),
        ({"scope": "global"}, "scope"),
        ({"scale": 0}, "scale"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(output, kwargs, match):
    """A bad style cannot be made (so never reaches ``build_export``); a bad scale is refused by it;
    ``check_export_settings`` (the CLI's check) refuses both, with the same message."""
    settings = {**dataclasses.asdict(EXPORT_STYLE), "scale": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match) as checked:
        check_export_settings(**settings)
    scale = settings.pop("scale")
    with pytest.raises(ValueError, match=match) as built:
        build_export(output, MapStyle(**settings), scale=scale)
    assert str(built.value) == str(checked.value) and repr(next(iter(kwargs.values()))) in str(built.value)


def test_the_style_reaches_every_picture_and_the_metadata(output, files):
    style = MapStyle(aggregation="max", colormap="coolwarm", alpha=0.2, scope="shared")  # any matplotlib map
    assert check_export_settings(**dataclasses.asdict(style), scale=1.0) == style
    styled = build_export(output, style, timings=False)
    assert set(styled) == set(files) and styled["input.png"] == files["input.png"]
    assert all(styled[n] != files[n] for n in files if n.startswith(("maps/", "overlays/", "slide")))
    recorded = json.loads(styled[METADATA_NAME])["export"]
    assert {field: recorded[field] for field in dataclasses.asdict(style)} == dataclasses.asdict(style)
    assert build_export(output, EXPORT_STYLE, timings=False) == files  # the default style, spelled out


# --------------------------------------------------------------------------- the CLI, twice


def _export(image: Path, out: Path, env: dict[str, str], *extra: str) -> None:
    args = ["--weights", "random", "--size", SIZE, "--repeats", "1", "--no-download", *extra]
    done = run_cli_process(env, "export", image, "--out", out, *args)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def _read_tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _without_timings(metadata: bytes) -> dict:
    meta = json.loads(metadata)
    assert isinstance(meta.pop("timings_ms"), dict)
    return meta


@pytest.fixture(scope="module")
def cli_bundles(tmp_path_factory, test_env, sample):
    root = tmp_path_factory.mktemp("exports")
    _export(sample, root / "a", test_env)
    _export(sample, root / "b", test_env, "--zip")
    return sample, _read_tree(root / "a"), (root / "b" / "fpn_export.zip").read_bytes()


def test_cli_export_writes_every_file(cli_bundles):
    image, bundle, _ = cli_bundles
    meta = json.loads(bundle[METADATA_NAME])
    assert set(bundle) == _expected_names([f"c{k}" for k in range(1, 6)], ["p3", "p4", "p5", "p6"])
    assert meta["input"]["source"] == image.name
    h, w = load_image(image).shape[:2]
    assert max(meta["input"]["height"], meta["input"]["width"]) == SIZE
    ih, iw = meta["input"]["height"], meta["input"]["width"]
    assert abs(ih / iw - h / w) < 0.02  # resized, aspect kept
    for name, shape in meta["shapes"].items():
        stride = meta["strides"][name]
        assert shape[2:] == [-(-ih // stride), -(-iw // stride)], name


def test_cli_export_is_deterministic_and_zips_the_same_files(cli_bundles):
    # Two processes, one writing a folder and one a zip: identical bytes except timings.
    _, bundle, archive = cli_bundles
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        zipped = {name: zf.read(name) for name in zf.namelist()}
    assert set(zipped) == set(bundle)
    for name, data in bundle.items():
        if name == METADATA_NAME:
            assert _without_timings(zipped[name]) == _without_timings(data)
        else:
            assert zipped[name] == data, name
