"""``attnkit-lmp transfer`` for a first-time user: model-folder defaults, repeating a run, threads, checks
before loading, outputs written as one set."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from attnkit.testing import saved_tiny_cogvideox_pipeline, tiny_cogvideox_pipeline
from attnkit_lmp import LMPConfig, threads, transfer_command
from attnkit_lmp.cli import build_parser, main
from attnkit_lmp.model_defaults import ModelDefaults, ModelDefaultsError, scale_thresholds
from attnkit_lmp.video_io import load_frames

from .test_cli import arguments, bad_run


@pytest.fixture
def model_never_loaded(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the bad input was reported")

    monkeypatch.setattr(transfer_command, "load_pipeline", refuse)


@pytest.fixture(scope="module")
def one_run(tmp_path_factory, reference_gif):
    """One tiny run with --threads 2, beside a dead run's staging folder and a live run's: ``(out, stdout)``."""
    folder = tmp_path_factory.mktemp("one-run")
    dead = folder / ".run.999999999.abcd.tmp"
    dead.mkdir()
    (dead / "video.mp4").write_bytes(b"half")
    (folder / f".run.{os.getppid()}.efgh.tmp").mkdir()  # the staging folder of a run still going
    before = torch.get_num_threads()
    stdout = io.StringIO()
    try:
        with contextlib.redirect_stdout(stdout):
            assert main(arguments(folder / "run", reference_gif, saved_tiny_cogvideox_pipeline("t2v"), "--threads", "2")) == 0
        threads_after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    return folder / "run", stdout.getvalue(), threads_after


@pytest.fixture(scope="module")
def saved_t2v(tmp_path_factory):
    """The tiny T2V pipeline saved as a model folder (with its tokenizer), as a user's checkpoint is."""
    folder = tmp_path_factory.mktemp("models") / "tiny-t2v"
    tiny_cogvideox_pipeline("t2v").save_pretrained(folder)
    return folder


def without_steps(argv):
    index = argv.index("--steps")
    return argv[:index] + argv[index + 2 :]


# --- settings a model folder brings -----------------------------------------------------------------


def with_defaults(folder, tmp_path, payload):
    model = tmp_path / "model"
    model.mkdir()
    for child in folder.iterdir():
        (model / child.name).symlink_to(child)
    (model / "lmp_defaults.json").write_text(json.dumps(payload))
    return model


def test_a_model_folders_defaults_are_used_printed_and_recorded(tmp_path, reference_gif, saved_t2v, capsys):
    model = with_defaults(
        saved_t2v, tmp_path, {"config": {"fg_threshold": 0.25, "fbdm_steps": 1}, "call": {"num_inference_steps": 2, "guidance_scale": 3.0}}
    )
    out = tmp_path / "run"
    assert main(without_steps(arguments(out, reference_gif, str(model)))) == 0
    printed = capsys.readouterr().out
    defaults_file = str(model / "lmp_defaults.json")
    assert f"settings from {defaults_file}:" in printed and "fg_threshold=0.25" in printed
    run = json.loads((out / "config.json").read_text())
    assert run["config"]["fg_threshold"] == 0.25 and run["config"]["guidance_scale"] == 3.0
    assert run["config"]["num_inference_steps"] == 2 and run["config"]["fbdm_steps"] == 1
    assert run["run"]["settings"]["fg_threshold"] == defaults_file


def test_config_and_flags_take_precedence_over_the_model_defaults(tmp_path, reference_gif, saved_t2v, model_never_loaded):
    model = with_defaults(saved_t2v, tmp_path, {"config": {"fg_threshold": 0.25, "fbdm_steps": 20}, "call": {"num_inference_steps": 50}})
    config_file = tmp_path / "lmp.yaml"
    config_file.write_text("fg_threshold: 0.3\n")
    args = build_parser().parse_args(
        arguments(tmp_path / "out", reference_gif, str(model), "--config", str(config_file))  # --steps 2
    )
    transfer_command.repeat_inputs(args)
    config, sources = transfer_command.resolve_config(args)
    assert config.fg_threshold == 0.3 and sources["fg_threshold"] == f"--config {config_file}"
    # 20 of 50 steps scaled to the 2 asked for; the paper's 45 and 35 of 50 likewise.
    assert (config.num_inference_steps, config.fbdm_steps, config.rmtm_steps, config.asm_steps) == (2, 1, 2, 1)
    assert sources["num_inference_steps"] == "--steps 2"


