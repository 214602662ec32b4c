"""examples/cross_model.py: the same recorder, unchanged, records finite word maps on all three tiny models."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "cross_model.py"


def load_example():
    spec = importlib.util.spec_from_file_location("cross_model_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_model_yields_finite_maps_over_its_text_video_layers():
    example = load_example()
    seen = {name: example.run_model(name, "a red dog runs", "dog", steps=2) for name in example.MODELS}
    assert seen["cogvideox"]["calls"] == {"joint": 2 * 2 * 1}  # 2 modules, 2 steps, one batched forward
    assert seen["hunyuan_video"]["calls"] == {"joint": 2 * 2 * 2}  # cond and uncond forwards
    assert seen["wan"]["calls"] == {"self": 2 * 2 * 2, "cross": 2 * 2 * 2}
    assert seen["wan"]["layers"] == [1, 3]  # attn2 of each block; attn1 holds no text
    for name, result in seen.items():
        assert result["maps"]["cond"] == (2, 2, 1, 3, 4, 4), name
        maps = result["record"].maps["cond"]
        assert torch.isfinite(maps).all() and (maps > 0).all(), name


def test_main_prints_layouts_calls_and_map_shapes(capsys):
    assert load_example().main(["--model", "wan"]) == 0
    printed = capsys.readouterr().out
    assert "calls hooked per role {'self': 8, 'cross': 8}" in printed
    assert "cross  queries [video 0:48] keys [text 0:16]" in printed
    assert "(2, 2, 1, 3, 4, 4)" in printed
