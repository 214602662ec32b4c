"""How far does ASM move the target's hidden states, relative to their size? The scale to tune eta against.

Runs LMP on the first held-out case of the bundled CogVideoX toy and prints the median and largest
``|eta * gradient| / |hidden states|`` over ASM's steps and layers (``MotionTransferResult.asm_relative_steps``).
A step of a few hundredths of a percent changes nothing the video shows; pass ``--eta`` to try others.

    python examples/asm_step_size.py --eta 100 --steps 25
"""

import argparse

import numpy as np
import torch

from attnkit_lmp.toy.measure import measurement_cases, toy_lmp_config
from attnkit_lmp.toy.model import toy_config_of
from attnkit_lmp.toy.pretrained import load_toy_pipeline
from attnkit_lmp.toy.world import render_clip
from attnkit_lmp.transfer import motion_transfer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="toy pipeline folder (default: the bundled one)")
    parser.add_argument("--eta", type=float, default=100.0)
    parser.add_argument("--steps", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = load_toy_pipeline(args.model)
    pipe.set_progress_bar_config(disable=True)
    model = toy_config_of(pipe)
    case = measurement_cases(1, "test", world=model.world)[0]
    clip = render_clip(case.reference, model.world)
    result = motion_transfer(
        pipe,
        reference=clip.frames,
        reference_prompt=clip.prompt,
        reference_subject=case.reference_subject,
        prompt=case.prompt,
        subject=case.subject,
        config=toy_lmp_config(args.steps, model=model, asm_eta=args.eta),
        generator=torch.Generator().manual_seed(case.noise_seed),
        return_details=True,
        progress=False,
    )
    relative = np.array([value for _, _, value in result.asm_relative_steps])
    print(
        f"asm_eta {args.eta}: {len(relative)} ASM steps; |eta g| / |h| median {np.median(relative):.2e},"
        f" max {relative.max():.2e}"
    )


if __name__ == "__main__":
    main()
