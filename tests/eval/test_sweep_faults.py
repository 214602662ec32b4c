"""A sweep never keeps numbers whose inputs changed, never describes settings it did not run, never writes NaN."""

from __future__ import annotations

import json
import os

import pytest

from attnkit import plugins as plugins_module
from attnkit.record import atomic as atomic_module
from attnkit.testing import saved_tiny_cogvideox_pipeline

from attnkit_lmp.eval import sweep as sweep_module
from attnkit_lmp.eval.results import ResultsStore, SweepLockedError
from attnkit_lmp.eval.sweep import ItemRunner, SweepError

from sweep_helpers import fast_settings, result_lines, sweep, toy_dataset, toy_dataset_master, video_names  # noqa: F401


@pytest.fixture
def finished_sweep(toy_dataset, tmp_path):
    out = tmp_path / "out"
    sweep(fast_settings(toy_dataset, out, methods=("baseline",)))
    return toy_dataset, out


def count_generations(monkeypatch) -> list[str]:
    generated: list[str] = []
    original = ItemRunner.generate

    def counting(self, item, reference_view):
        generated.append(item.key)
        return original(self, item, reference_view)

    monkeypatch.setattr(ItemRunner, "generate", counting)
    return generated


def test_an_edited_prompt_recomputes_its_item_and_the_table_uses_the_new_numbers(finished_sweep, monkeypatch):
    dataset, out = finished_sweep
    first = video_names(dataset)[0]
    prompts = json.loads((dataset / "prompts.json").read_text())
    entry = prompts["videos"][first]["sub"]
    entry["prompt"] = entry["prompt"].replace(entry["subject"], f"{entry['subject']} {entry['subject']}", 1)
    (dataset / "prompts.json").write_text(json.dumps(prompts))

    generated = count_generations(monkeypatch)
    summary = sweep(fast_settings(dataset, out, methods=("baseline",)))
    assert generated == [f"{first}/sub/baseline/seed0"]
    assert summary.stale == {f"{first}/sub/baseline/seed0": ["texts"]}
    assert "recomputed 1 item(s) whose inputs changed" in summary.describe()
    # A third run finds every item current: the new record, not the stale first one, is the item's result.
    assert sweep(fast_settings(dataset, out, methods=("baseline",))).ran == 0


def test_a_replaced_reference_frame_recomputes_that_videos_items(finished_sweep, monkeypatch):
    dataset, out = finished_sweep
    first = video_names(dataset)[0]
    frame = sorted((dataset / "JPEGImages" / first).iterdir())[0]
    frame.write_bytes(sorted((dataset / "JPEGImages" / first).iterdir())[1].read_bytes())

    generated = count_generations(monkeypatch)
    summary = sweep(fast_settings(dataset, out, methods=("baseline",)))
    assert sorted(generated) == [f"{first}/ori/baseline/seed0", f"{first}/sub/baseline/seed0"]
    assert set(map(tuple, summary.stale.values())) == {("reference_video",)}


def test_installing_a_plugin_recomputes_every_item(finished_sweep, monkeypatch):
    dataset, out = finished_sweep

    class ThirdParty:
        """An entry-point plugin that could change attention."""

    def load_entry_points(manager, group):
        manager.register(ThirdParty(), name="thirdparty-attention")

    monkeypatch.setattr(plugins_module, "load_entry_point_plugins", load_entry_points)
    generated = count_generations(monkeypatch)
    summary = sweep(fast_settings(dataset, out, methods=("baseline",)))
    assert len(generated) == 4 and set(map(tuple, summary.stale.values())) == {("plugins",)}


def test_a_sweep_that_loses_the_lock_leaves_the_folders_settings_alone(finished_sweep):
    dataset, out = finished_sweep
    (out / "sweep.json").unlink()  # the folder's first run is still writing: no settings yet
    running = ResultsStore(out, 0)
    running.lock()
    try:
        with pytest.raises(SweepLockedError):
            sweep(fast_settings(dataset, out, methods=("baseline",), grid_size=16))
    finally:
        running.unlock()
    assert not (out / "sweep.json").exists()


def test_a_nan_generation_is_an_error_naming_the_item_and_writes_nothing(toy_dataset, tmp_path):
    out = tmp_path / "out"
    # Finite, so the config accepts it, but the first step's guidance overflows the latents.
    settings = fast_settings(toy_dataset, out, methods=("lmp",), guidance_scale=1e38)
    with pytest.raises(SweepError, match=r"item '.*/ori/lmp/seed0': .*inf or NaN"):
        sweep(settings)
    assert result_lines(out) == [] and not list(out.rglob("*.mp4"))


def test_a_video_is_on_disk_before_the_results_line_that_points_at_it(toy_dataset, tmp_path, monkeypatch):
    events: list[str] = []
    original_fsync, original_append = atomic_module.fsync_path, ResultsStore.append
    monkeypatch.setattr(atomic_module, "fsync_path", lambda path: (events.append(f"fsync {path.name}"), original_fsync(path)))
    monkeypatch.setattr(
        ResultsStore, "append", lambda self, record: (events.append(f"append {record['video_path']}"), original_append(self, record))
    )
    sweep(fast_settings(toy_dataset, tmp_path / "out", methods=("baseline",), splits=("ori",), videos=video_names(toy_dataset)[:1]))
    (append,) = [index for index, event in enumerate(events) if event.startswith("append")]
    video_name = events[append].rsplit("/", 1)[1]
    fsynced = [index for index, event in enumerate(events) if event.startswith("fsync .") and video_name in event]
    assert fsynced and fsynced[0] < append


def test_the_temporary_video_name_is_unpredictable(tmp_path):
    import numpy as np

    path = tmp_path / "video.mp4"
    predictable = tmp_path / f".video.mp4.{os.getpid()}.tmp"
    predictable.write_text("another process's file")
    sweep_module.write_mp4(path, np.zeros((3, 16, 16, 3), dtype=np.uint8), fps=8)
    assert predictable.read_text() == "another process's file"
    assert path.stat().st_size > 0 and [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == [predictable.name]


def test_a_layer_index_beyond_the_models_depth_is_refused_before_any_generation(toy_dataset, tmp_path, monkeypatch):
    from attnkit_lmp import LMPConfig

    config = tmp_path / "config.json"
    LMPConfig.for_steps(2, rmtm_layers=[0, 99]).save(config)
    generated = count_generations(monkeypatch)
    with pytest.raises(SweepError, match=r"method 'lmp': LMPConfig.rmtm_layers=\[0, 99\] .*would never run"):
        sweep(fast_settings(toy_dataset, tmp_path / "out", config=config))
    assert generated == []


def test_blocked_lmp_modules_are_refused_before_any_generation_and_the_command_exits_2(
    toy_dataset, tmp_path, monkeypatch, capsys
):
    from attnkit_lmp.cli import main

    monkeypatch.setenv("ATTNKIT_BLOCK_PLUGINS", "lmp.rmtm")
    generated = count_generations(monkeypatch)
    arguments = ["eval", "--dataset", str(toy_dataset), "--prompts", str(toy_dataset / "prompts.json")]
    arguments += ["--model", saved_tiny_cogvideox_pipeline("t2v"), "--out", str(tmp_path / "out"), "--steps", "2", "--no-progress"]
    assert main(arguments) == 2
    assert "blocks LMP's own modules ['lmp.rmtm']" in capsys.readouterr().err
    assert generated == []
