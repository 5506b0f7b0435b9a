"""The command line: shapes from real tensors, one-line errors with status 2, weights fallbacks."""

from __future__ import annotations

import ast
import json
import math
import sys

import pytest

from fpn_core import RESNET50_FEATURE_INFO, cli, load_image, run_pyramid
from fpn_core.cli import common
from fpn_core.levels import stride_of
from tests.conftest import run_cli, run_cli_process
from tests.corpus import write_corpus

SIZE = 192
FAST = ["--weights", "random", "--no-download", "--size", str(SIZE), "--repeats", "1"]


# --------------------------------------------------------------------------- inspect


@pytest.mark.parametrize("out_channels", [16, 128, 512])
def test_inspect_json_shapes_are_the_real_tensors(capsys, cli_models, sample, out_channels):
    code, out, err = run_cli(capsys, "inspect", sample, "--width", out_channels, "--json", *FAST)
    assert code == 0, err
    report = json.loads(out)

    config = next(c for c in cli_models if c.out_channels == out_channels)
    result = run_pyramid(cli_models[config], load_image(sample), size=SIZE)
    h, w = result.image.shape[:2]
    assert report["image"]["input_hw"] == [h, w]
    assert max(h, w) == SIZE
    for kind, tensors in (("stages", result.stages), ("levels", result.levels)):
        rows = {row["name"]: row for row in report[kind]}
        assert list(rows) == list(tensors)
        for name, tensor in tensors.items():
            stride = stride_of(name)
            channels = out_channels if kind == "levels" else RESNET50_FEATURE_INFO[name].num_chs
            assert rows[name]["shape"] == list(tensor.shape)
            assert rows[name]["shape"] == [1, channels, math.ceil(h / stride), math.ceil(w / stride)]
            assert rows[name]["channels"] == channels and rows[name]["stride"] == stride
            assert rows[name]["mean"] == pytest.approx(float(tensor.mean()), rel=1e-4, abs=1e-6)
    assert [row["name"] for row in report["levels"]] == ["p3", "p4", "p5", "p6"]


def test_inspect_json_reports_costs_steps_and_provenance(capsys, cli_models, sample):
    code, out, _ = run_cli(capsys, "inspect", sample, "--width", 64, "--json", *FAST)
    assert code == 0
    report = json.loads(out)
    model = next(iter(m for c, m in cli_models.items() if c.out_channels == 64))

    assert report["weights"] == model.provenance.as_dict()
    assert report["config"] == model.config.as_dict()
    assert report["device"] == str(model.device)
    assert report["run"] == {"size": SIZE, "repeats": 1, "warmup": 1}
    stages = {row["name"]: row for row in report["stages"]}
    assert stages["c5"]["params"] == sum(p.numel() for p in model.backbone.layer4.parameters())
    assert all(row["gflops"] > 0 and row["ms"] > 0 for row in report["stages"])
    assert report["total_ms"] > 0
    # A level's numbers are the sums of its FPN steps, listed coarse to fine.
    assert list(report["steps"]) == ["p5", "p4", "p3", "p6"]
    assert [s["step"] for s in report["steps"]["p4"]] == ["lateral", "top_down", "output"]
    for level in report["levels"]:
        steps = report["steps"][level["name"]]
        assert level["ms"] == pytest.approx(sum(s["ms"] for s in steps))
        assert level["params"] == sum(s["params"] for s in steps)
    p3_convs = [*model.fpn.inner_blocks[0].parameters(), *model.fpn.layer_blocks[0].parameters()]
    assert report["levels"][0]["params"] == sum(p.numel() for p in p3_convs) == (512 * 64 + 64) + (9 * 64 * 64 + 64)