def test_thresholds_scale_with_the_steps_and_a_running_module_keeps_running():
    assert scale_thresholds({"num_inference_steps": 50, "fbdm_steps": 20, "rmtm_steps": 50, "asm_steps": 0}, 5) == {
        "num_inference_steps": 5, "fbdm_steps": 2, "rmtm_steps": 5, "asm_steps": 0
    }
    assert scale_thresholds({"num_inference_steps": 50, "fbdm_steps": 2}, 4)["fbdm_steps"] == 1


def test_a_bad_defaults_file_names_the_file_and_key(tmp_path):
    (tmp_path / "lmp_defaults.json").write_text(json.dumps({"config": {"fg_treshold": 0.2}}))
    with pytest.raises(ModelDefaultsError, match=r"lmp_defaults.json'.*'fg_treshold' is not an LMPConfig field"):
        ModelDefaults.of_folder(tmp_path)
    (tmp_path / "lmp_defaults.json").write_text(json.dumps({"call": {"fg_threshold": 0.2}}))
    with pytest.raises(ModelDefaultsError, match="call key 'fg_threshold' is not a pipeline-call setting"):
        ModelDefaults.of_folder(tmp_path)
    (tmp_path / "lmp_defaults.json").write_text(json.dumps({"config": {"fbdm_steps": 60}, "call": {"num_inference_steps": 50}}))
    with pytest.raises(ModelDefaultsError, match="fbdm_steps=60 is invalid"):
        ModelDefaults.of_folder(tmp_path)


def toy_model_config(folder):
    from attnkit_lmp.toy.model import ToyModelConfig

    return ToyModelConfig.from_dict(json.loads((folder / "toy_config.json").read_text())["model"])


def test_the_bundled_toys_are_measured_with_the_settings_the_cli_gives_them():
    from pathlib import Path

    from attnkit_lmp.toy.measure import model_defaults_of, toy_lmp_config
    from attnkit_lmp.toy.pretrained import load_toy_pipeline

    toy = Path(transfer_command.__file__).parent / "toy"
    for folder in (toy / "pretrained", toy / "pretrained_wan"):
        defaults = ModelDefaults.of_folder(folder)
        measured = toy_lmp_config(50, model=toy_model_config(folder), defaults=defaults)
        assert measured == LMPConfig.from_dict(defaults.values), folder.name
        # At other step counts the thresholds keep their fractions of the run.
        shorter = toy_lmp_config(25, model=toy_model_config(folder), defaults=defaults)
        assert shorter.fbdm_steps == round(defaults.values["fbdm_steps"] / 2)
    assert model_defaults_of(load_toy_pipeline(toy / "pretrained_wan")).path == toy / "pretrained_wan" / "lmp_defaults.json"
    # The CogVideoX toy's file holds the toy settings (TOY_LMP_SETTINGS, searched on it); the Wan toy's own
    # search chose others, which its measurement must use.
    cogvideox = toy_lmp_config(50, model=toy_model_config(toy / "pretrained"))
    assert LMPConfig.from_dict(ModelDefaults.of_folder(toy / "pretrained").values) == cogvideox
    wan_folder = toy / "pretrained_wan"
    wan = toy_lmp_config(50, model=toy_model_config(wan_folder), defaults=ModelDefaults.of_folder(wan_folder))
    assert wan != toy_lmp_config(50, model=toy_model_config(wan_folder))


# --- repeating a run ---------------------------------------------------------------------------------


def test_a_run_repeats_from_its_config_json_alone(tmp_path, reference_gif):
    first, again = tmp_path / "first", tmp_path / "again"
    assert main(arguments(first, reference_gif, saved_tiny_cogvideox_pipeline("t2v"), "--seed", "5")) == 0
    assert main(["transfer", "--config", str(first / "config.json"), "--out", str(again), "--no-progress"]) == 0
    recorded, repeated = (json.loads((folder / "config.json").read_text()) for folder in (first, again))
    assert repeated["config"] == recorded["config"] and repeated["run"]["seed"] == 5
    assert torch.equal(load_frames(first / "video.gif"), load_frames(again / "video.gif"))


def test_the_record_keeps_the_reference_path(one_run, reference_gif):
    out, _, _ = one_run
    run = json.loads((out / "config.json").read_text())["run"]
    assert run["reference"] == str(reference_gif.absolute()) and run["reference_kind"] == "video"


