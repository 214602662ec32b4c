"""Data-parallel sweeps: two CPU processes under ``accelerate launch`` (gloo) give the table of one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from attnkit.testing import saved_tiny_cogvideox_pipeline

from sweep_helpers import fast_settings, result_lines, sweep, toy_dataset, toy_dataset_master  # noqa: F401


def accelerate_command(dataset: Path, out: Path) -> list[str]:
    # accelerate's --cpu launcher needs MPI for several processes; --multi_gpu starts them with torchrun,
    # and the sweep builds a gloo group when there is no GPU.
    return [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0",
        "-m", "attnkit_lmp.cli", "eval", "--dataset", str(dataset), "--prompts", str(dataset / "prompts.json"),
        "--model", saved_tiny_cogvideox_pipeline("t2v"), "--methods", "baseline,lmp", "--splits", "ori,sub", "--steps", "2", "--grid-size", "8",
        "--threads", "1", "--no-progress", "--out", str(out),
    ]  # fmt: skip


def test_two_processes_split_the_items_and_rank_0_writes_the_table_of_one_process(toy_dataset, tmp_path):
    two = tmp_path / "two-processes"
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        accelerate_command(toy_dataset, two), capture_output=True, text=True, timeout=280, env=environment
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "rank 0/2: 4 item(s) run" in run.stdout and "rank 1/2: 4 item(s) run" in run.stdout

    shards = {
        path.name: [json.loads(line)["rank"] for line in path.read_text().splitlines()]
        for path in (two / "results").glob("*.jsonl")
    }
    assert shards == {"items-rank0.jsonl": [0] * 4, "items-rank1.jsonl": [1] * 4}

    one = tmp_path / "one-process"
    sweep(fast_settings(toy_dataset, one))
    assert (two / "table.csv").read_text() == (one / "table.csv").read_text()
    assert (two / "table.md").read_text() == (one / "table.md").read_text()
    by_key = {json.loads(line)["key"]: json.loads(line)["metrics"] for line in result_lines(one)}
    assert {json.loads(line)["key"]: json.loads(line)["metrics"] for line in result_lines(two)} == by_key