def test_inspect_table_is_aligned_and_complete(capsys, cli_models, sample):
    code, out, err = run_cli(capsys, "inspect", sample, "--width", 128, *FAST)
    assert code == 0, err
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("name "))
    table = lines[header : lines.index("", header)]
    assert len(table) == 2 + 5 + 4  # header, rule, c1..c5, p3..p6
    assert len({len(line) for line in table}) == 1  # right-aligned last column: equal widths
    for column in ("shape", "stride", "channels", "mean", "std", "ms", "GFLOPs", "params"):
        assert column in table[0]
    assert [line.split()[0] for line in table[2:]] == ["c1", "c2", "c3", "c4", "c5", "p3", "p4", "p5", "p6"]
    p4 = next(line for line in table if line.startswith("p4"))
    h, w = load_image(sample).shape[:2]
    scale = SIZE / max(h, w)
    assert f"1×128×{math.ceil(round(h * scale) / 16)}×{math.ceil(round(w * scale) / 16)}" in p4
    assert "FPN steps" in out and "top_down" in out
    assert "weights  asked for 'random'" in out and "no fallback" in out
    assert "device   " in out and "total" in out


def test_inspect_runs_as_a_module(test_env, sample):
    done = run_cli_process(test_env, "inspect", sample, "--width", 16, "--json", *FAST)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["levels"][0]["shape"][1] == 16
    assert done.stderr == ""


# --------------------------------------------------------------------------- bad input