def test_the_former_tiny_model_names_say_how_to_save_and_pass_a_tiny_pipeline(tmp_path, capsys, reference_gif):
    error = bad_run(capsys, arguments(tmp_path / "out", reference_gif, "tiny:i2v"))
    assert "no model_index.json" in error
    assert "tiny_cogvideox_pipeline('i2v').save_pretrained('tiny-i2v')" in error and "--model tiny-i2v" in error


def test_missing_inputs_say_how_to_repeat_a_run(tmp_path, capsys):
    error = bad_run(capsys, ["transfer", "--model", saved_tiny_cogvideox_pipeline("t2v"), "--out", str(tmp_path / "out")])
    assert "--reference-prompt, --reference-subject, --prompt, --subject are required" in error
    assert "--config RUN/config.json" in error


# --- threads -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cores", "expected"), [(1, 1), (2, 1), (6, 3), (16, 4)])
def test_default_threads_are_half_the_cores_at_most_four(monkeypatch, cores, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    assert threads.default_threads() == expected


def test_omp_num_threads_sets_the_default(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3


def test_the_run_sets_and_prints_its_threads(one_run):
    out, printed, threads_set = one_run
    assert threads_set == 2 and "torch threads: 2" in printed
    assert json.loads((out / "config.json").read_text())["run"]["threads"] == 2


def test_threads_must_be_positive(tmp_path, reference_gif, capsys):
    with pytest.raises(SystemExit):
        main(arguments(tmp_path / "run", reference_gif, saved_tiny_cogvideox_pipeline("t2v"), "--threads", "0"))
    assert "--threads '0' must be a positive integer" in capsys.readouterr().err


# --- checks before loading ---------------------------------------------------------------------------


def test_a_device_that_is_not_a_torch_device(tmp_path, capsys, reference_gif, model_never_loaded):
    error = bad_run(capsys, arguments(tmp_path / "out", reference_gif, saved_tiny_cogvideox_pipeline("t2v"), "--device", "gpu"))
    assert "--device 'gpu' is not a torch device; expected cpu, cuda, cuda:N or mps" in error
    assert error.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda(tmp_path, capsys, reference_gif, model_never_loaded):
    error = bad_run(capsys, arguments(tmp_path / "out", reference_gif, saved_tiny_cogvideox_pipeline("t2v"), "--device", "cuda"))
    assert "--device 'cuda'" in error and "--device cpu" in error and error.count("\n") == 1


def test_subject_words_are_checked_with_the_tokenizer_before_loading(tmp_path, capsys, reference_gif, saved_t2v, model_never_loaded):
    argv = arguments(tmp_path / "out", reference_gif, str(saved_t2v))
    argv[argv.index("--subject") + 1] = "horse"
    error = bad_run(capsys, argv)
    assert error.startswith("attnkit-lmp transfer: error: --subject: word 'horse'") and "'a blue cat runs left'" in error


def test_a_hub_id_is_refused_offline(tmp_path, capsys, reference_gif, model_never_loaded, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    error = bad_run(capsys, arguments(tmp_path / "out", reference_gif, "THUDM/CogVideoX-5b"))
    assert "hub id" in error and "offline" in error and "huggingface-cli download THUDM/CogVideoX-5b" in error


def test_a_hub_id_is_loaded_by_from_pretrained_online(tmp_path, capsys, reference_gif, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls = []

    def from_pretrained(model, **kwargs):
        calls.append((model, kwargs))
        raise OSError("no network in tests")

    monkeypatch.setattr("diffusers.DiffusionPipeline.from_pretrained", from_pretrained)
    error = bad_run(capsys, arguments(tmp_path / "out", reference_gif, "THUDM/CogVideoX-5b"))
    assert calls and calls[0][0] == "THUDM/CogVideoX-5b" and calls[0][1]["local_files_only"] is False
    assert "check the id and your network" in error


def test_a_reference_cropped_hard_is_warned_about(tmp_path, capsys):
    wide = tmp_path / "wide.gif"
    frames = np.zeros((9, 32, 400, 3), dtype=np.uint8)
    for index in range(9):  # a square moving right (identical gif frames would be merged into one)
        frames[index, 8:24, 190 + index : 210 + index] = 255
    iio.imwrite(wide, frames, duration=125, loop=0)
    assert main(arguments(tmp_path / "run", wide)) == 0
    error = capsys.readouterr().err
    assert "warning: the reference's frames are 32 x 400" in error and "keeps 8% of each frame" in error


def test_a_reference_of_the_models_shape_is_not_warned_about(tmp_path, capsys, reference_gif, monkeypatch):
    args = build_parser().parse_args(arguments(tmp_path / "run", reference_gif))
    args.reference_shape = (32, 32)
    transfer_command.warn_about_crop(args, tiny_cogvideox_pipeline("t2v"), LMPConfig.for_steps(2))
    assert capsys.readouterr().err == ""


def test_kept_share_of_the_centre_crop():
    assert transfer_command.kept_share((32, 32), (64, 64)) == 1.0
    assert transfer_command.kept_share((32, 400), (32, 32)) == pytest.approx(0.08)
    assert transfer_command.kept_share((480, 640), (480, 720)) == pytest.approx(640 / 720)  # rows cut above and below


# --- help --------------------------------------------------------------------------------------------


def transfer_help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["transfer", "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_help_states_the_steps_default_the_toy_and_three_dtypes(capsys):
    text = transfer_help(capsys)
    assert "else the paper's 50" in text and "attnkit_lmp/toy/pretrained" in text
    assert "{float32,bfloat16,float16}" in text and "fp16" not in text


def test_dtype_aliases_are_still_accepted():
    args = build_parser().parse_args(["transfer", "--out", "x", "--dtype", "bf16"])
    assert args.dtype == "bfloat16"


def test_help_imports_no_pipeline_classes_or_transformers():
    code = (
        "import sys, contextlib, io\n"
        "from attnkit_lmp.cli import main\n"
        "import attnkit.testing\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['transfer', '--help'])\n"
        "print(sorted(m for m in sys.modules if m.startswith('diffusers.pipelines.wan.pipeline_wan_i2v')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]" and "torchvision" not in result.stderr


# --- outputs as one set ------------------------------------------------------------------------------


def test_an_out_holding_a_run_is_refused_without_overwrite(tmp_path, capsys, reference_gif, model_never_loaded):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    error = bad_run(capsys, arguments(out, reference_gif))
    assert "already holds a previous run (config.json)" in error and "--overwrite" in error


def test_overwrite_replaces_the_whole_folder(tmp_path, reference_gif):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    (out / "stale.txt").write_text("from before")
    assert main(arguments(out, reference_gif, saved_tiny_cogvideox_pipeline("t2v"), "--overwrite")) == 0
    assert not (out / "stale.txt").exists() and json.loads((out / "config.json").read_text())["run"]
    assert [path.name for path in tmp_path.iterdir()] == ["run"]


def test_out_is_not_created_before_the_checks(tmp_path, capsys, reference_gif, model_never_loaded):
    bad_run(capsys, arguments(tmp_path / "new" / "run", reference_gif, saved_tiny_cogvideox_pipeline("t2v"), "--device", "gpu"))
    assert not (tmp_path / "new").exists()


def test_a_failed_run_leaves_no_out_folder(tmp_path, capsys, reference_gif):
    argv = arguments(tmp_path / "run", reference_gif)
    argv[argv.index("--subject") + 1] = "horse"
    bad_run(capsys, argv)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_gives_one_line_exit_1_and_nothing_half_written(tmp_path, capsys, reference_gif, monkeypatch):
    def full_disk(path, *args, **kwargs):
        raise OSError(28, "No space left on device", str(path))

    monkeypatch.setattr(transfer_command, "write_mask_page", full_disk)
    assert main(arguments(tmp_path / "run", reference_gif)) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "No space left on device" in error and "nothing was written" in error
    assert list(tmp_path.iterdir()) == []  # neither --out nor the staging folder


def test_stale_staging_folders_of_dead_runs_are_removed(one_run):
    out, _, _ = one_run
    assert sorted(path.name for path in out.parent.iterdir()) == [f".run.{os.getppid()}.efgh.tmp", "run"]



def test_data_parallel_processes_share_the_default_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: 16)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert threads.default_threads(per_process=True) == 2 and threads.default_threads() == 4


def test_eval_passes_the_default_threads_to_the_sweep(monkeypatch, tmp_path):
    from attnkit_lmp import eval_command as command

    monkeypatch.setattr(command, "default_threads", lambda per_process=False: 3 if per_process else 99)
    argv = ["eval", "--dataset", str(tmp_path), "--prompts", str(tmp_path / "p.yaml"), "--model", saved_tiny_cogvideox_pipeline("t2v"), "--out", str(tmp_path / "o")]
    assert command.settings_from_args(build_parser().parse_args(argv)).threads == 3
    assert command.settings_from_args(build_parser().parse_args([*argv, "--threads", "2"])).threads == 2
