"""The ``attnkit-lmp transfer`` command: motion transfer from the command line, with every output written.

    attnkit-lmp transfer --model /path/to/CogVideoX-5b --reference dog.mp4 \\
        --reference-prompt "a dog runs on the grass" --reference-subject dog \\
        --prompt "a cat runs on the grass" --subject cat --seed 0 --out runs/cat

``--model`` is a local diffusers folder of a pipeline ``motion_transfer`` drives (CogVideoX T2V / I2V, Wan
2.1 / 2.2 T2V / I2V, HunyuanVideo T2V); ``tiny:t2v`` / ``tiny:i2v`` build the tiny random CogVideoX test
pipelines (no download), for trying the command. The output folder receives ``video.mp4`` and
``video.gif`` (the result), ``side_by_side.mp4`` and ``side_by_side.gif`` (reference | result),
``config.json`` (the resolved config plus the run's inputs, enough to repeat it) and ``masks.html``
(FBDM's foreground maps and masks per step). Every file is written to a temporary name and renamed. All
inputs are checked before the model is loaded or any denoising starts; a problem exits with status 2 and
one line saying what to fix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

from .cli import register_command

TINY_MODELS = {"tiny:t2v": "t2v", "tiny:i2v": "i2v"}
DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}
UPSCALE_BELOW = 256  # tiny outputs are enlarged in the written files so they can be seen


class InputError(Exception):
    """A command-line input is wrong; the message says which and how to fix it."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="local diffusers folder (CogVideoX, Wan or HunyuanVideo; T2V or I2V), or tiny:t2v / tiny:i2v",
    )
    parser.add_argument(
        "--reference",
        help="reference video: mp4/gif/folder of frames; omit to generate it from --reference-prompt",
    )
    parser.add_argument("--reference-prompt", required=True, help="prompt describing the reference video")
    parser.add_argument(
        "--reference-subject", required=True, help="subject word(s) of the reference prompt, e.g. dog"
    )
    parser.add_argument("--prompt", required=True, help="prompt of the video to generate")
    parser.add_argument("--subject", required=True, help="subject word(s) of --prompt, e.g. cat")
    parser.add_argument("--image", help="first frame of the target (image-to-video models only)")
    parser.add_argument("--config", type=Path, help="LMPConfig as JSON or YAML (default: the paper's)")
    parser.add_argument(
        "--steps", type=int, help="num_inference_steps; scales the module thresholds like LMPConfig.for_steps"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial noise (default 0)")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=sorted(DTYPES),
        help="weights dtype (bf16 for CogVideoX-5B, Wan or HunyuanVideo on GPU)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda (default cpu)")
    parser.add_argument(
        "--cpu-offload", action="store_true", help="enable_model_cpu_offload() (GPU users with little memory)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")


def run(args: argparse.Namespace) -> int:
    try:
        config = check_inputs(args)
        pipe = load_pipeline(args.model, args.dtype, args.device, args.cpu_offload)
        return transfer(args, pipe, config)
    except InputError as error:
        print(f"attnkit-lmp transfer: error: {error}", file=sys.stderr)
        return 2


def check_inputs(args: argparse.Namespace):
    """Everything that can be checked without the model: output folder, config, files. Returns the config."""
    from .config import LMPConfig, LMPConfigError
    from .video_io import VideoReadError, load_frames

    check_writable(args.out)
    try:
        config = LMPConfig.load(args.config) if args.config is not None else LMPConfig()
        if args.steps is not None:
            overrides = {
                k: v
                for k, v in config.to_dict().items()
                if k not in ("num_inference_steps", "fbdm_steps", "rmtm_steps", "asm_steps")
            }
            config = LMPConfig.for_steps(args.steps, **overrides)
        config.validate()
    except LMPConfigError as error:
        raise InputError(str(error)) from None
    if args.reference is not None:
        try:
            load_frames(args.reference)
        except VideoReadError as error:
            raise InputError(str(error)) from None
    if args.image is not None and not Path(args.image).is_file():
        raise InputError(f"--image {args.image!r} is not a file; pass the target's first frame as a png/jpg")
    if args.model not in TINY_MODELS and not (Path(args.model) / "model_index.json").is_file():
        raise InputError(
            f"--model {args.model!r} is not a diffusers pipeline folder (no model_index.json); "
            "pass the local "
            "folder of a CogVideoX, Wan or HunyuanVideo checkpoint (e.g. CogVideoX-5b, Wan2.1-I2V-14B-480P-Diffusers, "
            "HunyuanVideo), or tiny:t2v / tiny:i2v"
        )
    return config


