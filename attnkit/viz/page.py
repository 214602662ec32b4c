"""Saving figures as HTML pages that open offline: plotly.js inlined, or one shared copy per folder."""

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


PLOTLYJS_MODES = ("inline", "shared")
EXPLORER_DESCRIPTION = (
    "Each heatmap is one latent frame of the video: how much attention the chosen text token and each "
    "video token exchange (averaged over heads), at the denoising step and layer the sliders pick; "
    "brighter is more. The menu at the top left picks the token. Below, the concentration summary: the "
    "share of each map held by its most-attended video tokens, per layer and step."
)
SHARED_PLOTLYJS = "plotly.min.js"


def save_html(
    figures: go.Figure | dict[str, go.Figure],
    path: str | os.PathLike,
    title: str = "attnkit",
    description: str | None = None,
    plotlyjs: str = "inline",
) -> Path:
    """Write figures (one, or ``{div_id: figure}`` in page order) into one HTML file that needs no network.

    Each figure gets the given ``div_id``; ``description`` (plain text, blank lines between paragraphs)
    is shown above them, to say what the page shows. With ``plotlyjs="inline"`` the page carries
    plotly.js itself (about 4.5 MB) and opens anywhere on its own; with ``"shared"`` it loads
    ``plotly.min.js`` from its own folder, written there once, so a folder of pages carries the library
    once. Files are written atomically.
    """
    if isinstance(figures, go.Figure):
        figures = {MAPS_DIV_ID: figures}
    if not figures:
        raise ValueError("save_html got no figures; pass a plotly Figure or {div_id: figure}")
    if plotlyjs not in PLOTLYJS_MODES:
        raise ValueError(f"plotlyjs={plotlyjs!r} is not one of {list(PLOTLYJS_MODES)}")
    path = Path(path)
    if plotlyjs == "shared":
        write_shared_plotlyjs(path.parent if str(path.parent) else Path("."))
    parts = []
    if description:
        paragraphs = [part.strip() for part in description.split("\n\n") if part.strip()]
        parts.append(
            '<div class="attnkit-description" style="max-width: 60em">'
            + "".join(f"<p>{html.escape(paragraph)}</p>" for paragraph in paragraphs)
            + "</div>"
        )
    for position, (div_id, figure) in enumerate(figures.items()):
        if position > 0:
            include = False
        else:  # the library once: inline, or a script tag naming the shared copy beside the page
            include = True if plotlyjs == "inline" else "directory"
        parts.append(
            figure.to_html(
                full_html=False,
                include_plotlyjs=include,
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


def write_shared_plotlyjs(folder: Path) -> Path:
    """``folder/plotly.min.js``, the plotly.js of the installed plotly; rewritten only when it differs."""
    from plotly.offline import get_plotlyjs

    target = folder / SHARED_PLOTLYJS
    library = get_plotlyjs().encode("utf-8")
    if not target.is_file() or target.read_bytes() != library:
        atomic_write_bytes(target, library)
    return target


def write_explorer(
    record: AttentionRecord,
    path: str | os.PathLike,
    token: str | int | None = None,
    branch: str | None = None,
    steps: list[int] | None = None,
    layers: list[int] | None = None,
    frames=None,
    top_fraction: float = 0.1,
    description: str | None = EXPLORER_DESCRIPTION,
    plotlyjs: str = "inline",
) -> Path:
    """The whole explorer in one call: the map figure and the concentration summary, saved as one page.

    ``description`` and ``plotlyjs`` are :func:`save_html`'s: a short text above the figures, and whether
    plotly.js is inlined or shared by the pages of one folder.
    """
    maps = attention_figure(record, token=token, branch=branch, steps=steps, layers=layers, frames=frames)
    summary = concentration_figure(record, token=token, branch=branch, top_fraction=top_fraction)
    return save_html(
        {MAPS_DIV_ID: maps, SUMMARY_DIV_ID: summary},
        path,
        title=f"attnkit: {record.describe()}",
        description=description,
        plotlyjs=plotlyjs,
    )
