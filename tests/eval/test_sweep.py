"""The evaluation sweep: plan and shards, what one run writes, the baseline's noise, the Table 1 aggregate."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from attnkit_lmp.eval.datasets import EvalItem
from attnkit_lmp.eval.report import TABLE1_METRICS, build_table, markdown_table
from attnkit_lmp.eval.sweep import ItemRunner, SweepItem, plain_generation, plan_items, shard
from attnkit_lmp.methods import METHODS, resolve_methods
from attnkit_lmp.toy.scores import ToyWorldMetrics

from sweep_helpers import (
    fast_settings,
    result_lines,
    sweep,
    toy_dataset,
    toy_dataset_master,
    video_names,
)  # noqa: F401


def targets(videos=("a", "b"), splits=("ori", "sub", "back")):
    return [
        EvalItem(video, split, f"{video} {split}", "x", f"{video} ori", "x")
        for video in videos
        for split in splits
    ]


def test_plan_has_every_video_split_method_seed_once_video_by_video():
    methods = resolve_methods(["baseline", "lmp"])
    items = plan_items(targets(), methods, seeds=[0, 1])
    keys = [item.key for item in items]
    assert len(keys) == len(set(keys)) == 2 * 3 * 2 * 2
    # All of video a's items come before video b's: its reference is loaded and tracked once.
    assert [item.target.video for item in items] == ["a"] * 12 + ["b"] * 12
    assert keys[0] == "a/ori/baseline/seed0"


def test_shards_partition_the_plan_whatever_the_number_of_processes():
    items = plan_items(targets(), resolve_methods(["baseline", "lmp", "lmp-no-asm"]), seeds=[0])
    for world_size in (1, 2, 3, 5):
        shards = [shard(items, rank, world_size) for rank in range(world_size)]
        keys = [item.key for part in shards for item in part]
        assert sorted(keys) == sorted(item.key for item in items)
        assert len(keys) == len(set(keys))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1


def test_methods_are_defined_once_with_their_config_changes():
    assert METHODS["baseline"].kind == "plain"
    assert METHODS["lmp"].config_changes == {}
    assert METHODS["lmp-no-fbdm"].config_changes == {"enable_fbdm": False}
    assert METHODS["lmp-no-asm"].config_changes == {"enable_asm": False}
    with pytest.raises(ValueError, match="unknown method.*'lmp-nofbdm'.*known methods: baseline, lmp"):
        resolve_methods(["lmp", "lmp-nofbdm"])
    with pytest.raises(ValueError, match="more than once"):
        resolve_methods(["lmp", "lmp"])


def test_baseline_is_the_plain_pipeline_from_the_noise_lmp_starts_from():
    """With every LMP module off, motion_transfer equals the plain pipeline on its first noise draw."""
    from attnkit.testing import tiny_cogvideox_pipeline
    from attnkit_lmp import LMPConfig, motion_transfer
    from attnkit_lmp.transfer import prepare_transfer

    pipe = tiny_cogvideox_pipeline("t2v")
    pipe.set_progress_bar_config(disable=True)
    target = EvalItem("v", "sub", "a blue square", "blue square", "a red circle", "red circle")
    config = LMPConfig.for_steps(2, enable_fbdm=False, enable_rmtm=False, enable_asm=False)
    resolved = prepare_transfer(
        pipe, None, target.reference_prompt, "red circle", target.prompt, "blue square", None, config
    ).config
    baseline = plain_generation(pipe, target, resolved, torch.Generator().manual_seed(3))
    lmp_off = motion_transfer(
        pipe,
        reference=torch.rand(9, 3, 32, 32, generator=torch.Generator().manual_seed(0)),
        reference_prompt=target.reference_prompt,
        reference_subject="red circle",
        prompt=target.prompt,
        subject="blue square",
        config=config,
        generator=torch.Generator().manual_seed(3),
        progress=False,
    )
    torch.testing.assert_close(baseline, lmp_off, atol=1e-5, rtol=0)
    other_seed = plain_generation(pipe, target, resolved, torch.Generator().manual_seed(4))
    assert not torch.allclose(baseline, other_seed)


def test_a_sweep_writes_a_record_and_a_video_per_item_and_the_table(toy_dataset, tmp_path):
    out = tmp_path / "out"
    summary = sweep(fast_settings(toy_dataset, out, extra_metrics=(ToyWorldMetrics(),)))
    assert (summary.planned, summary.ran, summary.skipped) == (8, 8, 0)
    records = [json.loads(line) for line in result_lines(out)]
    assert sorted(record["key"] for record in records) == sorted(
        f"{video}/{split}/{method}/seed0"
        for video in video_names(toy_dataset)
        for split in ("ori", "sub")
        for method in ("baseline", "lmp")
    )
    for record in records:
        assert (out / record["video_path"]).stat().st_size > 0
        assert -1 <= record["metrics"]["motion_fidelity"] <= 1
        assert record["motion_fidelity"]["num_reference"] == 64  # the 8 x 8 grid
        assert set(record["metrics"]) == {
            "motion_fidelity",
            "path_error",
            "appearance_kept",
            "object_present",
            "centroid_mf",
            "motion_extent",
        }
        assert 0 < record["seconds"]["generation"] < record["seconds"]["item"]
    sub = next(record for record in records if record["key"].endswith("/sub/lmp/seed0"))
    assert sub["reference_prompt"] != sub["prompt"]  # Sub generates the changed subject with the Ori motion

    table = (out / "table.md").read_text()
    assert "| Method | Ori Align | Ori Cons. | Ori Pick. | Ori MF | Sub Align |" in table
    assert "| baseline | — | — | — |" in table and "| lmp | — | — | — |" in table
    assert "Align: not computed (no --clip model was given)" in table
    assert "Pick.: not computed (no --pickscore model was given)" in table
    assert "## Toy-world checks" in table
    rows = list(csv.DictReader((out / "table.csv").open()))
    assert [row["method"] for row in rows] == ["baseline", "lmp"]
    assert rows[0]["ori_align"] == "" and rows[0]["mean_motion_fidelity"] != ""
    mf = [
        record["metrics"]["motion_fidelity"]
        for record in records
        if record["key"].split("/")[1:3] == ["ori", "lmp"]
    ]
    assert float(rows[1]["ori_motion_fidelity"]) == pytest.approx(np.mean(mf), abs=1e-12)
    page = (out / "charts.html").read_text()
    assert "Plotly" in page and 'src="http' not in page  # plotly.js inlined: opens offline
    assert summary.generation_seconds > 0 and 0 <= summary.item_overhead < 1


def test_text_metrics_are_computed_when_their_models_are_given(
    toy_dataset, tmp_path, tiny_clip_dir, tiny_pickscore_dirs
):
    out = tmp_path / "out"
    pickscore, processor = tiny_pickscore_dirs
    sweep(
        fast_settings(
            toy_dataset,
            out,
            methods=("lmp",),
            splits=("ori",),
            clip=tiny_clip_dir,
            pickscore=pickscore,
            pickscore_processor=processor,
        )
    )
    for record in map(json.loads, result_lines(out)):
        assert set(record["metrics"]) == {"motion_fidelity", "align", "consistency", "pick"}
        assert 0 <= record["metrics"]["align"] <= 100 and -1 <= record["metrics"]["consistency"] <= 1
    table = (out / "table.md").read_text()
    assert "not computed" not in table and "—" not in table


def test_pick_alone_is_computed_without_a_clip_model(toy_dataset, tmp_path, tiny_pickscore_dirs):
    out = tmp_path / "out"
    pickscore, processor = tiny_pickscore_dirs
    sweep(
        fast_settings(
            toy_dataset,
            out,
            methods=("baseline",),
            splits=("ori",),
            pickscore=pickscore,
            pickscore_processor=processor,
        )
    )
    for record in map(json.loads, result_lines(out)):
        assert set(record["metrics"]) == {"motion_fidelity", "pick"}
    assert "Align: not computed (no --clip model was given)" in (out / "table.md").read_text()


def test_the_mean_column_is_the_mean_of_the_split_means_and_absent_values_stay_out():
    records = [
        {"method": "lmp", "split": "ori", "metrics": {"motion_fidelity": 0.2}},
        {"method": "lmp", "split": "ori", "metrics": {"motion_fidelity": 0.4}},
        {"method": "lmp", "split": "sub", "metrics": {"motion_fidelity": 0.9}},
        {"method": "lmp", "split": "sub", "metrics": {"motion_fidelity": None}},  # e.g. no object found
    ]
    table = build_table(records, ["lmp"], ["ori", "sub"], TABLE1_METRICS)
    assert table.cell("lmp", "ori", "motion_fidelity").mean == pytest.approx(0.3)
    assert table.cell("lmp", "sub", "motion_fidelity").count == 1
    assert table.cell("lmp", "mean", "motion_fidelity").mean == pytest.approx((0.3 + 0.9) / 2)
    assert table.cell("lmp", "mean", "align").mean is None
    assert (
        markdown_table(table).splitlines()[2]
        == "| lmp | — | — | — | 0.300 | — | — | — | 0.900 | — | — | — | 0.600 |"
    )


def test_the_centroid_tracker_follows_the_reference_masks(toy_dataset, tmp_path):
    out = tmp_path / "out"
    sweep(fast_settings(toy_dataset, out, methods=("baseline",), splits=("ori",), tracker="centroid"))
    for record in map(json.loads, result_lines(out)):
        assert record["motion_fidelity"]["num_reference"] == 1
        assert record["motion_fidelity"]["num_reference_moving"] == 1  # the toy reference always moves


def test_the_reference_is_tracked_once_per_video(toy_dataset, tmp_path, monkeypatch):
    calls = []
    original = ItemRunner.reference

    def counting(self, video, geometry):
        if self._reference_video != video:
            calls.append(video)
        return original(self, video, geometry)

    monkeypatch.setattr(ItemRunner, "reference", counting)
    sweep(fast_settings(toy_dataset, tmp_path / "out"))
    assert calls == video_names(toy_dataset)


def test_item_keys_name_video_split_method_and_seed():
    item = SweepItem(targets(["dog"], ["back"])[0], METHODS["lmp-no-asm"], 7)
    assert item.key == "dog/back/lmp-no-asm/seed7"
    assert item.video_path == "videos/lmp-no-asm/dog/back-seed7.mp4"


def test_a_dataset_without_masks_runs_with_the_grid_tracker_when_told(toy_dataset, tmp_path):
    import shutil

    shutil.rmtree(toy_dataset / "Annotations")
    out = tmp_path / "out"
    summary = sweep(fast_settings(toy_dataset, out, methods=("baseline",), splits=("ori",), require_annotations=False))
    assert summary.ran == 2 and "| baseline |" in (out / "table.md").read_text()
