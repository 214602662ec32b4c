"""The models every adapter is checked on: one case per model variant, each a tiny offline pipeline.

A new adapter joins the conformance suite by adding its cases here (``ADAPTER_CASES``); every test in
this folder then runs on them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from attnkit.layout import TokenLayout
from attnkit.testing.tiny_ltx import LTX_CALL_KWARGS, LTX_GRID, LTX_TEXT_LEN, tiny_ltx_image, tiny_ltx_pipeline
from attnkit.testing.tiny_hunyuan import HUNYUAN_CALL_KWARGS, HUNYUAN_GRID, HUNYUAN_TEXT_LEN, tiny_hunyuan_pipeline
from attnkit.testing.tiny_models import TINY_CALL_KWARGS, TINY_TEXT_LEN, tiny_cogvideox_pipeline, tiny_image
from attnkit.testing.tiny_wan import (
    WAN22_BOUNDARY_RATIO,
    WAN_CALL_KWARGS,
    WAN_GRID,
    WAN_I2V_CALL_KWARGS,
    WAN_I2V_TEXT_LEN,
    WAN_IMAGE_TOKENS,
    WAN_TEXT_LEN,
    tiny_wan_image,
    tiny_wan_pipeline,
)

# Branch rows of each transformer forward within a denoising step.
BATCHED_GUIDANCE = ({"uncond": [0], "cond": [1]},)  # one forward, uncond and cond rows (CogVideoX)
SEQUENTIAL_GUIDANCE = ({"cond": [0]}, {"uncond": [0]})  # a cond forward, then an uncond one (Hunyuan, Wan)


@dataclass(frozen=True)
class AdapterCase:
    """A tiny pipeline of one model variant, how to call it, and what its attention calls must report.

    ``expected_layouts`` are all the distinct layouts its attention calls have (roles, query/key spans,
    grid); ``forward_branches`` the branch rows of each transformer forward of a step (its length is the
    number of forwards per step); ``text_padding`` whether the model masks padded text keys.
    """

    id: str
    adapter: str
    build: Callable[[], object]
    expected_layouts: tuple[TokenLayout, ...]
    base_kwargs: dict = field(default_factory=lambda: dict(TINY_CALL_KWARGS))
    call_kwargs: dict = field(default_factory=dict)
    forward_branches: tuple[dict, ...] = BATCHED_GUIDANCE
    text_padding: bool = False

    def run(self, pipe, seed: int = 0) -> torch.Tensor:
        kwargs = dict(self.base_kwargs, **self.call_kwargs)
        return pipe(prompt="a red dog runs", generator=torch.Generator().manual_seed(seed), **kwargs).frames

    @property
    def forwards_per_step(self) -> int:
        return len(self.forward_branches)

    @property
    def roles(self) -> set[str]:
        return {layout.role for layout in self.expected_layouts}


def _cogvideox(variant: str, version: str, rotary: bool = True) -> Callable[[], object]:
    return lambda: tiny_cogvideox_pipeline(variant, version=version, rotary=rotary)


def _text_first(grid: tuple[int, int, int], text: int = TINY_TEXT_LEN) -> tuple[TokenLayout, ...]:
    video = grid[0] * grid[1] * grid[2]
    return (TokenLayout(text=slice(0, text), video=slice(text, text + video), grid=grid),)


def _video_first(grid: tuple[int, int, int], text: int) -> tuple[TokenLayout, ...]:
    video = grid[0] * grid[1] * grid[2]
    return (TokenLayout(text=slice(video, video + text), video=slice(0, video), grid=grid),)


def _self_and_cross(grid: tuple[int, int, int], text: int, image: int = 0) -> tuple[TokenLayout, ...]:
    """Wan: video self-attention, and video queries over [image, text] keys (image softmax separate)."""
    video = slice(0, grid[0] * grid[1] * grid[2])
    return (
        TokenLayout(text=None, video=video, grid=grid, role="self"),
        TokenLayout(
            text=slice(image, image + text),
            video=video,
            grid=grid,
            image=slice(0, image) if image else None,
            role="cross",
            separately_normalised=("image",) if image else (),
        ),
    )


# CogVideoX: 32 x 32 px, 9 frames -> 3 latent frames of 8 x 8 -> patches of 2: 4 x 4 per frame; 1.5 pairs frames.
ADAPTER_CASES = [
    AdapterCase("cogvideox-1.0-t2v-rope", "cogvideox", _cogvideox("t2v", "1.0"), _text_first((3, 4, 4))),
    AdapterCase("cogvideox-1.0-t2v-sincos", "cogvideox", _cogvideox("t2v", "1.0", rotary=False), _text_first((3, 4, 4))),
    AdapterCase("cogvideox-1.5-t2v", "cogvideox", _cogvideox("t2v", "1.5"), _text_first((2, 4, 4))),
    AdapterCase(
        "cogvideox-1.0-i2v", "cogvideox", _cogvideox("i2v", "1.0"), _text_first((3, 4, 4)), call_kwargs={"image": tiny_image()}
    ),
    AdapterCase(
        "cogvideox-1.5-i2v", "cogvideox", _cogvideox("i2v", "1.5"), _text_first((2, 4, 4)), call_kwargs={"image": tiny_image()}
    ),
    # HunyuanVideo: [video, text] in dual- and single-stream blocks, padded text masked, true CFG forwards.
    AdapterCase(
        "hunyuan-video-t2v",
        "hunyuan_video",
        tiny_hunyuan_pipeline,
        _video_first(HUNYUAN_GRID, HUNYUAN_TEXT_LEN),
        base_kwargs=dict(HUNYUAN_CALL_KWARGS),
        forward_branches=SEQUENTIAL_GUIDANCE,
        text_padding=True,
    ),
    # Wan 2.1: self-attention (attn1) and cross-attention (attn2), cond then uncond forwards.
    AdapterCase(
        "wan-2.1-t2v",
        "wan",
        lambda: tiny_wan_pipeline("t2v"),
        _self_and_cross(WAN_GRID, WAN_TEXT_LEN),
        base_kwargs=dict(WAN_CALL_KWARGS),
        forward_branches=SEQUENTIAL_GUIDANCE,
    ),
    # Wan 2.2: two experts, transformer (step 0 of 2) then transformer_2 (step 1); both instrumented.
    AdapterCase(
        "wan-2.2-t2v-two-experts",
        "wan",
        lambda: tiny_wan_pipeline("t2v", boundary_ratio=WAN22_BOUNDARY_RATIO),
        _self_and_cross(WAN_GRID, WAN_TEXT_LEN),
        base_kwargs=dict(WAN_CALL_KWARGS),
        forward_branches=SEQUENTIAL_GUIDANCE,
    ),
    AdapterCase(
        "wan-2.1-i2v",
        "wan",
        lambda: tiny_wan_pipeline("i2v"),
        _self_and_cross(WAN_GRID, WAN_I2V_TEXT_LEN, image=WAN_IMAGE_TOKENS),
        base_kwargs=dict(WAN_CALL_KWARGS, **WAN_I2V_CALL_KWARGS),
        call_kwargs={"image": tiny_wan_image()},
        forward_branches=SEQUENTIAL_GUIDANCE,
    ),
    # LTX-Video: self-attention (attn1) and cross-attention (attn2, padded text masked), batched guidance.
    AdapterCase(
        "ltx-video-t2v",
        "ltx_video",
        lambda: tiny_ltx_pipeline("t2v"),
        _self_and_cross(LTX_GRID, LTX_TEXT_LEN),
        base_kwargs=dict(LTX_CALL_KWARGS),
        text_padding=True,
    ),
    AdapterCase(
        "ltx-video-i2v",
        "ltx_video",
        lambda: tiny_ltx_pipeline("i2v"),
        _self_and_cross(LTX_GRID, LTX_TEXT_LEN),
        base_kwargs=dict(LTX_CALL_KWARGS),
        call_kwargs={"image": tiny_ltx_image()},
        text_padding=True,
    ),
]
