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


@pytest.mark.parametrize("language", ["py", "yaml"])
def test_shown_only_blocks_parse(language):
    import yaml

    for block in blocks(language):
        if language == "py":
            compile(block, "evaluation.md py block", "exec")
        else:
            from attnkit_lmp.eval.datasets import PromptsFile

            PromptsFile.from_dict(yaml.safe_load(block))
