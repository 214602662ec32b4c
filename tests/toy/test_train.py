"""A few training steps run, save a loadable pipeline, resume exactly, and refuse foreign checkpoints."""

import json

import pytest
import torch
from diffusers import CogVideoXPipeline

from attnkit_lmp.toy.cli import main as toy_main
from attnkit_lmp.toy.model import ToyModelConfig, generation_kwargs
from attnkit_lmp.toy.train import CheckpointError, TrainConfig, train, x0_loss
from tiny_toys import TINY_MODEL

TINY_TRAINING = TrainConfig(batch_size=2)


def _train(out, steps, **overrides):
    settings = dict(
        seed=0, model_config=TINY_MODEL, train_config=TINY_TRAINING, checkpoint_every=1, progress=False
    )
    return train(out, steps, **(settings | overrides))


def _checkpoint_weights(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=True)["trainable"]


def test_training_writes_a_pipeline_that_stock_diffusers_loads_and_runs(tmp_path):
    folder = _train(tmp_path, 2)
    pipeline = CogVideoXPipeline.from_pretrained(folder)
    pipeline.set_progress_bar_config(disable=True)
    settings = generation_kwargs(TINY_MODEL) | {"num_inference_steps": 2}
    frames = pipeline(
        "a red square", generator=torch.Generator().manual_seed(0), output_type="np", **settings
    ).frames
    assert frames.shape == (1, 4, 16, 16, 3)
    log_lines = (tmp_path / "train.log").read_text().splitlines()
    assert any('"loss"' in line for line in log_lines)


def test_resumed_training_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path):
    _train(tmp_path / "straight", 3)
    _train(tmp_path / "interrupted", 2)
    _train(tmp_path / "interrupted", 3, resume=True)
    straight = _checkpoint_weights(tmp_path / "straight")
    resumed = _checkpoint_weights(tmp_path / "interrupted")
    assert torch.load(tmp_path / "interrupted" / "checkpoint.pt", weights_only=True)["step"] == 3
    for name, value in straight.items():
        torch.testing.assert_close(resumed[name], value, rtol=0, atol=1e-6, msg=name)


def test_resuming_a_checkpoint_of_another_model_size_is_a_clear_error(tmp_path):
    _train(tmp_path, 1)
    other = ToyModelConfig(**(TINY_MODEL.to_dict() | {"num_layers": 2}))
    with pytest.raises(CheckpointError, match="incompatible.*num_layers"):
        _train(tmp_path, 2, resume=True, model_config=other)


def test_resuming_with_another_seed_or_batch_size_is_a_clear_error(tmp_path):
    _train(tmp_path, 1)
    with pytest.raises(CheckpointError, match="seed=0 != requested 1"):
        _train(tmp_path, 2, resume=True, seed=1)
    with pytest.raises(CheckpointError, match="batch_size"):
        _train(tmp_path, 2, resume=True, train_config=TrainConfig(batch_size=3))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        _train(tmp_path, 1, resume=True)


def test_existing_checkpoint_is_not_overwritten_without_resume(tmp_path):
    _train(tmp_path, 1)
    with pytest.raises(CheckpointError, match="--resume"):
        _train(tmp_path, 2)


def test_cli_reports_an_incompatible_checkpoint_and_exits_non_zero(tmp_path, capsys):
    _train(tmp_path, 1)
    code = toy_main(
        ["train", "--out", str(tmp_path), "--steps", "2", "--resume", "--no-progress", "--height", "24"]
    )
    assert code == 2
    assert "incompatible" in capsys.readouterr().err


def test_init_from_starts_a_new_run_from_a_saved_pipelines_weights(tmp_path):
    source = _train(tmp_path / "source", 2)
    _train(tmp_path / "tuned", 0, init_from=source)
    saved = CogVideoXPipeline.from_pretrained(source).transformer.state_dict()
    started = _checkpoint_weights(tmp_path / "tuned")
    assert torch.load(tmp_path / "tuned" / "checkpoint.pt", weights_only=True)["step"] == 0
    for name, value in saved.items():
        torch.testing.assert_close(started[f"transformer.{name}"], value, rtol=0, atol=0, msg=name)
    fresh = _checkpoint_weights(_train(tmp_path / "fresh", 0).parent)
    assert any(not torch.equal(fresh[name], started[name]) for name in fresh)


def test_init_from_a_pipeline_of_another_model_size_is_a_clear_error(tmp_path):
    source = _train(tmp_path / "source", 1)
    other = ToyModelConfig(**(TINY_MODEL.to_dict() | {"num_layers": 2}))
    with pytest.raises(CheckpointError, match="num_layers"):
        _train(tmp_path / "tuned", 1, model_config=other, init_from=source)
    with pytest.raises(CheckpointError, match="toy_config.json"):
        _train(tmp_path / "other", 1, init_from=tmp_path)


def test_temporal_loss_weights_frame_to_frame_jumps_above_a_steady_error():
    clean = torch.zeros(1, 4, 3, 8, 8)
    steady = clean + 0.1  # the same error in every frame
    jumping = clean + 0.1 * torch.tensor([1.0, -1.0, 1.0, -1.0]).view(1, 4, 1, 1, 1)  # same size, flips
    without = TrainConfig(region_loss_weight=0, frame_mean_loss_weight=0)
    with_temporal = TrainConfig(region_loss_weight=0, frame_mean_loss_weight=0, temporal_loss_weight=2.0)
    assert x0_loss(jumping, clean, without) == pytest.approx(x0_loss(steady, clean, without).item())
    assert x0_loss(steady, clean, with_temporal) == pytest.approx(x0_loss(steady, clean, without).item())
    assert x0_loss(jumping, clean, with_temporal) > 5 * x0_loss(steady, clean, with_temporal)
    assert x0_loss(clean, clean, with_temporal) == 0


