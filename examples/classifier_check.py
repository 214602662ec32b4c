"""Does the analytic classifier read a toy world's clips? Shape and colour accuracy, per shape.

Every toy number (the quality bar, "look kept", the reference-colour share) goes through
``attnkit_lmp.toy.classify.read_frames``, so check it first on clips whose answer is known: clips rendered
from the world of a model's ``toy_config.json``, drawn as training draws them (every background, a
distractor in 30 %) and from the held-out stream. With ``--generated N`` it also reads N videos the model
generates for the quality bar's prompts, from noise seeds ``--seed`` on (1000 by default, away from the
quality bar's 0-49), and reports how often it reads the prompted shape.

    python examples/classifier_check.py --rendered 400 --generated 120 --threads 2
"""

import argparse
from collections import Counter, defaultdict

import numpy as np
import torch

from attnkit_lmp.toy.classify import read_frames
from attnkit_lmp.toy.model import toy_config_of
from attnkit_lmp.toy.pretrained import load_toy_pipeline
from attnkit_lmp.toy.quality import generate_videos, quality_prompts
from attnkit_lmp.toy.world import SHAPES, background_mix, prompt_for, random_clip_spec, render_clip


def rendered_readings(world, count: int):
    """(spec, reading) of ``count`` rendered clips, half from the training stream, half held out."""
    distractors = 0.3 if world.distractor_size else 0.0
    mix = background_mix(world, 1 / len(world.backgrounds))
    for split in ("train", "heldout"):
        for seed in range(count // 2):
            spec = random_clip_spec(seed, split, mix, distractor_probability=distractors, world=world)
            clip = render_clip(spec, world)
            yield spec, clip, read_frames(clip.frames, object_size=world.object_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="toy pipeline folder (default: the bundled one)")
    parser.add_argument("--rendered", type=int, default=400, help="rendered clips to read")
    parser.add_argument("--generated", type=int, default=0, help="generated videos to read (needs the model)")
    parser.add_argument("--seed", type=int, default=1000, help="noise seed of the first generated video")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_toy_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    world = toy_config_of(pipe).world

    wrong, worst_centroid = [], 0.0
    for spec, clip, reading in rendered_readings(world, args.rendered):
        if (reading.colour, reading.shape, reading.background_name) != (spec.colour, spec.shape, spec.background):
            wrong.append(spec)
        worst_centroid = max(worst_centroid, float(np.abs(reading.centroids - clip.centroids).max()))
    print(f"rendered: {args.rendered - len(wrong)} of {args.rendered} clips read right (colour, shape and"
          f" background); centroids within {worst_centroid:.2f} px")
    for spec in wrong:
        print("  wrong:", spec)

    if args.generated:
        specs = quality_prompts(args.generated, world)
        prompts = [prompt_for(*spec) for spec in specs]
        videos = generate_videos(pipe, prompts, [args.seed + index for index in range(args.generated)])
        read_as = defaultdict(Counter)
        for (_, shape, _, _), frames in zip(specs, videos):
            read_as[shape][read_frames(frames, object_size=world.object_size).shape] += 1
        print(f"generated (noise seeds {args.seed}-{args.seed + args.generated - 1}): prompted shape -> read as")
        for shape in SHAPES:
            counts = read_as[shape]
            print(f"  {shape:<9} {counts[shape]} of {sum(counts.values())} right;  {dict(counts)}")


if __name__ == "__main__":
    main()
