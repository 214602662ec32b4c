"""A sweep's aggregate as the paper's Table 1: methods as rows; Align, Cons., Pick., MF per split and mean.

:func:`build_table` averages the finished items' metrics per (method, split) over videos and seeds (a
ratio such as motion extent shows the median instead); the "Mean" column is the mean of the split
values, as the paper averages its splits. A metric whose model was
not given (Align and Cons. need ``--clip``, Pick. needs ``--pickscore``) is absent, shown as "—" with a
note, never as a number. :func:`write_report` writes, atomically, into the sweep's folder::

    table.md      the table (and the toy world's checks when computed), with notes on what is absent
    table.csv     the same numbers at full precision, one row per method
    table.json    every cell: mean, standard deviation and number of items
    charts.html   plotly bar charts of the table and per-item MF, one self-contained page
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SPLIT_TITLES = {"ori": "Ori", "sub": "Sub", "back": "Back", "mean": "Mean"}


@dataclass(frozen=True)
class MetricColumn:
    """A metric of the table: its key in the item records, its title, its decimals, and what it needs."""

    key: str
    title: str
    decimals: int
    needs: str | None = None
    """The option whose model the metric needs; None when it needs no model."""
    statistic: str = "mean"
    """What a split's cell shows of its items: "mean", or "median" for a ratio that a few items may blow up."""


TABLE1_METRICS: tuple[MetricColumn, ...] = (
    MetricColumn("align", "Align", 2, "--clip"),
    MetricColumn("consistency", "Cons.", 3, "--clip"),
    MetricColumn("pick", "Pick.", 2, "--pickscore"),
    MetricColumn("motion_fidelity", "MF", 3),
)
TOY_METRICS: tuple[MetricColumn, ...] = (
    MetricColumn("centroid_mf", "Centroid MF", 3),
    MetricColumn("path_error", "Path err. (px)", 2),
    MetricColumn("appearance_kept", "Appearance kept", 2),
    MetricColumn("object_present", "Object present", 2),
    MetricColumn("motion_extent", "Motion extent", 2, statistic="median"),
)


@dataclass(frozen=True)
class Cell:
    """One (method, split, metric) of the table; ``mean`` is None when no item has the metric."""

    mean: float | None
    std: float | None
    count: int
    median: float | None = None

    def value(self, statistic: str) -> float | None:
        """The cell's mean or median, by the column's ``statistic``."""
        return self.median if statistic == "median" else self.mean


@dataclass
class Table:
    """Cells by (method, split or "mean", metric key), plus what the table was built from."""

    methods: list[str]
    splits: list[str]
    metrics: list[MetricColumn]
    cells: dict[tuple[str, str, str], Cell]
    planned_items: int
    finished_items: int

    def cell(self, method: str, split: str, metric: str) -> Cell:
        return self.cells[(method, split, metric)]

    def has(self, metric: str) -> bool:
        """True when some cell of ``metric`` holds a number."""
        return any(cell.mean is not None for (_, _, key), cell in self.cells.items() if key == metric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "methods": self.methods,
            "splits": self.splits,
            "metrics": [column.key for column in self.metrics],
            "planned_items": self.planned_items,
            "finished_items": self.finished_items,
            "cells": [
                {"method": method, "split": split, "metric": metric, **cell.__dict__}
                for (method, split, metric), cell in self.cells.items()
            ],
        }