def test_negative_loss_weight_is_a_clear_error():
    with pytest.raises(ValueError, match="temporal_loss_weight=-1"):
        TrainConfig(temporal_loss_weight=-1.0).validate()


def test_rendering_ahead_in_worker_processes_trains_the_same_weights(tmp_path):
    _train(tmp_path / "in_loop", 2)
    _train(tmp_path / "workers", 2, data_workers=1)
    in_loop, workers = _checkpoint_weights(tmp_path / "in_loop"), _checkpoint_weights(tmp_path / "workers")
    for name, value in in_loop.items():
        torch.testing.assert_close(workers[name], value, rtol=0, atol=0, msg=name)


def test_a_time_limit_stops_early_with_a_checkpoint_that_resumes(tmp_path):
    _train(tmp_path, 50, time_limit_minutes=0.0)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 1  # the limit is checked after every step
    assert '"event": "time_limit"' in (tmp_path / "train.log").read_text()
    _train(tmp_path, 2, resume=True)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 2


def test_an_unknown_or_missing_device_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="not a torch device"):
        _train(tmp_path, 1, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            _train(tmp_path, 1, device="cuda")


def test_train_toy_script_resumes_its_committed_run_with_the_v2_recipe(tmp_path):
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    fake = tmp_path / "python"
    fake.write_text('#!/bin/sh\necho "$@" > "$ARGS_FILE"\n')
    fake.chmod(0o755)
    environment = os.environ | {"PYTHON": str(fake), "ARGS_FILE": str(tmp_path / "args"), "DEVICE": "cuda"}
    subprocess.run(["bash", str(root / "scripts/train-toy.sh")], check=True, env=environment, capture_output=True)
    arguments = (tmp_path / "args").read_text().split()
    assert arguments[:5] == ["-m", "attnkit_lmp.toy", "train", "--out", "training/cogvideox-v2"]
    assert "--resume" in arguments and arguments[arguments.index("--device") + 1] == "cuda"
    assert int(arguments[arguments.index("--data-workers") + 1]) >= 1
    # The script's schedule is the one the committed CogVideoX run last started on.
    log = [json.loads(line) for line in (root / "training/cogvideox-v2/train.log").read_text().splitlines()]
    committed = [entry["steps"] for entry in log if entry.get("event") == "start"][-1]
    assert arguments[arguments.index("--steps") + 1] == str(committed)
    longer = environment | {"STEPS": "60000"}
    subprocess.run(["bash", str(root / "scripts/train-toy.sh")], check=True, env=longer, capture_output=True)
    arguments = (tmp_path / "args").read_text().split()
    assert arguments[arguments.index("--steps") + 1] == "60000"


def test_resuming_a_finished_run_trains_nothing_and_keeps_the_folder(tmp_path, capsys):
    _train(tmp_path, 2)
    searched = tmp_path / "pipeline" / "lmp_defaults.json"
    searched.write_text("{}")
    weights = (tmp_path / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes()
    _train(tmp_path, 2, resume=True)
    assert "already at step 2 of --steps 2: nothing to train" in capsys.readouterr().err
    assert searched.is_file()  # not re-exported, so the settings searched on these weights stay
    assert (tmp_path / "pipeline" / "transformer" / "diffusion_pytorch_model.safetensors").read_bytes() == weights
    _train(tmp_path, 3, resume=True)  # a longer schedule continues it
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 3
    assert not searched.exists()


def test_the_toy_commands_are_reachable_from_attnkit_lmp():
    from attnkit_lmp.cli import build_parser
    from attnkit_lmp.toy.measure import run_measure_cli

    args = build_parser().parse_args(["toy", "measure", "--out", "runs/x", "--clips", "2"])
    assert args.command == "toy" and args.handler is run_measure_cli and args.clips == 2
    train_args = build_parser().parse_args(["toy", "train", "--out", "runs/t", "--steps", "3", "--device", "cpu"])
    assert train_args.steps == 3 and train_args.device == "cpu"


def test_train_toy_script_cuts_a_large_archive_into_parts_that_join_back(tmp_path):
    """A GPU lease returns files of at most 16 MiB, so the packed run comes back in parts."""
    import os
    import subprocess
    import tarfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    run = root / "training" / "cogvideox-v2"
    if not (run / "pipeline").is_dir():
        pytest.skip("no committed v2 run folder in this checkout")
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\nexit 0\n")  # stands in for training: only the packing is under test
    fake.chmod(0o755)
    archive = tmp_path / "cogvideox-v2.tar.gz"
    environment = os.environ | {"PYTHON": str(fake), "ARCHIVE": str(archive), "PART_MIB": "4"}
    subprocess.run(["bash", str(root / "scripts/train-toy.sh")], check=True, env=environment, capture_output=True)

    parts = sorted(tmp_path.glob("cogvideox-v2.tar.gz.part*"))
    assert len(parts) >= 2 and not archive.exists()
    assert all(part.stat().st_size <= 4 * 1024 * 1024 for part in parts)
    archive.write_bytes(b"".join(part.read_bytes() for part in parts))
    with tarfile.open(archive) as packed:
        names = packed.getnames()
    assert "train.log" in names and "pipeline/transformer/diffusion_pytorch_model.safetensors" in names
