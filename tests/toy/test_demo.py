"""The main-job demo writes every promised file, prints its table, and fails clearly without a model.

The run here uses an untrained toy pipeline of the bundled model's size and 2 denoising steps: it checks
the demo's plumbing (files, formats, metrics, errors), not the quality of the transfer, which
tests/toy/test_transfer_e2e.py checks on the trained model.
"""

import contextlib
import io
import json

import imageio.v3 as iio
import pytest
import torch

from attnkit_lmp import demo
from attnkit_lmp.cli import build_parser
from attnkit_lmp.toy.model import ToyModelConfig, build_toy_pipeline
from attnkit_lmp.toy.pretrained import BUNDLED_PIPELINE

STEPS = 2
VIDEO_FILES = [
    f"{name}.{suffix}" for name in ("reference", "baseline", "lmp", "comparison") for suffix in ("mp4", "gif")
]
PROMISED_FILES = sorted(VIDEO_FILES + ["fbdm_explorer.html", "metrics.json"])


@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy_model") / "pipeline"
    build_toy_pipeline(ToyModelConfig(), seed=0).save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def demo_run(untrained_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "demo_out"
    stdout, stderr = io.StringIO(), io.StringIO()
    torch.set_num_threads(1)
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = demo.main(
            ["--out", str(out), "--model", str(untrained_model), "--steps", str(STEPS), "--no-progress"]
        )
    return {"code": code, "out": out, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


def test_demo_exits_zero(demo_run):
    assert demo_run["code"] == 0, demo_run["stderr"]


def test_demo_writes_every_promised_file_and_nothing_half_written(demo_run):
    names = sorted(path.name for path in demo_run["out"].iterdir())
    assert names == PROMISED_FILES  # no leftover temporary (dot) files either
    assert all((demo_run["out"] / name).stat().st_size > 0 for name in names)


@pytest.mark.parametrize("name", VIDEO_FILES)
def test_videos_hold_every_frame_of_the_model(demo_run, name):
    frames = iio.imread(
        demo_run["out"] / name, index=None, **({"plugin": "pyav"} if name.endswith(".mp4") else {})
    )
    assert frames.shape[0] == ToyModelConfig().num_frames
    assert frames.shape[1] >= ToyModelConfig().height * demo.UPSCALE


def test_comparison_puts_reference_baseline_and_lmp_side_by_side(demo_run):
    single = iio.imread(demo_run["out"] / "lmp.gif", index=None)
    comparison = iio.imread(demo_run["out"] / "comparison.gif", index=None)
    assert comparison.shape[2] > 3 * single.shape[2]
    assert comparison.shape[1] > single.shape[1]  # the name strip above the videos


def test_explorer_is_a_self_contained_plotly_page_of_the_fbdm_masks(demo_run):
    page = (demo_run["out"] / "fbdm_explorer.html").read_text()
    assert "plotly" in page.lower() and '<script src="http' not in page
    assert "FBDM mask" in page and "ground-truth mask" in page


def test_metrics_hold_scores_of_both_runs_and_the_config(demo_run):
    metrics = json.loads((demo_run["out"] / "metrics.json").read_text())
    assert set(metrics["scores"]) == {"baseline", "lmp"}
    for scores in metrics["scores"].values():
        assert {"motion_fidelity_centroid", "motion_fidelity_grid", "path_error", "appearance_kept"} <= set(
            scores
        )
    assert "fbdm_iou" in metrics["scores"]["lmp"]
    assert metrics["config"]["num_inference_steps"] == STEPS
    assert (
        metrics["config"]["enable_fbdm"]
        and metrics["config"]["enable_rmtm"]
        and metrics["config"]["enable_asm"]
    )
    assert metrics["target"]["subject"] != metrics["reference"]["subject"]
    assert sorted(metrics["files"] + ["metrics.json"]) == PROMISED_FILES


def test_demo_prints_a_table_of_baseline_and_lmp(demo_run):
    lines = demo_run["stdout"].splitlines()
    header = next(line for line in lines if line.startswith("variant"))
    assert "MF centroid" in header and "path error px" in header and "look kept" in header
    assert any(line.startswith("baseline") for line in lines)
    assert any(line.startswith("lmp") for line in lines)


def test_missing_model_exits_with_an_error_that_says_how_to_retrain(tmp_path, capsys):
    code = demo.main(["--out", str(tmp_path / "out"), "--model", str(tmp_path / "no_model"), "--no-progress"])
    assert code == demo.EXIT_MODEL_MISSING
    error = capsys.readouterr().err
    assert "missing" in error and "scripts/train-toy.sh" in error


def test_corrupt_model_exits_with_an_error_that_says_how_to_retrain(untrained_model, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(untrained_model, broken)
    (broken / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"not safetensors")
    code = demo.main(["--out", str(tmp_path / "out"), "--model", str(broken), "--no-progress"])
    assert code == demo.EXIT_MODEL_MISSING
    assert "cannot be loaded" in capsys.readouterr().err


def test_demo_is_an_attnkit_lmp_subcommand(tmp_path):
    args = build_parser().parse_args(["demo", "--out", str(tmp_path), "--steps", "3"])
    assert args._run is demo.run and args.steps == 3


@pytest.mark.skipif(
    not (BUNDLED_PIPELINE / "model_index.json").is_file(),
    reason=f"no trained toy model bundled at {BUNDLED_PIPELINE} yet",
)
def test_demo_runs_on_the_bundled_model_by_default(tmp_path, capsys):
    assert demo.main(["--out", str(tmp_path), "--steps", str(STEPS), "--no-progress", "--threads", "1"]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == PROMISED_FILES


def test_the_demo_case_is_fixed_by_rule_from_the_held_out_test_split():
    from attnkit_lmp.toy.measure import measurement_cases
    from attnkit_lmp.toy.model import ToyModelConfig
    from attnkit_lmp.toy.world import DEFAULT_WORLD

    assert demo.demo_case(DEFAULT_WORLD) == measurement_cases(1, "test", world=DEFAULT_WORLD)[0]
    world = ToyModelConfig().world
    case = demo.demo_case(world)
    earlier = [c for c in measurement_cases(demo.DEMO_CASE_SEARCH, "test", world=world) if c.reference.distractor]
    assert case.reference.split == "heldout" and case == earlier[0]


def test_comparison_labels_grow_to_hold_long_prompts():
    short = demo.labelled_row([("LMP", torch.zeros(1, 3, 8, 8))], upscale=4)
    prompt = "LMP: a blue triangle and a small yellow circle on a checkered background"
    long = demo.labelled_row([(prompt, torch.zeros(1, 3, 8, 8))], upscale=4)
    assert long.shape[2] > short.shape[2] and long.shape[3] == short.shape[3]
