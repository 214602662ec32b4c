"""How concentrated each recorded map is, per layer and step, so a user can pick the layers worth reading.

Two measures of a map ``m`` over the ``n`` video tokens, taken as the distribution ``p = m / sum(m)``:
normalised entropy ``-sum(p log p) / log(n)`` (1 = spread evenly, 0 = one token) and the mass in the
top ``top_fraction`` of tokens (1 = all of it there; ``top_fraction`` = evenly spread).
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..record.maps import AttentionRecord


def concentration(maps: np.ndarray, top_fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """(normalised entropy, top mass) of maps whose last axes are ``(frames, h, w)``; NaN if a map is 0."""
    if not 0 < top_fraction <= 1:
        raise ValueError(
            f"top_fraction={top_fraction} must be in (0, 1], e.g. 0.1 for the top 10% of video tokens"
        )
    flat = maps.reshape(*maps.shape[:-3], -1).astype(np.float64)
    count = flat.shape[-1]
    total = flat.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        probabilities = np.where(total > 0, flat / total, np.nan)
        log_p = np.where(probabilities > 0, np.log(np.where(probabilities > 0, probabilities, 1.0)), 0.0)
        entropy = -(probabilities * log_p).sum(axis=-1) / (math.log(count) if count > 1 else 1.0)
    keep = max(1, math.ceil(top_fraction * count))
    top_mass = np.sort(probabilities, axis=-1)[..., -keep:].sum(axis=-1)
    return entropy, top_mass


def concentration_figure(
    record: AttentionRecord,
    token: str | int | None = None,
    branch: str | None = None,
    top_fraction: float = 0.1,
    colorscale: str = "Magma",
) -> go.Figure:
    """Step x layer heatmaps of a token (menu over tokens): normalised entropy, top-``top_fraction`` mass."""
    branch = record.branch_name(branch)
    maps = record.maps[branch].numpy()  # (steps, layers, tokens, frames, h, w)
    entropy, top_mass = concentration(maps, top_fraction)  # (steps, layers, tokens)
    first_token = 0 if token is None else record.token_index(token)
    layer_labels, step_labels = record.layer_labels, record.step_labels
    percent = f"{top_fraction * 100:g}%"
    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["normalised entropy (1 = even)", f"mass in the top {percent} of video tokens"],
        horizontal_spacing=0.2,
    )
    for column, values in ((1, entropy), (2, top_mass)):
        figure.add_trace(
            go.Heatmap(
                z=_listed(values[:, :, first_token]),
                x=layer_labels,
                y=step_labels,
                coloraxis="coloraxis",
                hovertemplate="%{y}<br>%{x}<br>%{z:.3f}<extra></extra>",
            ),
            row=1,
            col=column,
        )
    figure.update_yaxes(autorange="reversed")
    figure.update_layout(
        title={"text": f"how concentrated the maps are ({record.direction}, branch {branch})", "x": 0.5},
        coloraxis={"colorscale": colorscale, "cmin": 0.0, "cmax": 1.0},
        updatemenus=[
            dict(
                type="dropdown",
                active=first_token,
                x=0.0,
                xanchor="left",
                y=1.15,
                yanchor="bottom",
                buttons=[
                    dict(
                        label=label,
                        method="restyle",
                        args=[{"z": [_listed(entropy[:, :, index]), _listed(top_mass[:, :, index])]}, [0, 1]],
                    )
                    for index, label in enumerate(record.tokens)
                ],
            )
        ],
        height=max(320, 40 * len(step_labels) + 220),
        width=max(700, 60 * len(layer_labels) * 2 + 300),
        margin={"t": 120},
    )
    return figure


def _listed(values: np.ndarray) -> list:
    rounded = np.round(values, 4)
    return np.where(np.isfinite(rounded), rounded, None).tolist()
