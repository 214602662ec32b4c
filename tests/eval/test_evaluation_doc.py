"""docs/evaluation.md stays true: its python blocks run, its model-path snippet works on tiny local models."""

import contextlib
import io
import re
from pathlib import Path

import numpy as np
import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "evaluation.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", PAGE.read_text(), flags=re.S | re.M)


def test_python_blocks_run_in_order():
    python_blocks = blocks("python")
    assert len(python_blocks) >= 2
    namespace: dict = {"__name__": "docs_evaluation"}
    # Not capsys: a library logger created during the test would keep its closed stream.
    with contextlib.redirect_stdout(io.StringIO()) as output:
        for number, block in enumerate(python_blocks, start=1):
            exec(compile(block, f"evaluation.md python block {number}", "exec"), namespace)
    printed = output.getvalue()
    assert "MF copied 0.82 of 0.82 tracked, reversed -0.82" in printed
    assert "256 points x 16 frames: MF 0.250, DMT's code 0.657" in printed
    assert "1024 points x 49 frames: MF 0.250, DMT's code 0.523" in printed
    assert "red-square/sub 'a red circle on black background' MF 1.00" in printed


def test_model_path_snippet_runs_with_local_folders(tiny_clip_dir, tiny_pickscore_dirs):
    # `py` blocks need downloaded models; here the documented paths point at tiny random-weight ones.
    (snippet,) = [block for block in blocks("py") if "VideoTextMetrics.from_paths" in block]
    pick_model, pick_processor = tiny_pickscore_dirs
    for documented, local in {
        "/models/clip-vit-large-patch14": tiny_clip_dir,
        "/models/PickScore_v1": pick_model,
        "/models/CLIP-ViT-H-14-laion2B-s32B-b79K": pick_processor,
    }.items():
        assert documented in snippet
        snippet = snippet.replace(documented, str(local))
    namespace = {"frames": np.zeros((3, 32, 32, 3), dtype=np.uint8)}
    exec(compile(snippet, "evaluation.md model-path block", "exec"), namespace)
    assert set(namespace["scores"]) == {"align", "consistency", "pick"}


def test_shown_only_py_blocks_name_real_api():
    # The `py` blocks need downloaded models, so they are only compiled; the classes they import and the
    # constructors they call must still exist, or a reader copying them meets an AttributeError.
    import importlib

    shown = blocks("py")
    assert len(shown) >= 2
    for block in shown:
        compile(block, "evaluation.md py block", "exec")
        imports = re.findall(r"^from ([\w.]+) import (\w+)$", block, flags=re.M)
        assert imports, f"a shown-only block imports nothing from attnkit_lmp:\n{block}"
        for module_name, name in imports:
            owner = getattr(importlib.import_module(module_name), name)
            for called in re.findall(rf"\b{name}\.(\w+)\(", block):
                assert callable(getattr(owner, called, None)), f"{name}.{called} does not exist"


def test_prompts_file_example_is_a_valid_prompts_file():
    import yaml

    from attnkit_lmp.eval.datasets import PromptsFile

    (block,) = blocks("yaml")
    prompts = PromptsFile.from_dict(yaml.safe_load(block))
    items = {item.split: item for item in prompts.eval_items()}
    assert list(prompts.videos) == ["blackswan"]
    assert (items["ori"].subject, items["sub"].subject, items["back"].subject) == ("swan", "duck", "swan")
    assert items["sub"].prompt == "A white duck glides across a calm pond."
    assert all(item.reference_prompt == "A black swan glides across a calm pond." for item in items.values())
