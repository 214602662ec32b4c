"""The cases of a toy measurement: held-out reference clips, each with a target of another colour and shape.

Splits: both sets live in the world's ``"heldout"`` seed namespace (random streams and trajectory families
never used in training); ``"test"`` uses seeds from 0 and ``"validation"`` (for tuning the [choice]
hyper-parameters) seeds from ``VALIDATION_SEED_OFFSET``, so the numbers reported on ``test`` were never
looked at while tuning.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from attnkit_lmp.toy.world import (
    DEFAULT_WORLD,
    ClipSpec,
    WorldConfig,
    background_mix,
    other_look,
    prompt_for,
    random_clip_spec,
    render_clip,
)

from .settings import MeasureError

SPLITS: tuple[str, ...] = ("test", "validation")
# Share of reference clips with a distractor, in a world that has them.
REFERENCE_DISTRACTOR_PROBABILITY = 0.5
# Initial-noise seeds of one clip's repeats are this far apart (beyond any clip count).
NOISE_SEED_STRIDE = 1_000_000
# Validation seeds start here, far above any test seed, inside the same held-out namespace.
VALIDATION_SEED_OFFSET = 100_000


@dataclass(frozen=True)
class TransferCase:
    """One measurement: a held-out reference clip, the target's colour and shape, and the noise seed."""

    reference: ClipSpec
    target_colour: str
    target_shape: str
    noise_seed: int

    @property
    def prompt(self) -> str:
        return prompt_for(self.target_colour, self.target_shape, self.reference.background)

    @property
    def subject(self) -> list[str]:
        return [self.target_colour, self.target_shape]

    @property
    def reference_subject(self) -> list[str]:
        return [self.reference.colour, self.reference.shape]

    @property
    def name(self) -> str:
        return f"{self.reference.name}-to-{self.target_colour}-{self.target_shape}-noise{self.noise_seed}"

    def target_image(self, world: WorldConfig):
        """The conditioning image of an image-to-video target: the reference's first frame redrawn in the
        target's colour and shape (same place and size; the world's paths do not depend on the look), so
        only the motion can come from the reference."""
        from PIL import Image

        look = replace(self.reference, colour=self.target_colour, shape=self.target_shape)
        return Image.fromarray(render_clip(look, world).frames[0])

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "reference": self.reference.to_dict(),
            "reference_prompt": self.reference.prompt,
            "prompt": self.prompt,
            "noise_seed": self.noise_seed,
        }


def measurement_cases(
    num_clips: int,
    split: str = "test",
    first_seed: int = 0,
    world: WorldConfig = DEFAULT_WORLD,
    noise_seeds: int = 1,
) -> list[TransferCase]:
    """``num_clips`` reference clips of ``split``, each with ``noise_seeds`` initial noises; the same
    arguments always give the same cases.

    References are drawn from ``world``: in a world of several backgrounds they cover them all evenly,
    and in a world with distractors :data:`REFERENCE_DISTRACTOR_PROBABILITY` of them hold one. The
    target keeps the reference's background and names a colour and a shape that both differ from the
    reference's subject (the paper's Sub split), and no distractor: a target that moves like the
    distractor followed the wrong object. Its colour and shape also differ from the distractor's, so that
    a target which takes the distractor's look cannot pass for one that kept its own.
    """
    if split not in SPLITS:
        raise MeasureError(f"split {split!r} is unknown: expected one of {list(SPLITS)}.")
    if num_clips < 1:
        raise MeasureError(f"num_clips={num_clips}: expected at least 1 clip.")
    if noise_seeds < 1:
        raise MeasureError(f"noise_seeds={noise_seeds}: expected at least 1 initial noise per clip.")
    offset = VALIDATION_SEED_OFFSET if split == "validation" else 0
    backgrounds = background_mix(world, 1 / len(world.backgrounds))
    distractors = REFERENCE_DISTRACTOR_PROBABILITY if world.distractor_size else 0.0
    cases = []
    for index in range(num_clips):
        seed = offset + first_seed + index
        reference = random_clip_spec(
            seed, "heldout", background_probabilities=backgrounds, distractor_probability=distractors, world=world
        )
        colour, shape = other_look(reference, np.random.default_rng([seed, 7]))
        for repeat in range(noise_seeds):
            cases.append(TransferCase(reference, colour, shape, noise_seed=seed + repeat * NOISE_SEED_STRIDE))
    return cases
