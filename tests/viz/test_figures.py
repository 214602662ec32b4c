"""The explorer figures: what each control changes, the shared colour scale, overlays, the summary."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from attnkit.record import AttentionRecord, RecordLookupError
from attnkit.viz import (
    MAPS_DIV_ID,
    SUMMARY_DIV_ID,
    attention_figure,
    concentration,
    concentration_figure,
    write_explorer,
)


def test_the_map_figure_has_one_heatmap_per_token_layer_option_and_frame(record):
    figure = attention_figure(record, token="dog")
    assert isinstance(figure, go.Figure)
    # 2 tokens x (2 layers + their mean) x 3 latent frames
    assert len(figure.data) == 2 * 3 * 3 and all(trace.type == "heatmap" for trace in figure.data)
    shown = [trace for trace in figure.data if trace.visible is not False and trace.opacity > 0]
    assert [trace.name for trace in shown] == [f"dog / layer 0 / frame {frame}" for frame in range(3)]
    np.testing.assert_allclose(
        np.array(shown[2].z, dtype=float),
        record.map("dog", branch="cond", step=0, layer=0)[2].numpy(),
        atol=1e-4,
    )  # 4 significant digits of the colour range


def test_the_step_slider_sets_every_trace_to_that_step(record):
    figure = attention_figure(record, token="dog")
    step_slider, layer_slider = figure.layout.sliders
    assert [step.label for step in step_slider.steps] == record.step_labels
    update, indices = step_slider.steps[1].args
    assert len(update["z"]) == len(indices) == len(figure.data)
    trace = [t.name for t in figure.data].index("grass / layer 1 / frame 1")
    np.testing.assert_allclose(
        np.array(update["z"][trace], dtype=float), record.map("grass", step=1, layer=1)[1].numpy(), atol=1e-4
    )  # 4 significant digits of the colour range
    assert [step.label for step in layer_slider.steps] == ["layer 0", "layer 1", "mean of 2 layers"]


def test_the_layer_slider_offers_the_mean_over_layers(record):
    figure = attention_figure(record, token="dog")
    mean_option = figure.layout.sliders[1].steps[2]
    visible = mean_option.args[0]["visible"]
    mean_traces = [trace for trace, shown in zip(figure.data, visible) if shown]
    assert {trace.name.split(" / ")[1] for trace in mean_traces} == {"mean of 2 layers"}
    z = figure.layout.sliders[0].steps[0].args[0]["z"][list(visible).index(True)]
    np.testing.assert_allclose(
        np.array(z, dtype=float), record.map("dog", step=0, layer="mean")[0].numpy(), atol=1e-4
    )  # 4 significant digits of the colour range


def test_the_token_menu_shows_one_token_and_sets_its_colour_range(record):
    figure = attention_figure(record, token="dog")
    menu = figure.layout.updatemenus[0]
    assert [button.label for button in menu.buttons] == ["dog", "grass"]
    trace_update, layout_update, _ = menu.buttons[1].args
    seen = {
        trace.name.split(" / ")[0]
        for trace, opacity in zip(figure.data, trace_update["opacity"])
        if opacity > 0
    }
    assert seen == {"grass"}
    grass_max = float(record.maps["cond"][:, :, 1].max())
    assert layout_update["coloraxis.cmax"] == pytest.approx(grass_max, rel=1e-6)
    assert figure.layout.coloraxis.cmax == pytest.approx(float(record.maps["cond"][:, :, 0].max()), rel=1e-6)
    assert all(trace.coloraxis == "coloraxis" for trace in figure.data), "frames must share one colour scale"


def test_steps_and_layers_restrict_the_slider_options(record):
    figure = attention_figure(record, token="dog", steps=[1], layers=[0])
    assert not figure.layout.sliders, "one step and one layer leave nothing to slide over"
    assert len(figure.data) == 2 * 1 * 3


def test_decoded_frames_are_drawn_under_the_maps(record, recorded_run):
    figure = attention_figure(record, token="dog", frames=recorded_run.frames)
    assert len(figure.layout.images) == 3
    assert all(image.source.startswith("data:image/png;base64,") for image in figure.layout.images)
    assert all(trace.opacity == pytest.approx(0.6) for trace in figure.data if trace.opacity > 0)
    assert figure.data[0].dx == pytest.approx(32 / 4), "map cells are stretched over the video frame's pixels"


def test_frames_of_a_wrong_shape_are_an_error(record):
    with pytest.raises(ValueError, match=r"frames has shape \(9, 32\)"):
        attention_figure(record, frames=np.zeros((9, 32)))


def test_a_figure_too_large_to_open_says_how_to_shrink_it(record):
    with pytest.raises(ValueError, match=r"over max_values=100.*--step / --layer"):
        attention_figure(record, max_values=100)


def test_lookups_of_absent_things_list_what_there_is(record):
    with pytest.raises(
        RecordLookupError,
        match=r"token 'cat' is not in the record; it has tokens 'dog' \(positions \[2\]\), 'grass'",
    ):
        attention_figure(record, token="cat")
    with pytest.raises(RecordLookupError, match=r"layer 7 is out of range: the record has layers 0, 1"):
        attention_figure(record, layers=[7])
    with pytest.raises(
        RecordLookupError,
        match=r"branch 'reference' is not in the record; it has branches \['uncond', 'cond'\]",
    ):
        attention_figure(record, branch="reference")


def test_concentration_is_one_for_even_maps_and_zero_for_one_hot_maps():
    even = np.ones((2, 3, 4))
    one_hot = np.zeros((2, 3, 4))
    one_hot[1, 2, 3] = 5.0
    entropy, top_mass = concentration(np.stack([even, one_hot]), top_fraction=0.25)
    np.testing.assert_allclose(entropy, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(top_mass, [0.25, 1.0], atol=1e-12)


def test_the_summary_figure_has_a_step_by_layer_heatmap_per_measure(record):
    figure = concentration_figure(record, token="grass")
    entropy, top_mass = concentration(record.maps["cond"].numpy())
    assert len(figure.data) == 2
    assert list(figure.data[0].x) == ["layer 0", "layer 1"] and list(figure.data[0].y) == record.step_labels
    np.testing.assert_allclose(np.array(figure.data[0].z, dtype=float), entropy[:, :, 1], atol=1e-4)
    np.testing.assert_allclose(np.array(figure.data[1].z, dtype=float), top_mass[:, :, 1], atol=1e-4)
    assert [button.label for button in figure.layout.updatemenus[0].buttons] == ["dog", "grass"]


def test_the_explorer_page_is_self_contained(record, tmp_path):
    path = write_explorer(record, tmp_path / "maps.html", token="dog")
    page = path.read_text()
    assert f'id="{MAPS_DIV_ID}"' in page and f'id="{SUMMARY_DIV_ID}"' in page
    assert "<script src=" not in page, "plotly.js must be inlined so the page opens offline"
    assert page.count("Plotly.newPlot") == 2 and len(page) > 3_000_000  # the inlined library is ~4.7 MB


def test_an_empty_record_cannot_be_shown(record):
    empty = AttentionRecord.from_metadata(
        {**record.metadata(), "steps": [], "timesteps": []},
        {branch: maps[:0] for branch, maps in record.maps.items()},
    )
    with pytest.raises(RecordLookupError, match="the record has no maps"):
        attention_figure(empty)
