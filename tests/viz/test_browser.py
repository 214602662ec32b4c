"""The explorer page in headless Chromium: renders offline, without JS errors, and its controls work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from attnkit.record import AttentionRecord
from attnkit.viz import write_explorer

from .browser import ARTIFACTS, chromium_context, open_page

STEPS, LAYERS, FRAMES, HEIGHT, WIDTH = 3, 2, 3, 6, 8


def moving_blob_record() -> AttentionRecord:
    """A record whose map is a blob moving with frame and step: every slider position looks different."""
    rows, cols = torch.meshgrid(torch.arange(HEIGHT), torch.arange(WIDTH), indexing="ij")
    maps = torch.zeros(STEPS, LAYERS, 2, FRAMES, HEIGHT, WIDTH)
    for step in range(STEPS):
        for layer in range(LAYERS):
            for frame in range(FRAMES):
                for token in range(2):
                    center = (1 + frame + token, 1 + 2 * step + layer + frame)
                    maps[step, layer, token, frame] = torch.exp(
                        -((rows - center[0]) ** 2 + (cols - center[1]) ** 2) / 2.0
                    )
    return AttentionRecord(
        maps={"cond": maps / maps.sum(dim=(-1, -2, -3), keepdim=True)},
        grid=(FRAMES, HEIGHT, WIDTH),
        tokens=["dog", "ball"],
        token_positions=[[2], [5]],
        steps=list(range(STEPS)),
        timesteps=[999.0, 666.0, 333.0],
        layers=list(range(LAYERS)),
        layer_names=[f"transformer_blocks.{layer}.attn1" for layer in range(LAYERS)],
        model_class="Synthetic",
    )


@pytest.fixture(scope="module")
def browser():
    with chromium_context() as context:
        yield context


@pytest.fixture(scope="module")
def explorer_url(tmp_path_factory):
    return write_explorer(
        moving_blob_record(), tmp_path_factory.mktemp("explorer") / "maps.html", token="dog"
    ).as_uri()


VISIBLE_HEATMAPS = """() => Array.from(document.querySelectorAll('#attnkit-maps .heatmaplayer image'))
    .map(image => image.getAttribute('href') || image.getAttribute('xlink:href'))"""


def test_the_explorer_renders_offline_and_the_step_slider_changes_the_frames(browser, explorer_url):
    page, problems = open_page(browser)
    page.goto(explorer_url)
    page.wait_for_selector("#attnkit-maps .heatmaplayer image")
    page.wait_for_selector("#attnkit-summary .heatmaplayer image")
    layers = page.evaluate("""() => { const gd = document.getElementById('attnkit-maps');
            return {svg: gd.querySelectorAll('.main-svg').length,
                    rails: gd.querySelectorAll('.slider-rail-touch-rect').length,
                    menus: gd.querySelectorAll('.updatemenu-container').length, traces: gd.data.length}; }""")
    assert layers["svg"] >= 2 and layers["rails"] == 2 and layers["menus"] == 1
    assert layers["traces"] == 2 * (LAYERS + 1) * FRAMES
    before = page.evaluate(VISIBLE_HEATMAPS)
    assert len(before) == 2 * FRAMES, "one image per frame for each token of the shown layer"

    step_rail = page.locator("#attnkit-maps .slider-rail-touch-rect").first.bounding_box()
    page.mouse.click(step_rail["x"] + step_rail["width"] - 3, step_rail["y"] + step_rail["height"] / 2)
    page.wait_for_function(
        f"before => JSON.stringify(({VISIBLE_HEATMAPS})()) !== JSON.stringify(before)", arg=before
    )
    after = page.evaluate(VISIBLE_HEATMAPS)
    assert after != before
    assert "step: step 2 (t=333)" in page.locator("#attnkit-maps .slider-container").first.text_content()
    shown = np.array(page.evaluate("() => document.getElementById('attnkit-maps').data[0].z"), dtype=float)
    expected = moving_blob_record().map("dog", step=2, layer=0)[0].numpy()
    np.testing.assert_allclose(shown, expected, atol=1e-4)

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)
    assert problems == []
    assert (ARTIFACTS / "explorer.png").stat().st_size > 10_000


@pytest.mark.parametrize("control", ["layer slider", "token menu"])
def test_the_layer_slider_and_token_menu_change_the_frames_too(browser, explorer_url, control):
    page, problems = open_page(browser)
    page.goto(explorer_url)
    page.wait_for_selector("#attnkit-maps .heatmaplayer image")
    shown_names = """() => document.getElementById('attnkit-maps').data
        .filter(trace => trace.visible !== false && trace.opacity > 0).map(trace => trace.name)"""
    assert page.evaluate(shown_names) == [f"dog / layer 0 / frame {frame}" for frame in range(FRAMES)]
    if control == "layer slider":
        rail = page.locator("#attnkit-maps .slider-rail-touch-rect").nth(1).bounding_box()
        page.mouse.click(rail["x"] + rail["width"] - 3, rail["y"] + rail["height"] / 2)
        expected = [f"dog / mean of {LAYERS} layers / frame {frame}" for frame in range(FRAMES)]
    else:
        page.click("#attnkit-maps .updatemenu-header-group")
        page.click("#attnkit-maps .updatemenu-dropdown-button-group >> text=ball")
        expected = [f"ball / layer 0 / frame {frame}" for frame in range(FRAMES)]
    page.wait_for_function(
        f"expected => JSON.stringify(({shown_names})()) === JSON.stringify(expected)", arg=expected
    )
    assert problems == []


def test_without_chromium_the_browser_test_skips_locally_but_fails_in_ci(monkeypatch):
    from . import browser as browser_module

    monkeypatch.setattr(browser_module, "chromium_path", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed.*scripts/ensure-chromium.sh"):
        with chromium_context():
            pass
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="browser test cannot run in CI"):
        with chromium_context():
            pass
