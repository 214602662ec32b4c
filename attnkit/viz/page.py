"""Saving figures as one self-contained HTML page (plotly.js inlined, so it opens offline)."""

from __future__ import annotations

import html
import os
from pathlib import Path

import plotly.graph_objects as go

from ..record.atomic import atomic_write_bytes
from ..record.maps import AttentionRecord
from .maps_figure import attention_figure
from .summary import concentration_figure

MAPS_DIV_ID = "attnkit-maps"
SUMMARY_DIV_ID = "attnkit-summary"


def save_html(
    figures: go.Figure | dict[str, go.Figure], path: str | os.PathLike, title: str = "attnkit"
) -> Path:
    """Write figures (one, or ``{div_id: figure}`` in page order) into one HTML file that needs no network.

    plotly.js is inlined once; each figure gets the given ``div_id``. The file is written atomically.
    """
    if isinstance(figures, go.Figure):
        figures = {MAPS_DIV_ID: figures}
    if not figures:
        raise ValueError("save_html got no figures; pass a plotly Figure or {div_id: figure}")
    parts = []
    for position, (div_id, figure) in enumerate(figures.items()):
        parts.append(
            figure.to_html(
                full_html=False,
                include_plotlyjs=position == 0,  # the library once, inline: the page must open offline
                div_id=div_id,
                config={"displaylogo": False, "responsive": False},
            )
        )
    page = (
        '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f'<title>{html.escape(title)}</title>\n</head>\n<body style="font-family: sans-serif">\n'
        + "\n".join(parts)
        + "\n</body>\n</html>\n"
    )
    return atomic_write_bytes(path, page.encode("utf-8"))


def write_explorer(
    record: AttentionRecord,
    path: str | os.PathLike,
    token: str | int | None = None,
    branch: str | None = None,
    steps: list[int] | None = None,
    layers: list[int] | None = None,
    frames=None,
    top_fraction: float = 0.1,
) -> Path:
    """The whole explorer in one call: the map figure and the concentration summary, saved as one page."""
    maps = attention_figure(record, token=token, branch=branch, steps=steps, layers=layers, frames=frames)
    summary = concentration_figure(record, token=token, branch=branch, top_fraction=top_fraction)
    return save_html(
        {MAPS_DIV_ID: maps, SUMMARY_DIV_ID: summary}, path, title=f"attnkit: {record.describe()}"
    )