def test_bad_image_exits_2_with_one_line(test_env, tmp_path):
    """In a fresh process, as a user runs it (the other refusals run in this process)."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    done = run_cli_process(test_env, "inspect", bad, *FAST)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_bad_width_exits_2_with_one_line(capsys, sample):
    code, out, err = run_cli(capsys, "inspect", sample, "--width", 100, *FAST)
    assert code == 2 and out == ""
    assert err.splitlines() == [err.strip()]
    assert "--width" in err and "100" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--width", "7"], "7"),
        (["--width", "1024"], "1024"),
        (["--stages", "c3,c5"], "c3,c5"),
        (["--stages", "c4"], "c4"),
        (["--size", "5000"], "5000"),
        (["--repeats", "0"], "0"),
        # numbers are read one way, by the command: not a number is one line naming the option too
        (["--width", "abc"], "--width"),
        (["--width", "7.5"], "--width"),
        (["--size", "big"], "--size"),
        (["--repeats", "x"], "--repeats"),
        (["--seed", "x"], "--seed"),
    ],
)
def test_bad_option_values_exit_2_naming_the_value(capsys, sample, args, named):
    code, out, err = run_cli(capsys, "inspect", sample, *FAST, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and named in err


@pytest.mark.parametrize(
    "args",
    [["--upsample", "cubic"], ["--device", "tpu"], ["--ablation", "none"], []],
)
def test_argparse_errors_exit_2(capsys, sample, args):
    """Fixed choices and missing arguments are argparse's: status 2, its usage and an error line."""
    argv = ["inspect", sample, *args] if args else ["inspect"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "error:" in err


@pytest.mark.parametrize(
    ("args", "named"), [(["--cmap", "nope"], "nope"), (["--alpha", "2"], "alpha"), (["--alpha", "x"], "--alpha")]
)
def test_export_bad_settings_fail_before_any_work(capsys, sample, tmp_path, monkeypatch, args, named):
    monkeypatch.setattr(common, "build_pyramid", lambda *a, **k: pytest.fail("built a model for a bad setting"))
    code, _, err = run_cli(capsys, "export", sample, "--out", tmp_path, *args, *FAST)
    assert code == 2 and named in err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def test_corpus_bad_files_exit_2_with_one_line(capsys, corpus):
    bad = [(case, path) for case, path in corpus if case.expect == "error"]
    assert bad
    for case, path in bad:
        code, out, err = run_cli(capsys, "inspect", path, *FAST)
        assert code == 2 and out == "", case.name
        assert err.count("\n") == 1 and err.startswith("error: "), (case.name, err)


def test_corpus_odd_but_good_files_inspect(capsys, cli_models, corpus):
    for case, path in corpus:
        if case.expect == "ok":
            code, out, err = run_cli(capsys, "inspect", path, "--json", "--width", 16, *FAST, "--size", 64)
            assert code == 0, (case.name, err)
            assert max(json.loads(out)["image"]["input_hw"]) == 64, case.name


# --------------------------------------------------------------------------- weights


def test_missing_weights_file_falls_back_and_says_so(capsys, sample, tmp_path, cli_models):
    missing = tmp_path / "no_such_weights.pth"
    code, out, err = run_cli(capsys, "inspect", sample, "--json", *FAST, "--weights", missing)
    assert code == 0, err
    weights = json.loads(out)["weights"]
    assert weights["requested"] == str(missing)
    assert weights["source"] == "random init" and not weights["pretrained"]
    assert any(str(missing) in reason for reason in weights["fallbacks"])
    warnings = err.splitlines()
    assert len(warnings) == len(weights["fallbacks"]) + 1
    assert all(line.startswith("warning: ") and len(line) <= 220 for line in warnings)


def test_table_explains_fallbacks_in_plain_words(capsys, sample, tmp_path, cli_models):
    missing = tmp_path / "gone.pth"
    code, out, _ = run_cli(capsys, "inspect", sample, *FAST, "--weights", missing)
    assert code == 0
    assert "fell back 2 time(s), because:" in out
    assert f"1. weights file {missing} does not exist" in out


def test_the_installed_command_is_the_cli() -> None:
    """``pip install .`` puts ``fpn-explorer`` on PATH: it must name the CLI's entry point."""
    import importlib

    from tests.conftest import ROOT

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the project's machines run 3.11

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    target = project["project"]["scripts"]["fpn-explorer"]
    module, _, name = target.partition(":")
    main = getattr(importlib.import_module(module), name)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    required = {ln.split("#")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()} - {""}
    assert set(project["project"]["dependencies"]) == required  # the same bounds as requirements.txt


# --------------------------------------------------------------------------- the package


def test_program_name_is_the_name_it_was_started_as(capsys, monkeypatch, test_env):
    """``fpn-explorer`` from the installed script, ``python -m fpn_core`` from the module."""
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/fpn-explorer", "--help"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("usage: fpn-explorer ")

    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/fpn-explorer", "detect"])  # an error names it too
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2
    assert "usage: fpn-explorer detect" in capsys.readouterr().err

    done = run_cli_process(test_env, "inspect", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m fpn_core inspect ")


def test_every_command_is_one_module_in_one_list():
    parser = cli.build_parser(prog="fpn-explorer")
    (subcommands,) = (a for a in parser._actions if a.dest == "command")
    names = [command.__name__.rsplit(".", 1)[1] for command in cli.COMMANDS]
    assert names == list(subcommands.choices) == ["inspect", "export", "deck", "detect"]
    for command, sub in zip(cli.COMMANDS, subcommands.choices.values(), strict=True):
        assert sub.get_default("handler") is command.run


def test_shared_options_are_declared_once():
    """The options every command takes come from one parent parser: the same argparse actions."""
    parser = cli.build_parser()
    (subcommands,) = (a for a in parser._actions if a.dest == "command")
    commands = list(subcommands.choices.values())
    for option in ("--device", "--seed", "--no-download", "--json"):
        actions = {id(a) for sub in commands for a in sub._actions if option in a.option_strings}
        assert len(actions) == 1, option
    inspect_, export, deck, detect = commands
    assert inspect_.parse_args(["x.jpg"]).weights == "imagenet" and detect.parse_args(["x.jpg"]).weights == "coco"
    assert export.parse_args(["x.jpg", "--out", "o"]).size == 512 and detect.parse_args(["x.jpg"]).size is None
    # the deck takes the pyramid options of inspect and export, from the same parent parser
    for option in ("--width", "--stages", "--weights", "--size", "--point"):
        actions = {id(a) for sub in (inspect_, export, deck) for a in sub._actions if option in a.option_strings}
        assert len(actions) == 1, option
    assert deck.parse_args(["x.jpg", "--out", "o.pptx"]).detector == "faster-rcnn"


def test_the_cli_package_imports_no_private_names_and_the_engine_no_cli():
    from tests.conftest import ROOT

    for path in [*(ROOT / "fpn_core" / "cli").glob("*.py"), *(ROOT / "fpn_core" / "detection").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and path.parent.name == "cli":
                assert not any(alias.name.startswith("_") for alias in node.names), (path, node.lineno)
            elif isinstance(node, ast.ImportFrom):  # the detection engine: no way back to the CLI
                assert "cli" not in (node.module or "").split("."), (path, node.lineno)
    assert not (ROOT / "fpn_core" / "detection" / "cli.py").exists()
