"""The models every adapter is checked on: one case per model variant, each a tiny offline pipeline.

A new adapter joins the conformance suite by adding its cases here (``ADAPTER_CASES``); every test in
this folder then runs on them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from attnkit.testing.tiny_models import TINY_CALL_KWARGS, TINY_TEXT_LEN, tiny_cogvideox_pipeline, tiny_image


@dataclass(frozen=True)
class AdapterCase:
    """A tiny pipeline of one model variant, how to call it, and the layout its attention must report."""

    id: str
    adapter: str
    build: Callable[[], object]
    call_kwargs: dict = field(default_factory=dict)
    text_tokens: int = TINY_TEXT_LEN
    expected_grid: tuple[int, int, int] = (0, 0, 0)

    def run(self, pipe, seed: int = 0) -> torch.Tensor:
        kwargs = dict(TINY_CALL_KWARGS, **self.call_kwargs)
        return pipe(prompt="a red dog runs", generator=torch.Generator().manual_seed(seed), **kwargs).frames


def _cogvideox(variant: str, version: str, rotary: bool = True) -> Callable[[], object]:
    return lambda: tiny_cogvideox_pipeline(variant, version=version, rotary=rotary)


# 32 x 32 px, 9 frames -> 3 latent frames of 8 x 8 -> patches of 2: 4 x 4 per frame; 1.5 pairs frames.
ADAPTER_CASES = [
    AdapterCase("cogvideox-1.0-t2v-rope", "cogvideox", _cogvideox("t2v", "1.0"), expected_grid=(3, 4, 4)),
    AdapterCase(
        "cogvideox-1.0-t2v-sincos", "cogvideox", _cogvideox("t2v", "1.0", rotary=False), expected_grid=(3, 4, 4)
    ),
    AdapterCase("cogvideox-1.5-t2v", "cogvideox", _cogvideox("t2v", "1.5"), expected_grid=(2, 4, 4)),
    AdapterCase(
        "cogvideox-1.0-i2v",
        "cogvideox",
        _cogvideox("i2v", "1.0"),
        call_kwargs={"image": tiny_image()},
        expected_grid=(3, 4, 4),
    ),
    AdapterCase(
        "cogvideox-1.5-i2v",
        "cogvideox",
        _cogvideox("i2v", "1.5"),
        call_kwargs={"image": tiny_image()},
        expected_grid=(2, 4, 4),
    ),
]
