"""Run the same plugins, unchanged, on tiny CogVideoX, HunyuanVideo and Wan pipelines and print what they see.

    python examples/cross_model.py

For each model: the layout of each attention role (which tokens are queries and keys), how many
attention calls the session hooked, and the shapes of the maps the attention recorder kept for the
word "dog". The pipelines have random weights and are built in code (no download), so the maps show
the machinery, not understanding; point the same code at real pipelines (``from_pretrained(local_dir)``)
for real maps.

The recorder reads the video -> text direction: it is the one every text-video call has (a cross call's
queries are all video, so there is no text -> video row), and it declares the roles that hold a
video-text map (``attnkit_roles = {"joint", "cross"}``), so Wan's video self-attention is skipped
without any model check.
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch

import attnkit
from attnkit.record import AttentionRecorder
from attnkit.testing.tiny_hunyuan import HUNYUAN_CALL_KWARGS, tiny_hunyuan_pipeline
from attnkit.testing.tiny_models import TINY_CALL_KWARGS, tiny_cogvideox_pipeline
from attnkit.testing.tiny_wan import WAN_CALL_KWARGS, tiny_wan_pipeline

TEXT_VIDEO_ROLES = {"joint", "cross"}
MODELS = {
    "cogvideox": (lambda: tiny_cogvideox_pipeline("t2v"), TINY_CALL_KWARGS),
    "hunyuan_video": (tiny_hunyuan_pipeline, HUNYUAN_CALL_KWARGS),
    "wan": (lambda: tiny_wan_pipeline("t2v"), WAN_CALL_KWARGS),
}


class CallCensus:
    """Counts the attention calls of each role and keeps one layout per role and each layer's role."""

    name = "call-census"

    def __init__(self):
        self.calls: Counter[str] = Counter()
        self.layouts = {}
        self.layer_roles: dict[int, str] = {}

    @attnkit.hookimpl
    def attnkit_qkv(self, call):
        role = call.layout.role
        self.calls[role] += 1
        self.layouts.setdefault(role, call.layout)
        self.layer_roles.setdefault(call.layer, role)


def describe_layout(layout) -> str:
    def spans(side):
        return ", ".join(f"{name} {span.start}:{span.stop}" for name, span in side.items())

    return f"queries [{spans(layout.query_spans)}] keys [{spans(layout.key_spans)}] grid {layout.grid}"


def run_model(name: str, prompt: str, word: str, steps: int, seed: int = 0) -> dict:
    """One model: a census run, then a recording run over its text-video layers. Returns what was seen."""
    build, call_kwargs = MODELS[name]
    pipe = build()
    kwargs = dict(call_kwargs, num_inference_steps=steps)

    def generate():
        return pipe(prompt=prompt, generator=torch.Generator().manual_seed(seed), **kwargs).frames

    census = CallCensus()
    with attnkit.attach(pipe, plugins=[census]) as session:
        generate()
        num_modules = session.num_attention_modules

    text_video_layers = sorted(layer for layer, role in census.layer_roles.items() if role in TEXT_VIDEO_ROLES)
    recorder = AttentionRecorder(
        tokens=[word], prompt=prompt, direction="video->text", layers=text_video_layers, branches=["cond"]
    )
    recorder.attnkit_roles = TEXT_VIDEO_ROLES
    with attnkit.attach(pipe, plugins=[recorder]):
        generate()
    return {
        "modules": num_modules,
        "calls": dict(census.calls),
        "layouts": census.layouts,
        "layers": text_video_layers,
        "maps": {branch: tuple(recorder.record.maps[branch].shape) for branch in recorder.record.branches},
        "record": recorder.record,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", choices=sorted(MODELS), help="models to run (default: all)")
    parser.add_argument("--prompt", default="a red dog runs on the grass")
    parser.add_argument("--word", default="dog", help="the prompt word whose maps are recorded")
    parser.add_argument("--steps", type=int, default=2, help="denoising steps")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only add contention
    try:
        for name in args.model or list(MODELS):
            seen = run_model(name, args.prompt, args.word, args.steps)
            print(f"== {name}: {seen['modules']} attention modules; calls hooked per role {seen['calls']}")
            for role, layout in seen["layouts"].items():
                print(f"   {role:5}  {describe_layout(layout)}")
            for branch, shape in seen["maps"].items():
                print(f"   recorded '{args.word}' maps ({branch}): {shape} = (steps, layers {seen['layers']}, words, *grid)")
    finally:
        torch.set_num_threads(threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