def build_table(
    records: Sequence[Mapping[str, Any]],
    methods: Sequence[str],
    splits: Sequence[str],
    metrics: Sequence[MetricColumn] = TABLE1_METRICS,
    planned_items: int | None = None,
) -> Table:
    """Aggregate item records (as the sweep writes them) into a :class:`Table`.

    Records are averaged in the order given (the plan's), so the same records give bit-identical means
    however many processes computed them. NaN values (e.g. no object found) are left out of a cell.
    """
    cells: dict[tuple[str, str, str], Cell] = {}
    for method in methods:
        for column in metrics:
            split_means = []
            for split in splits:
                values = [
                    float(record["metrics"][column.key])
                    for record in records
                    if record["method"] == method
                    and record["split"] == split
                    and column.key in record["metrics"]
                    and record["metrics"][column.key] is not None
                    and not math.isnan(float(record["metrics"][column.key]))
                ]
                cell = _cell(values)
                cells[(method, split, column.key)] = cell
                split_means.append(cell.value(column.statistic))
            if split_means and all(mean is not None for mean in split_means):
                cells[(method, "mean", column.key)] = _cell(split_means)
            else:
                cells[(method, "mean", column.key)] = Cell(None, None, 0)
    return Table(
        methods=list(methods),
        splits=list(splits),
        metrics=list(metrics),
        cells=cells,
        planned_items=len(records) if planned_items is None else planned_items,
        finished_items=len(records),
    )


def _cell(values: Sequence[float]) -> Cell:
    if not values:
        return Cell(None, None, 0)
    mean = math.fsum(values) / len(values)
    variance = math.fsum((value - mean) ** 2 for value in values) / len(values)
    return Cell(mean, math.sqrt(variance), len(values), statistics.median(values))


def shown_value(table: Table, method: str, split: str, column: MetricColumn) -> float | None:
    """What the table shows: a split's mean or median (the column's statistic); for "mean", the split values' mean."""
    cell = table.cell(method, split, column.key)
    return cell.mean if split == "mean" else cell.value(column.statistic)