def check_writable(folder: Path) -> None:
    """Create ``folder`` and prove a file can be written there, before any long work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise InputError(
            f"output folder {str(folder)!r} is not writable ({error.strerror or error}); choose another --out"
        ) from None


def load_pipeline(model: str, dtype: str, device: str, cpu_offload: bool):
    """The pipeline at ``model`` (a local folder; nothing is downloaded), in ``dtype`` on ``device``."""
    import torch

    torch_dtype = getattr(torch, DTYPES[dtype])
    if model in TINY_MODELS:
        from attnkit.testing import tiny_cogvideox_pipeline

        pipe = tiny_cogvideox_pipeline(TINY_MODELS[model])
        if torch_dtype != torch.float32:
            pipe = pipe.to(dtype=torch_dtype)
    else:
        from diffusers import DiffusionPipeline

        try:
            with (
                warnings.catch_warnings()
            ):  # newer diffusers rename torch_dtype to dtype; older ones lack dtype
                warnings.simplefilter("ignore", FutureWarning)
                pipe = DiffusionPipeline.from_pretrained(
                    model, torch_dtype=torch_dtype, local_files_only=True
                )
        except Exception as error:
            raise InputError(
                f"cannot load the pipeline in {model!r}: {type(error).__name__}: {error}"
            ) from None
    from .transfer import UnsupportedPipelineError, check_pipeline

    try:
        check_pipeline(pipe)
    except UnsupportedPipelineError as error:
        raise InputError(str(error)) from None
    pipe.set_progress_bar_config(disable=True)  # our own bar counts the steps
    if cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    return pipe


def transfer(args: argparse.Namespace, pipe, config) -> int:
    import torch

    from .transfer import MotionTransferError, motion_transfer
    from .video_io import VideoReadError, side_by_side, write_video

    image = _load_image(args.image) if args.image is not None else None
    generator = torch.Generator(device="cpu").manual_seed(args.seed)
    try:
        result = motion_transfer(
            pipe,
            reference=args.reference,
            reference_prompt=args.reference_prompt,
            reference_subject=args.reference_subject,
            prompt=args.prompt,
            subject=args.subject,
            image=image,
            config=config,
            generator=generator,
            return_details=True,
            progress=not args.no_progress,
        )
    except (MotionTransferError, VideoReadError) as error:
        raise InputError(str(error)) from None

    out: Path = args.out
    fps = result.config.fps
    upscale = max(1, UPSCALE_BELOW // max(result.frames.shape[-2:]))
    written = []
    for name in ("video.mp4", "video.gif"):
        written.append(write_video(out / name, result.frames, fps=fps, upscale=upscale))
    both = side_by_side(result.reference_frames, result.frames)
    for name in ("side_by_side.mp4", "side_by_side.gif"):
        written.append(write_video(out / name, both, fps=fps, upscale=upscale))
    written.append(write_run_config(out / "config.json", args, result))
    written.append(write_mask_page(out / "masks.html", result, args.reference_subject))
    print("wrote " + ", ".join(str(path) for path in written))
    return 0


def write_run_config(path: Path, args: argparse.Namespace, result) -> Path:
    """The resolved LMPConfig plus the run's inputs: ``LMPConfig.load`` reads the ``config`` part back."""
    from attnkit.record.atomic import atomic_write_bytes

    payload = {
        "config": result.config.to_dict(),
        "run": {
            "model": args.model,
            "reference": args.reference,
            "reference_prompt": args.reference_prompt,
            "reference_subject": args.reference_subject,
            "prompt": args.prompt,
            "subject": args.subject,
            "image": args.image,
            "seed": args.seed,
            "dtype": args.dtype,
            "modules": result.modules,
            **{
                key: value
                for key, value in result.record.items()
                if key not in ("prompt", "reference_prompt")
            },
        },
    }
    return atomic_write_bytes(path, (json.dumps(payload, indent=2) + "\n").encode("utf-8"))


def write_mask_page(path: Path, result, subject: str) -> Path:
    """FBDM's maps and masks per step as one self-contained plotly page (attnkit.viz explorer)."""
    import torch

    from attnkit.record.maps import MEAN, AttentionRecord
    from attnkit.viz import save_html
    from attnkit.viz.maps_figure import attention_figure

    if not result.masks:
        from attnkit.record.atomic import atomic_write_bytes

        reason = "FBDM was disabled" if not result.modules["fbdm"] else "FBDM made no mask (fbdm_steps = 0)"
        return atomic_write_bytes(
            path, f"<!DOCTYPE html><html><body><p>No FBDM masks: {reason}.</p></body></html>\n".encode()
        )
    maps = torch.stack(
        [torch.stack([record.attention_map, record.mask.float()]) for record in result.masks]
    ).unsqueeze(
        1
    )  # (steps, 1 layer option, 2 "tokens": map and mask, frames, h, w)
    positions = result.record["reference_subject_tokens"]
    record = AttentionRecord(
        maps={"reference": maps},
        grid=tuple(result.masks[0].mask.shape),
        tokens=[f"{subject}: normalised map", f"{subject}: foreground mask"],
        token_positions=[positions, positions],
        steps=[record.step for record in result.masks],
        timesteps=[record.timestep for record in result.masks],
        layers=list(result.record["fbdm_layers"]),  # the attention calls FBDM averaged, as the adapter names them
        layer_names=list(result.record["fbdm_layers"].values()),
        layer_reduction=MEAN,
        prompt=result.record["reference_prompt"],
    )
    frames = result.reference_frames.permute(0, 2, 3, 1).clamp(0, 1).numpy()
    figure = attention_figure(record, branch="reference", frames=frames)
    figure.update_layout(title=f"FBDM foreground of '{subject}' in the reference (mask used at step t+1)")
    return save_html(figure, path, title="LMP FBDM masks")


def _load_image(path: str):
    from PIL import Image

    try:
        return Image.open(path).convert("RGB")
    except Exception as error:
        raise InputError(f"cannot read --image {path!r}: {type(error).__name__}: {error}") from None


register_command(
    "transfer",
    "LMP zero-shot motion transfer of a reference video's motion to a new prompt",
    add_arguments,
    run,
)
