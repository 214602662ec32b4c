"""The map explorer figure: latent-frame heatmaps with a step slider, a layer slider and a token menu.

Plotly controls cannot read each other's state, so each control owns one independent trace attribute:
every (token, layer option, frame) has its own heatmap trace; the step slider restyles ``z`` of all of
them, the layer slider sets ``visible`` (only the chosen layer's traces), and the token menu sets
``opacity`` and ``hoverinfo`` (only the chosen token's traces are seen) and that token's colour range.
The three compose in any order, in a notebook or in a saved page, with no custom JavaScript.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..record.maps import MEAN, AttentionRecord

DEFAULT_MAX_VALUES = 4_000_000  # map values embedded in one figure; past this a page gets slow to open
SIGNIFICANT_DIGITS = 4
MAX_FULL_SLIDER_LABELS = 8
# The top margin, from the top: the figure title (TITLE_PAD_PX, then about 25 px of text), the token
# menu (about 26 px), then MENU_GAP_PX above the plot for the subplot titles.
TITLE_PAD_PX = 12
MENU_GAP_PX = 40
TOP_MARGIN_PX = 140


def attention_figure(
    record: AttentionRecord,
    token: str | int | None = None,
    branch: str | None = None,
    steps: list[int] | None = None,
    layers: list[int] | None = None,
    frames=None,
    overlay_opacity: float = 0.6,
    colorscale: str = "Viridis",
    max_columns: int = 6,
    max_values: int = DEFAULT_MAX_VALUES,
) -> go.Figure:
    """Heatmaps of the latent frames of ``record`` for one token, with controls over step, layer and token.

    ``token`` is the token shown first (default: the record's first); the menu offers all of them.
    ``steps`` / ``layers`` restrict the slider options to those step / layer numbers (default all; the
    layer slider also offers the mean over layers). ``frames`` are decoded video frames to draw under the
    maps: ``(frames, height, width, 3)`` (uint8 or floats in [0, 1]), or a pipeline's ``output_type="pt"``
    tensor ``(1, frames, 3, height, width)``; latent frame ``i`` is shown over the video frame at the same
    relative time. One colour scale per token is shared by all frames, steps and layers.
    """
    branch = record.branch_name(branch)
    subset = record.select(branch=branch, steps=_explicit(steps), layers=_explicit(layers))
    maps = subset.maps[branch].numpy()  # (steps, layers, tokens, frames, h, w)
    num_steps, _, num_tokens, num_frames, height, width = maps.shape
    layer_options, layer_labels = _layer_options(subset, maps)
    num_values = num_steps * len(layer_labels) * num_tokens * num_frames * height * width
    if num_values > max_values:
        raise ValueError(
            f"the figure would embed {num_values:,} map values ({num_steps} steps x {len(layer_labels)} "
            f"layer options x {num_tokens} tokens x {num_frames} x {height} x {width}), over "
            f"max_values={max_values:,}; choose steps=[...] "
            "or layers=[...] (CLI: --step / --layer), or raise max_values"
        )
    first_token = 0 if token is None else subset.token_index(token)
    token_scale = [_colour_max(layer_options[:, :, t]) for t in range(num_tokens)]
    token_digits = [_decimals(scale) for scale in token_scale]
    background = _overlay_frames(frames, num_frames)

    columns = min(num_frames, max_columns)
    rows = math.ceil(num_frames / columns)
    figure = make_subplots(
        rows=rows,
        cols=columns,
        subplot_titles=[f"latent frame {frame}" for frame in range(num_frames)],
        horizontal_spacing=0.02,
        vertical_spacing=0.08 if rows > 1 else 0.02,
    )
    traces = [
        (t, layer, frame)
        for t in range(num_tokens)
        for layer in range(len(layer_labels))
        for frame in range(num_frames)
    ]
    geometry = _heatmap_geometry(background, height, width)
    for t, layer, frame in traces:
        shown = t == first_token
        figure.add_trace(
            go.Heatmap(
                z=_rounded(layer_options[0, layer, t, frame], token_digits[t]),
                coloraxis="coloraxis",
                visible=layer == 0,
                opacity=(overlay_opacity if background is not None else 1.0) if shown else 0.0,
                hoverinfo="all" if shown else "skip",
                hovertemplate=f"frame {frame}<br>x %{{x}}, y %{{y}}<br>attention %{{z:.4g}}"
                f"<extra>{subset.tokens[t]}</extra>",
                name=f"{subset.tokens[t]} / {layer_labels[layer]} / frame {frame}",
                **geometry,
            ),
            row=frame // columns + 1,
            col=frame % columns + 1,
        )
    _style_axes(figure, num_frames, columns, background, height, width)

    trace_indices = list(range(len(traces)))
    step_labels = _slider_labels(subset.step_labels, subset.steps, subset.step_reduction)
    sliders = []
    if num_steps > 1:
        sliders.append(
            dict(
                active=0,
                currentvalue={"prefix": "step: "},
                pad={"t": 30},
                steps=[
                    dict(
                        label=label,
                        method="restyle",
                        args=[
                            {
                                "z": [
                                    _rounded(layer_options[s, layer, t, frame], token_digits[t])
                                    for t, layer, frame in traces
                                ]
                            },
                            trace_indices,
                        ],
                    )
                    for s, label in enumerate(step_labels)
                ],
            )
        )
    if len(layer_labels) > 1:
        sliders.append(
            dict(
                active=0,
                currentvalue={"prefix": "layer: "},
                pad={"t": 30 + 95 * len(sliders)},
                steps=[
                    dict(
                        label=label,
                        method="restyle",
                        args=[{"visible": [layer == chosen for _, layer, _ in traces]}, trace_indices],
                    )
                    for chosen, label in enumerate(
                        _slider_labels(layer_labels, subset.layers, subset.layer_reduction)
                    )
                ],
            )
        )
    opacity = overlay_opacity if background is not None else 1.0
    menus = [
        dict(
            type="dropdown",
            direction="down",
            active=first_token,
            x=0.0,
            xanchor="left",
            # In the top margin, above the subplot titles and below the figure title (MENU_GAP_PX): a wide
            # token label must not cover the title, which names the token shown.
            y=1.0,
            yanchor="bottom",
            pad={"b": MENU_GAP_PX},
            buttons=[
                dict(
                    label=label,
                    method="update",
                    args=[
                        {
                            "opacity": [opacity if t == chosen else 0.0 for t, _, _ in traces],
                            "hoverinfo": ["all" if t == chosen else "skip" for t, _, _ in traces],
                        },
                        {"coloraxis.cmax": token_scale[chosen], "title.text": _title(subset, branch, label)},
                        trace_indices,
                    ],
                )
                for chosen, label in enumerate(subset.tokens)
            ],
        )
    ]
    figure.update_layout(
        title={
            "text": _title(subset, branch, subset.tokens[first_token]),
            "x": 0.5,
            "xanchor": "center",
            "yref": "container",
            "y": 1.0,
            "yanchor": "top",
            "pad": {"t": TITLE_PAD_PX},
        },
        coloraxis={
            "colorscale": colorscale,
            "cmin": 0.0,
            "cmax": token_scale[first_token],
            "colorbar": {"title": {"text": "attention"}},
        },
        sliders=sliders,
        updatemenus=menus,
        height=260 * rows + TOP_MARGIN_PX + 20 + 95 * len(sliders),
        width=max(520, 200 * columns + 160),
        margin={"t": TOP_MARGIN_PX, "b": 20},
        plot_bgcolor="white",
    )
    return figure


def _slider_labels(labels: list[str], numbers: list[int], reduction: str | None) -> list[str]:
    """Full labels for a few slider positions; bare numbers (and "mean") past that, so ticks stay legible."""
    if len(labels) <= MAX_FULL_SLIDER_LABELS or reduction:
        return labels
    return [str(number) for number in numbers] + ["mean"] * (len(labels) - len(numbers))


def _explicit(numbers: list[int] | None) -> list[int] | None:
    return None if numbers is None else [int(number) for number in numbers]


def _layer_options(record: AttentionRecord, maps: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The layer axis the slider walks: each kept layer, then their mean (or the record's one mean slot)."""
    if record.layer_reduction == MEAN or maps.shape[1] == 1:
        return maps, record.layer_labels
    with np.errstate(all="ignore"):
        mean = (
            np.nanmean(maps, axis=1, keepdims=True)
            if np.isnan(maps).any()
            else maps.mean(axis=1, keepdims=True)
        )
    labels = record.layer_labels + [f"mean of {len(record.layers)} layers"]
    return np.concatenate([maps, mean], axis=1), labels


def _colour_max(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    peak = float(finite.max()) if finite.size else 0.0
    return peak if peak > 0 else 1.0


def _decimals(scale: float) -> int:
    """Decimals that keep SIGNIFICANT_DIGITS digits of values up to ``scale`` (keeps the page small)."""
    return max(0, SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(scale)))


def _rounded(values: np.ndarray, decimals: int) -> list:
    rounded = np.round(values.astype(np.float64), decimals)
    return np.where(np.isfinite(rounded), rounded, None).tolist()


def _title(record: AttentionRecord, branch: str, token: str) -> str:
    return f"attention of {token!r} ({record.direction}, branch {branch}) — {record.model_class or 'model'}"


def _overlay_frames(frames, num_latent_frames: int) -> list[np.ndarray] | None:
    """One uint8 ``(h, w, 3)`` video frame per latent frame, or None without frames."""
    if frames is None:
        return None
    array = np.asarray(frames.detach().cpu().float().numpy() if hasattr(frames, "detach") else frames)
    if array.ndim == 5 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 4:
        raise ValueError(
            f"frames has shape {array.shape}; pass (frames, height, width, 3) images or a pipeline's "
            "output_type='pt' tensor (1, frames, 3, height, width)"
        )
    if array.shape[-1] not in (1, 3, 4) and array.shape[1] in (1, 3, 4):
        array = array.transpose(0, 2, 3, 1)  # (frames, channels, h, w) -> channels last
    if array.dtype != np.uint8:
        array = (np.clip(array.astype(np.float64), 0.0, 1.0) * 255).round().astype(np.uint8)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    count = array.shape[0]
    if num_latent_frames == 1:
        return [array[0]]
    return [array[round(index * (count - 1) / (num_latent_frames - 1))] for index in range(num_latent_frames)]


def _heatmap_geometry(background, height: int, width: int) -> dict:
    """Heatmap cell placement: latent cells, or stretched over the video frame's pixels when overlaid."""
    if background is None:
        return {"x0": 0, "dx": 1, "y0": 0, "dy": 1}
    pixel_height, pixel_width = background[0].shape[:2]
    return {
        "x0": pixel_width / width / 2,
        "dx": pixel_width / width,
        "y0": pixel_height / height / 2,
        "dy": pixel_height / height,
    }


def _style_axes(
    figure: go.Figure, num_frames: int, columns: int, background, height: int, width: int
) -> None:
    from PIL import Image

    extent_x, extent_y = (
        (width, height) if background is None else (background[0].shape[1], background[0].shape[0])
    )
    for frame in range(num_frames):
        row, col = frame // columns + 1, frame % columns + 1
        offset = 0.0 if background is not None else -0.5
        figure.update_xaxes(
            range=[offset, extent_x + offset],
            showticklabels=False,
            showgrid=False,
            zeroline=False,
            row=row,
            col=col,
        )
        figure.update_yaxes(
            range=[extent_y + offset, offset],
            showticklabels=False,
            showgrid=False,
            zeroline=False,
            scaleanchor=f"x{'' if frame == 0 else frame + 1}",
            row=row,
            col=col,
        )
        if background is not None:
            suffix = "" if frame == 0 else str(frame + 1)
            figure.add_layout_image(
                source=Image.fromarray(background[frame]),
                xref=f"x{suffix}",
                yref=f"y{suffix}",
                x=0,
                y=0,
                sizex=extent_x,
                sizey=extent_y,
                xanchor="left",
                yanchor="top",
                sizing="stretch",
                layer="below",
            )
