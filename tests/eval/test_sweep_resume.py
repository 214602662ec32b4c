"""Interrupted sweeps resume cleanly: finished items kept and skipped, torn lines repaired, nothing half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from attnkit.testing import saved_tiny_cogvideox_pipeline
from attnkit_lmp.eval.results import ResultsFileError, ResultsStore, SweepLockedError, read_records
from attnkit_lmp.eval.sweep import ItemRunner, SweepSettingsMismatchError

from sweep_helpers import fast_settings, result_lines, sweep, toy_dataset, toy_dataset_master  # noqa: F401


@pytest.fixture
def finished_sweep(toy_dataset, tmp_path):
    """A complete sweep of 8 items and a copy of its table, to compare resumed runs against."""
    out = tmp_path / "out"
    sweep(fast_settings(toy_dataset, out))
    return toy_dataset, out, (out / "table.csv").read_text()


def count_generations(monkeypatch) -> list[str]:
    generated: list[str] = []
    original = ItemRunner.generate

    def counting(self, item, reference_view):
        generated.append(item.key)
        return original(self, item, reference_view)

    monkeypatch.setattr(ItemRunner, "generate", counting)
    return generated


def test_a_rerun_skips_every_finished_item(finished_sweep, monkeypatch):
    dataset, out, table = finished_sweep
    lines = result_lines(out)
    generated = count_generations(monkeypatch)
    summary = sweep(fast_settings(dataset, out))
    assert generated == [] and (summary.ran, summary.skipped) == (0, 8)
    assert result_lines(out) == lines
    assert (out / "table.csv").read_text() == table


def test_a_larger_plan_runs_only_the_new_items(finished_sweep, monkeypatch):
    dataset, out, _ = finished_sweep
    generated = count_generations(monkeypatch)
    sweep(fast_settings(dataset, out, methods=("baseline", "lmp", "lmp-no-asm")))
    assert len(generated) == 4 and all("/lmp-no-asm/" in key for key in generated)
    assert len(result_lines(out)) == 12
    assert "| lmp-no-asm |" in (out / "table.md").read_text()


def test_a_torn_last_line_is_cut_off_and_its_item_recomputed(finished_sweep, monkeypatch):
    dataset, out, table = finished_sweep
    path = out / "results" / "items-rank0.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    torn_key = json.loads(lines[-1])["key"]
    path.write_text("".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a kill in the middle of a write
    assert [record["key"] for record in read_records(path)] == [
        json.loads(line)["key"] for line in lines[:-1]
    ]

    generated = count_generations(monkeypatch)
    summary = sweep(fast_settings(dataset, out))
    assert generated == [torn_key]
    assert summary.repaired_bytes == len(lines[-1]) // 2
    assert path.read_text().endswith("\n") and len(path.read_text().splitlines()) == len(lines)
    assert (out / "table.csv").read_text() == table


def test_an_interrupted_sweep_keeps_its_finished_items_and_leaves_no_partial_file(
    toy_dataset, tmp_path, monkeypatch
):
    out = tmp_path / "out"
    original = ItemRunner.generate
    calls = []

    def interrupted_at_the_fourth(self, item, reference_view):
        calls.append(item.key)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return original(self, item, reference_view)

    monkeypatch.setattr(ItemRunner, "generate", interrupted_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        sweep(fast_settings(toy_dataset, out))
    assert len(result_lines(out)) == 3
    assert not (out / "table.md").exists()
    assert not [path for path in out.rglob("*") if path.name.startswith(".") and path.suffix == ".tmp"]

    monkeypatch.setattr(ItemRunner, "generate", original)
    generated = count_generations(monkeypatch)
    summary = sweep(fast_settings(toy_dataset, out))
    assert generated[0] == calls[3] and len(generated) == 5  # from the interrupted item on
    assert (summary.ran, summary.skipped) == (5, 3)
    uninterrupted = tmp_path / "uninterrupted"
    sweep(fast_settings(toy_dataset, uninterrupted))
    assert (out / "table.csv").read_text() == (uninterrupted / "table.csv").read_text()


@pytest.mark.slow  # two command starts: ~35 s on the shared machine
def test_a_killed_process_resumes_where_it_stopped(toy_dataset, tmp_path):
    """SIGKILL the real command after two items, rerun it: all items once, none lost, same table."""
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "attnkit_lmp.cli", "eval", "--dataset", str(toy_dataset), "--prompts",
        str(toy_dataset / "prompts.json"), "--model", saved_tiny_cogvideox_pipeline("t2v"), "--methods", "baseline,lmp", "--splits", "ori,sub",
        "--steps", "2", "--grid-size", "8", "--threads", "1", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results" / "items-rank0.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if results.is_file() and results.read_bytes().count(b"\n") >= 2:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = len(results.read_bytes().split(b"\n")) - 1
    assert 2 <= finished_before < 8, "the kill should land mid-sweep"

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"{8 - finished_before} item(s) run, {finished_before} already done" in rerun.stdout
    keys = [json.loads(line)["key"] for line in result_lines(out)]
    assert len(keys) == len(set(keys)) == 8
    uninterrupted = tmp_path / "uninterrupted"
    sweep(fast_settings(toy_dataset, uninterrupted))
    assert (out / "table.csv").read_text() == (uninterrupted / "table.csv").read_text()


def test_other_settings_in_the_same_folder_are_refused_and_nothing_is_touched(finished_sweep):
    dataset, out, table = finished_sweep
    lines = result_lines(out)
    with pytest.raises(SweepSettingsMismatchError, match=r"lmp_config.num_inference_steps: was 2, now 3"):
        sweep(fast_settings(dataset, out, steps=3))
    with pytest.raises(SweepSettingsMismatchError, match=r"grid_size: was 8, now 16"):
        sweep(fast_settings(dataset, out, grid_size=16))
    assert result_lines(out) == lines and (out / "table.csv").read_text() == table


def test_a_damaged_complete_line_is_an_error_naming_file_and_line(finished_sweep):
    dataset, out, _ = finished_sweep
    path = out / "results" / "items-rank0.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = "{not json\n"
    path.write_text("".join(lines))
    with pytest.raises(
        ResultsFileError, match=r"line 3 of '.*items-rank0.jsonl' is not valid JSON.*Delete that line"
    ):
        sweep(fast_settings(dataset, out))


def test_a_second_sweep_on_the_same_folder_is_refused(tmp_path):
    first, second = ResultsStore(tmp_path, rank=0), ResultsStore(tmp_path, rank=0)
    first.lock()
    try:
        with pytest.raises(SweepLockedError, match="another sweep is already writing"):
            second.lock()
        other_rank = ResultsStore(tmp_path, rank=1)
        other_rank.lock()  # another rank's file is free
        other_rank.unlock()
    finally:
        first.unlock()
    second.lock()
    second.unlock()
