"""Record a subject word's attention maps in a tiny CogVideoX run and write the explorer page.

    python examples/record_attention.py --out-dir record_attention_out
    attnkit viz record_attention_out/attention.safetensors --token dog --out maps.html   # the same page again

The pipeline is a random-weight CogVideoX built in code (no download), so the maps show the machinery,
not a trained model's understanding. Point the same lines at a real pipeline
(``CogVideoXPipeline.from_pretrained(local_dir)``) to see real maps.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import attnkit
from attnkit.record import AttentionRecorder
from attnkit.testing import tiny_cogvideox_pipeline
from attnkit.viz import write_explorer

# 64 x 64 pixels and 17 frames are 5 latent frames of 8 x 8 video tokens: small, but enough to look at.
GEOMETRY = {"height": 64, "width": 64, "num_frames": 17, "max_sequence_length": 16}


def record_attention(
    out_dir: Path, prompt: str, words: list[str], num_steps: int, seed: int = 0
) -> tuple[Path, Path]:
    """Run the tiny pipeline with a recorder attached; return (record file, HTML page)."""
    pipe = tiny_cogvideox_pipeline("t2v", seed=seed)
    recorder = AttentionRecorder(
        tokens=words,
        prompt=prompt,
        direction="both",  # text->video plus video->text, as FBDM reads them
        branches=["cond"],
        memory_budget_bytes=64 * 2**20,
    )
    with attnkit.attach(pipe, plugins=[recorder]):
        video = pipe(
            prompt,
            num_inference_steps=num_steps,
            guidance_scale=6.0,
            output_type="pt",
            generator=torch.Generator().manual_seed(seed),
            **GEOMETRY,
        ).frames
    out_dir.mkdir(parents=True, exist_ok=True)
    record_path = recorder.save_record(out_dir / "attention.safetensors")
    page_path = write_explorer(recorder.record, out_dir / "attention.html", token=words[0], frames=video)
    print(recorder.record.describe())
    print(f"kept {recorder.peak_kept_bytes} bytes of maps (estimate: {recorder.estimate.describe()})")
    return record_path, page_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=Path("record_attention_out"))
    parser.add_argument("--prompt", default="a red dog runs on the grass")
    parser.add_argument("--word", action="append", help="word(s) to record (default: dog and grass)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps")
    args = parser.parse_args(argv)
    record_path, page_path = record_attention(
        args.out_dir, args.prompt, args.word or ["dog", "grass"], args.steps
    )
    print(f"wrote {record_path} and {page_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
