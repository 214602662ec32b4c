"""Tiny toy-model configs shared by the toy tests: 16 x 16 px, one layer, trained or run in seconds."""

from dataclasses import replace

from attnkit_lmp.toy.model import ToyModelConfig

TINY_MODEL = ToyModelConfig(
    height=16, width=16, num_frames=4, object_size=6, patch_size=4, num_layers=1, num_attention_heads=1,
    attention_head_dim=16, time_embed_dim=16, text_length=14, text_dim=8, text_layers=1, text_heads=2,
    distractor_size=3,
)  # fmt: skip
TINY_I2V = replace(TINY_MODEL, architecture="cogvideox-i2v")
TINY_WAN = replace(TINY_MODEL, architecture="wan", num_frames=5)  # Wan's VAE wants 4k + 1 frames


def saved_toy_pipeline(config, folder):
    """A random-weight toy of ``config`` saved to ``folder`` and loaded back as training does, so that its
    sizes and world (object size, distractors) are read from its toy_config.json."""
    import torch

    from attnkit_lmp.toy.model import build_toy_pipeline
    from attnkit_lmp.toy.pretrained import load_toy_pipeline
    from attnkit_lmp.toy.train import export_pipeline

    pipe = build_toy_pipeline(config, seed=0)
    trainable = torch.nn.ModuleDict({"transformer": pipe.transformer, "text_encoder": pipe.text_encoder})
    export_pipeline(pipe, trainable, folder, config)
    pipe = load_toy_pipeline(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe
