"""The eval report's toy checks show motion extent as the median ratio per split."""

from types import SimpleNamespace

import pytest

from attnkit_lmp.eval.report import TOY_METRICS, build_table, csv_table, markdown_table, write_report

EXTENTS = {"ori": [0.5, 0.6, 4.0], "sub": [1.0, 1.2, 1.1]}  # one item overshoots: the mean would hide the rest


def records():
    return [
        {
            "key": f"v{index}/{split}/lmp/seed0",
            "method": "lmp",
            "split": split,
            "metrics": {"motion_fidelity": 0.5, "centroid_mf": 0.9, "motion_extent": extent},
        }
        for split, extents in EXTENTS.items()
        for index, extent in enumerate(extents)
    ]


def test_motion_extent_cells_show_the_median_and_mean_averages_the_split_medians():
    table = build_table(records(), ["lmp"], ["ori", "sub"], TOY_METRICS)
    header, _, row = markdown_table(table).splitlines()
    values = dict(zip(header.strip("| ").split(" | "), row.strip("| ").split(" | ")))
    assert values["Ori Motion extent"] == "0.60"
    assert values["Sub Motion extent"] == "1.10"
    assert values["Mean Motion extent"] == "0.85"
    assert table.cell("lmp", "ori", "motion_extent").mean == pytest.approx(5.1 / 3)  # kept in table.json
    csv_header, csv_row = csv_table(table).splitlines()
    assert dict(zip(csv_header.split(","), csv_row.split(",")))["ori_motion_extent"] == "0.6"


def test_the_written_report_has_a_motion_extent_column_and_says_what_it_is(tmp_path):
    finished = {record["key"]: record for record in records()}
    items = [
        SimpleNamespace(
            key=record["key"],
            method=SimpleNamespace(name=record["method"]),
            target=SimpleNamespace(split=record["split"], video=record["key"].split("/")[0]),
            seed=0,
        )
        for record in finished.values()
    ]
    markdown = write_report(tmp_path, items, finished)["markdown"].read_text()
    toy_part = markdown.split("## Toy-world checks")[1]
    header = next(line for line in toy_part.splitlines() if line.startswith("| Method"))
    assert "| Ori Motion extent |" in header and "| Mean Motion extent |" in header
    assert "- Motion extent: median over items" in toy_part
