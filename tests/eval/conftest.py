"""Fixtures for the evaluation tests: tiny random-weight CLIP models saved to disk like downloaded ones."""

import math
import string

import pytest


def build_tiny_clip(seed: int, logit_scale: float = math.log(100.0)):
    """A random-weight CLIPModel and a matching processor small enough to build in well under a second."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for character in string.ascii_lowercase + string.digits + ".,'-":
        vocab[character] = len(vocab)
        vocab[character + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
    layer = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(vocab),
            max_position_embeddings=77,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
            **layer,
        ),
        vision_config=dict(image_size=32, patch_size=8, **layer),
        projection_dim=8,
        logit_scale_init_value=logit_scale,
    )
    torch.manual_seed(seed)
    return CLIPModel(config).eval(), processor


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run ~50x faster on one thread when the shared CPUs are busy (no spinning workers)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A folder laid out like a downloaded openai/clip-vit-large-patch14: model and processor together."""
    folder = tmp_path_factory.mktemp("clip")
    model, processor = build_tiny_clip(seed=0)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_pickscore_dirs(tmp_path_factory):
    """(model folder, processor folder) laid out like PickScore_v1 and the LAION CLIP-H processor."""
    model_folder = tmp_path_factory.mktemp("pickscore")
    processor_folder = tmp_path_factory.mktemp("pickscore-processor")
    model, processor = build_tiny_clip(seed=1, logit_scale=math.log(50.0))
    model.save_pretrained(model_folder)
    processor.save_pretrained(processor_folder)
    return model_folder, processor_folder
