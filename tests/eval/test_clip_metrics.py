"""Align, Cons. and Pick.: loaded by path, batched over frames, equal to the formulas computed by hand."""

import numpy as np
import pytest
import torch

from attnkit_lmp.eval.clip_metrics import (
    ClipEmbedder,
    MetricModelNotFoundError,
    VideoTextMetrics,
    clip_scores,
    consecutive_cosines,
)

PROMPT = "a red square slides to the right"


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 256, size=(5, 40, 48, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def metrics(tiny_clip_dir, tiny_pickscore_dirs):
    pick_model, pick_processor = tiny_pickscore_dirs
    return VideoTextMetrics.from_paths(tiny_clip_dir, pick_model, pick_processor, batch_size=2)


@pytest.fixture(scope="module")
def clip_forward(tiny_clip_dir, frames):
    return logits_per_frame(tiny_clip_dir, tiny_clip_dir, frames, PROMPT)


@pytest.fixture(scope="module")
def pickscore_forward(tiny_pickscore_dirs, frames):
    return logits_per_frame(*tiny_pickscore_dirs, frames, PROMPT)


def logits_per_frame(folder, processor_folder, frames, prompt):
    """CLIPModel's own forward: exp(logit_scale) * cos(image, text) per frame, and its image embeddings."""
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(processor_folder)
    inputs = processor(text=[prompt], images=list(frames), return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model(**inputs)
    return output.logits_per_image[:, 0], model.logit_scale.exp().item(), output.image_embeds


def test_embeddings_have_one_unit_row_per_frame(metrics, frames):
    embeddings = metrics.clip.embed_frames(frames)
    assert embeddings.shape == (5, 8) and embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(5))
    assert metrics.clip.embed_text(PROMPT).shape == (8,)


def test_align_is_100_times_the_clamped_cosine_averaged_over_frames(metrics, frames, clip_forward):
    logits, logit_scale, _ = clip_forward
    expected = (100 * logits / logit_scale).clamp(min=0).mean().item()
    assert metrics.evaluate(frames, PROMPT)["align"] == pytest.approx(expected, abs=1e-4)


def test_consistency_is_the_mean_cosine_of_consecutive_frames(metrics, frames, clip_forward):
    _, _, image_embeds = clip_forward
    expected = np.mean(
        [torch.nn.functional.cosine_similarity(image_embeds[t], image_embeds[t + 1], dim=0) for t in range(4)]
    )
    assert metrics.evaluate(frames, PROMPT)["consistency"] == pytest.approx(float(expected), abs=1e-5)


def test_pick_is_the_pickscore_models_logit_averaged_over_frames(metrics, frames, pickscore_forward):
    logits, logit_scale, _ = pickscore_forward
    assert logit_scale == pytest.approx(50.0)
    assert metrics.evaluate(frames, PROMPT)["pick"] == pytest.approx(logits.mean().item(), abs=1e-4)


def test_pick_uses_its_own_model_not_clip(metrics, frames, clip_forward):
    clip_logits, clip_logit_scale, _ = clip_forward
    clip_cosine = (clip_logits / clip_logit_scale).mean().item()
    assert metrics.evaluate(frames, PROMPT)["pick"] != pytest.approx(50 * clip_cosine, abs=1e-3)


def test_results_do_not_depend_on_the_batch_size(metrics, frames):
    clip_only = VideoTextMetrics(metrics.clip)
    assert metrics.clip.batch_size == 2  # 5 frames: batches of 2, 2, 1
    in_batches = clip_only.evaluate(frames, PROMPT)
    metrics.clip.batch_size = 64
    try:
        all_at_once = clip_only.evaluate(frames, PROMPT)
    finally:
        metrics.clip.batch_size = 2
    assert in_batches.keys() == {"align", "consistency"}
    for name in in_batches:
        assert in_batches[name] == pytest.approx(all_at_once[name], abs=1e-5)


def test_long_prompts_are_truncated_to_the_text_encoders_limit(metrics, frames):
    long_prompt = " ".join(["a red square slides to the right"] * 40)
    assert np.isfinite(metrics.evaluate(frames, long_prompt)["align"])


def test_clip_scores_clamp_negative_cosines_at_zero():
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-0.6, 0.8]])
    text = torch.tensor([0.6, -0.8])
    torch.testing.assert_close(clip_scores(images, text), torch.tensor([60.0, 0.0, 0.0]))


def test_identical_frames_are_perfectly_consistent(metrics):
    still = np.repeat(
        np.random.default_rng(1).integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8), 4, axis=0
    )
    assert metrics.evaluate(still, PROMPT)["consistency"] == pytest.approx(1.0, abs=1e-5)


def test_consistency_of_one_frame_is_an_error():
    with pytest.raises(ValueError, match="at least 2 frames"):
        consecutive_cosines(torch.ones(1, 4))


def test_float_frames_are_rejected(metrics):
    with pytest.raises(ValueError, match="expected uint8"):
        metrics.clip.embed_frames(np.zeros((2, 8, 8, 3), dtype=np.float32))


def test_missing_clip_folder_names_the_path_and_what_to_download(tmp_path):
    missing = tmp_path / "clip-vit-large-patch14"
    with pytest.raises(MetricModelNotFoundError) as error:
        ClipEmbedder(missing)
    message = str(error.value)
    assert str(missing) in message
    assert "openai/clip-vit-large-patch14" in message and "clip_model=" in message


def test_folder_that_is_not_a_model_is_rejected(tmp_path):
    with pytest.raises(MetricModelNotFoundError, match="is not a transformers CLIP model folder"):
        ClipEmbedder(tmp_path)


def test_missing_pickscore_names_both_repositories(tiny_clip_dir, tmp_path):
    with pytest.raises(MetricModelNotFoundError) as error:
        VideoTextMetrics.from_paths(tiny_clip_dir, tmp_path / "PickScore_v1", tmp_path / "processor")
    message = str(error.value)
    assert "yuvalkirstain/PickScore_v1" in message and "laion/CLIP-ViT-H-14-laion2B-s32B-b79K" in message


def test_pickscore_without_its_processor_is_an_error(tiny_clip_dir, tiny_pickscore_dirs):
    with pytest.raises(MetricModelNotFoundError, match="pickscore_processor is missing"):
        VideoTextMetrics.from_paths(tiny_clip_dir, tiny_pickscore_dirs[0])