def markdown_table(table: Table) -> str:
    """The table as GitHub markdown: one row per method, a column per (split, metric), then the means."""
    columns = [(split, column) for split in [*table.splits, "mean"] for column in table.metrics]
    header = ["Method"] + [f"{SPLIT_TITLES.get(split, split)} {column.title}" for split, column in columns]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * len(columns)]
    for method in table.methods:
        row = [method]
        for split, column in columns:
            value = shown_value(table, method, split, column)
            row.append("—" if value is None else f"{value:.{column.decimals}f}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def csv_table(table: Table) -> str:
    """The table's values at full precision: ``method`` then ``<split>_<metric>`` columns; absent is empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = [(split, column) for split in [*table.splits, "mean"] for column in table.metrics]
    writer.writerow(["method"] + [f"{split}_{column.key}" for split, column in columns])
    for method in table.methods:
        writer.writerow(
            [method]
            + [
                "" if (value := shown_value(table, method, split, column)) is None else repr(value)
                for split, column in columns
            ]
        )
    return buffer.getvalue()


def absent_notes(table: Table) -> list[str]:
    """One note per metric that has no number, saying what to pass to compute it."""
    notes = []
    for column in table.metrics:
        if not table.has(column.key):
            reason = f"no {column.needs} model was given" if column.needs else "no item produced it"
            notes.append(f"{column.title}: not computed ({reason}); shown as —.")
    return notes


def charts(table: Table, toy: Table | None, records: Sequence[Mapping[str, Any]]):
    """{div id: plotly figure}: the table's metrics as grouped bars (std over items as error bars), per-item MF."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figures = {}
    for name, part in (("table1", table), ("toy", toy)):
        if part is None:
            continue
        shown = [column for column in part.metrics if part.has(column.key)]
        if not shown:
            continue
        figure = make_subplots(rows=1, cols=len(shown), subplot_titles=[column.title for column in shown])
        x = [SPLIT_TITLES.get(split, split) for split in [*part.splits, "mean"]]
        for index, column in enumerate(shown, start=1):
            for colour, method in enumerate(part.methods):
                splits = [*part.splits, "mean"]
                cells = [part.cell(method, split, column.key) for split in splits]
                figure.add_trace(
                    go.Bar(
                        name=method,
                        x=x,
                        y=[shown_value(part, method, split, column) for split in splits],
                        error_y=dict(type="data", array=[cell.std or 0.0 for cell in cells]),
                        legendgroup=method,
                        showlegend=index == 1,
                        marker_color=_COLOURS[colour % len(_COLOURS)],
                        hovertemplate=f"{method} %{{x}} {column.title}: %{{y:.{column.decimals + 1}f}}<extra></extra>",
                    ),
                    row=1,
                    col=index,
                )
        title = "Table 1 metrics" if name == "table1" else "Toy-world checks"
        title += " (error bars: std over items; for Mean, over the split means)"
        figure.update_layout(title=title, barmode="group", height=420, width=max(500, 330 * len(shown)))
        figures[name] = figure
    if records:
        figure = go.Figure()
        for colour, method in enumerate(table.methods):
            chosen = [record for record in records if record["method"] == method]
            figure.add_trace(
                go.Box(
                    name=method,
                    x=[SPLIT_TITLES.get(record["split"], record["split"]) for record in chosen],
                    y=[record["metrics"]["motion_fidelity"] for record in chosen],
                    text=[record["key"] for record in chosen],
                    boxpoints="all",
                    jitter=0.4,
                    marker_color=_COLOURS[colour % len(_COLOURS)],
                )
            )
        figure.update_layout(title="MF per item", boxmode="group", yaxis_title="MF", height=420, width=900)
        figures["items"] = figure
    return figures


_COLOURS = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3")


def write_report(
    out: str | Path, items: Sequence[Any], finished: Mapping[str, Mapping[str, Any]], settings: Any = None
) -> dict[str, Path]:
    """Build and write the table of the planned ``items`` from the ``finished`` records; returns the paths."""
    from attnkit.record.atomic import atomic_write_bytes
    from attnkit.viz import save_html

    out = Path(out)
    methods = list(dict.fromkeys(item.method.name for item in items))
    splits = list(dict.fromkeys(item.target.split for item in items))
    records = [finished[item.key] for item in items if item.key in finished]
    table = build_table(records, methods, splits, TABLE1_METRICS, planned_items=len(items))
    toy = None
    if any(column.key in record["metrics"] for record in records for column in TOY_METRICS):
        toy = build_table(records, methods, splits, TOY_METRICS, planned_items=len(items))

    videos = len(dict.fromkeys(item.target.video for item in items))
    seeds = len(dict.fromkeys(item.seed for item in items))
    lines = ["# Table 1", "", markdown_table(table)]
    notes = [
        f"Each cell: mean over {videos} video(s) x {seeds} seed(s); Mean: mean of the split means.",
        *absent_notes(table),
    ]
    if settings is not None:
        notes.append(
            f"MF: tracker {settings.tracker}"
            + (
                ""
                if settings.tracker == "centroid"
                else f", {settings.grid_size} x {settings.grid_size} grid"
            )
            + (f", frames enlarged {settings.track_upscale} x" if settings.track_upscale > 1 else "")
            + f", min displacement {settings.min_displacement} px (of the tracked frames)."
        )
    if len(records) < len(items):
        notes.append(
            f"Incomplete: {len(records)} of {len(items)} items finished; rerun the same command to finish."
        )
    lines += [f"- {note}" for note in notes]
    if toy is not None:
        lines += [
            "",
            "## Toy-world checks",
            "",
            markdown_table(toy),
            "- Centroid MF: MF of the object's centroid path against the reference's; the two steps touching a "
            "frame without object earn nothing, a video without object scores 0.",
            "- Path err.: mean distance (px) between the generated and the reference object's centroid.",
            "- Appearance kept: share of items whose object has the target prompt's colour and shape.",
            "- Object present: share of frames in which an object is found.",
            "- Motion extent: median over items of the generated centroid path's length over the reference's "
            "(1.00: as far as the reference; MF scores directions only); Mean: mean of the split medians.",
        ]
    paths = {
        "markdown": atomic_write_bytes(out / "table.md", ("\n".join(lines) + "\n").encode("utf-8")),
        "csv": atomic_write_bytes(out / "table.csv", csv_table(table).encode("utf-8")),
        "json": atomic_write_bytes(
            out / "table.json",
            (
                json.dumps({"table1": table.to_dict(), "toy": toy.to_dict() if toy else None}, indent=1)
                + "\n"
            ).encode("utf-8"),
        ),
    }
    figures = charts(table, toy, records)
    if figures:
        paths["charts"] = save_html(figures, out / "charts.html", title="attnkit-lmp eval")
    return paths
