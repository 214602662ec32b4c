"""The ``attnkit-lmp transfer`` command: motion transfer from the command line, with every output written.

    attnkit-lmp transfer --model attnkit_lmp/toy/pretrained --reference demo_out/reference.gif \\
        --reference-prompt "a green square" --reference-subject square \\
        --prompt "a blue circle" --subject circle --out runs/circle

``--model`` is a local diffusers folder of a pipeline ``motion_transfer`` drives
(``attnkit_lmp.families.driven_pipelines()`` lists them), or a hub id; ``attnkit_lmp/toy/pretrained`` and ``pretrained_wan`` are the bundled
toy models. The tiny random test pipelines of ``attnkit.testing`` run too, once saved to a folder
(``tiny_cogvideox_pipeline("t2v").save_pretrained("tiny-t2v")``, then ``--model tiny-t2v``).
A model folder may carry ``lmp_defaults.json`` (:mod:`attnkit_lmp.model_defaults`): its settings replace the
paper's defaults, under ``--config`` and explicit flags; the run prints and records where each setting
came from.

The output folder receives ``video.mp4`` and ``video.gif`` (the result), ``side_by_side.mp4`` and
``side_by_side.gif`` (reference | result), ``config.json`` (the resolved config plus the run's inputs:
``--config OUT/config.json`` repeats the run) and ``masks.html`` (FBDM's foreground maps and masks per
step). All of them are written into a staging folder beside ``--out`` and renamed to it when complete, so
``--out`` holds a whole run or nothing. Inputs are checked before the model is loaded or any denoising
starts: a problem exits with status 2 and one line saying what to fix; a failure to write exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from .cli import register_command
from .loading import InputError, check_device, hub_offline, is_hub_id, load_pipeline, tiny_model_hint
from .model_defaults import describe_settings
from .threads import add_threads_argument, apply_threads

DTYPES = ("float32", "bfloat16", "float16")
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
UPSCALE_BELOW = 256  # tiny outputs are enlarged in the written files so they can be seen
# Above this share of a reference frame lost to the centre crop, the object may leave the picture: warn.
CROP_WARN_SHARE = 0.25
# The run inputs a previous run's config.json supplies when the flag is not given.
REPEATED_INPUTS = (
    "model", "reference", "reference_prompt", "reference_subject", "prompt", "subject", "image", "seed", "dtype"
)
REQUIRED_INPUTS = ("model", "reference_prompt", "reference_subject", "prompt", "subject")


class OutputError(Exception):
    """The outputs cannot be written; nothing was left in ``--out``."""


def _dtype(text: str) -> str:
    name = DTYPE_ALIASES.get(text.lower(), text.lower())
    if name not in DTYPES:
        raise argparse.ArgumentTypeError(f"--dtype {text!r} is not one of {', '.join(DTYPES)}")
    return name


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "LMP zero-shot motion transfer: generate --prompt's video with the motion of --reference.\n\n"
        "Try it on the bundled toy model (about 20 s on one CPU thread) with the toy clip that\n"
        "bash scripts/demo.sh writes; describe it with the reference prompt the demo prints (the toy\n"
        "knows only the words of its world's prompts, like 'a green square'):\n"
        "  attnkit-lmp transfer --model attnkit_lmp/toy/pretrained --reference demo_out/reference.gif \\\n"
        "      --reference-prompt 'a green square' --reference-subject square \\\n"
        "      --prompt 'a blue circle' --subject circle --out runs/circle\n\n"
        "Settings: the paper's defaults, replaced by the model folder's lmp_defaults.json (the bundled toys\n"
        "have one), then by --config, then by --steps. Repeat a run with --config RUN/config.json --out NEW."
    )
    parser.add_argument(
        "--model",
        help="local diffusers folder of a pipeline motion_transfer drives (CogVideoX, Wan, HunyuanVideo, "
        "LTX-Video; T2V or I2V) or a hub id, e.g. the bundled toy "
        "attnkit_lmp/toy/pretrained (or pretrained_wan)",
    )
    parser.add_argument(
        "--reference",
        help="reference video: mp4/gif/folder of frames; omit to generate it from --reference-prompt",
    )
    parser.add_argument("--reference-prompt", help="prompt describing the reference video")
    parser.add_argument("--reference-subject", help="subject word(s) of the reference prompt, e.g. dog")
    parser.add_argument("--prompt", help="prompt of the video to generate")
    parser.add_argument("--subject", help="subject word(s) of --prompt, e.g. cat")
    parser.add_argument("--image", help="first frame of the target (image-to-video models only)")
    parser.add_argument(
        "--config",
        type=Path,
        help="LMPConfig as JSON or YAML (its fields replace the model's and the paper's defaults), or a "
        "previous run's config.json, which also supplies that run's model, reference, prompts, subjects, "
        "image, seed and dtype where no flag is given",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help="num_inference_steps (default: the model folder's lmp_defaults.json, else the paper's 50); "
        "the module thresholds are scaled to it",
    )
    parser.add_argument("--seed", type=int, help="seed of the initial noise (default 0)")
    parser.add_argument(
        "--dtype",
        type=_dtype,
        metavar="{" + ",".join(DTYPES) + "}",
        help="weights dtype (default float32; bfloat16 for real checkpoints on a GPU)",
    )
    parser.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:N or mps")
    add_threads_argument(parser)
    parser.add_argument(
        "--cpu-offload", action="store_true", help="enable_model_cpu_offload() (GPU users with little memory)"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; must not hold files)")
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an --out that already holds a run or other files"
    )


def run(args: argparse.Namespace) -> int:
    try:
        repeat_inputs(args)
        threads = apply_threads(args.threads)
        config, sources = check_inputs(args)
        print(f"torch threads: {threads} (--threads to change)")
        print(describe_settings(config, sources))
        pipe = load_pipeline(args.model, args.dtype, args.device, args.cpu_offload, progress=not args.no_progress)
        return transfer(args, pipe, config, sources, threads)
    except InputError as error:
        print(f"attnkit-lmp transfer: error: {error}", file=sys.stderr)
        return 2
    except OutputError as error:
        print(f"attnkit-lmp transfer: error: {error}", file=sys.stderr)
        return 1


def repeat_inputs(args: argparse.Namespace) -> None:
    """Fill inputs not given on the command line from a previous run's ``config.json``; then check them."""
    record = _run_record(args.config) if args.config is not None else None
    if record is not None:
        for name in REPEATED_INPUTS:
            if getattr(args, name) is None and record.get(name) is not None:
                setattr(args, name, record[name])
    missing = [name for name in REQUIRED_INPUTS if not getattr(args, name)]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        verb, pronoun = ("is", "it") if len(missing) == 1 else ("are", "them")
        raise InputError(
            f"{flags} {verb} required; pass {pronoun}, or --config RUN/config.json to repeat a previous run"
        )
    if args.seed is None:
        args.seed = 0
    if args.dtype is None:
        args.dtype = "float32"
    else:
        args.dtype = _dtype(args.dtype)


def _run_record(path: Path) -> dict | None:
    """The ``run`` part of a config.json written by this command, or None for a plain LMPConfig file."""
    if path.suffix.lower() != ".json" or not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # LMPConfig.load reports the error with its own message
    if isinstance(payload, dict) and isinstance(payload.get("run"), dict) and isinstance(payload.get("config"), dict):
        return payload["run"]
    return None


def check_inputs(args: argparse.Namespace):
    """Everything that can be checked without the model. Returns ``(config, sources)``.

    ``sources`` maps each setting that is not the paper's default to where it came from.
    """
    from .video_io import VideoReadError, load_frames

    check_output_folder(args.out, args.overwrite)
    check_device(args.device)
    if is_hub_id(args.model):
        if hub_offline():
            raise InputError(
                f"--model {args.model!r} is a Hugging Face hub id, but the hub is offline here (HF_HUB_OFFLINE); "
                f"download it first (huggingface-cli download {args.model} --local-dir DIR) and pass --model DIR, "
                "or unset HF_HUB_OFFLINE"
            )
    elif not (Path(args.model) / "model_index.json").is_file():
        from .families import driven_pipelines

        raise InputError(
            f"--model {args.model!r} is not a diffusers pipeline folder (no model_index.json); pass the local "
            f"folder of a checkpoint of a pipeline motion_transfer drives ({', '.join(driven_pipelines())}), a hub "
            f"id, or the bundled toy attnkit_lmp/toy/pretrained{tiny_model_hint(args.model)}"
        )
    config, sources = resolve_config(args)
    if args.reference is not None:
        try:
            frames = load_frames(args.reference)
        except VideoReadError as error:
            raise InputError(str(error)) from None
        args.reference_shape = tuple(frames.shape[-2:])
    if args.image is not None and not Path(args.image).is_file():
        raise InputError(f"--image {args.image!r} is not a file; pass the target's first frame as a png/jpg")
    if not is_hub_id(args.model):
        check_subjects_with_tokenizer(args, config)
    return config, sources


def resolve_config(args: argparse.Namespace):
    """The paper's defaults, then the model folder's ``lmp_defaults.json``, then ``--config``, then ``--steps``."""
    from .config import LMPConfigError
    from .model_defaults import ModelDefaultsError, layered_config

    try:
        return layered_config(args.model, args.config, steps=args.steps)
    except ModelDefaultsError as error:
        raise InputError(f"{error}; fix the file or remove it to use the paper's defaults") from None
    except LMPConfigError as error:
        raise InputError(str(error)) from None


def check_output_folder(folder: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that holds files (unless ``overwrite``) or cannot be created; creates nothing."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--out {str(folder)!r} is a file, not a folder; choose another --out")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        what = "a previous run (config.json)" if (folder / "config.json").exists() else "files"
        raise InputError(
            f"--out {str(folder)!r} already holds {what}; choose a new folder, or pass --overwrite to replace it"
        )
    existing = folder.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(
            f"output folder {str(folder)!r} is not writable (cannot create files in {str(existing)!r}); "
            "choose another --out"
        )


def check_subjects_with_tokenizer(args: argparse.Namespace, config) -> None:
    """Check the subject words against the model folder's tokenizer alone, before the model is loaded.

    Only presence is checked (the prompt's truncation and templates are checked again once the pipeline
    is loaded); a folder without a loadable tokenizer is left to that later check.
    """
    from attnkit.tokens import word_token_indices

    folder = Path(args.model) / "tokenizer"
    if not folder.is_dir():
        return
    try:
        from transformers import AutoTokenizer

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception:  # an unusual tokenizer folder: the pipeline's own check after loading still runs
        return
    for flag, prompt, subject in (
        ("--reference-subject", args.reference_prompt, args.reference_subject),
        ("--subject", args.prompt, args.subject),
    ):
        for word in [subject] if isinstance(subject, str) else list(subject):
            try:
                word_token_indices(tokenizer, prompt, word)
            except ValueError as error:
                raise InputError(f"{flag}: {error}") from None


def transfer(
    args: argparse.Namespace, pipe, config, sources: dict[str, str] | None = None, threads: int | None = None
) -> int:
    import torch

    import attnkit

    from .transfer import MotionTransferError, NonFiniteOutputError, motion_transfer
    from .video_io import VideoReadError

    image = _load_image(args.image) if args.image is not None else None
    warn_about_crop(args, pipe, config)
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
            # A NaN from a plugin would otherwise be written as a black video; the check names the call.
            check_finite=True,
        )
    except (MotionTransferError, VideoReadError, NonFiniteOutputError, attnkit.NonFiniteError) as error:
        raise InputError(str(error)) from None
    written = write_outputs(args, result, sources or {}, threads)
    print("wrote " + ", ".join(str(args.out / name) for name in written))
    return 0


def warn_about_crop(args: argparse.Namespace, pipe, config) -> None:
    """Warn when the centre crop to the model's frame discards more than ``CROP_WARN_SHARE`` of a frame."""
    shape = getattr(args, "reference_shape", None)
    if shape is None:
        return
    from .transfer import _resolved_config, pipeline_family

    resolved = _resolved_config(pipe, config, pipeline_family(pipe))
    kept = kept_share(shape, (resolved.height, resolved.width))
    if 1 - kept > CROP_WARN_SHARE:
        print(
            f"attnkit-lmp transfer: warning: the reference's frames are {shape[0]} x {shape[1]} (h x w) and the "
            f"model makes {resolved.height} x {resolved.width}: the centre crop keeps {kept:.0%} of each frame, "
            "and motion outside it is lost; crop the reference to the model's aspect ratio around the subject",
            file=sys.stderr,
        )


def kept_share(source: tuple[int, int], target: tuple[int, int]) -> float:
    """The share of a ``source`` frame that scaling to cover ``target`` and centre-cropping keeps."""
    (height, width), (target_height, target_width) = source, target
    scale = max(target_height / height, target_width / width)
    return (target_height * target_width) / (height * scale * width * scale)


def write_outputs(args: argparse.Namespace, result, sources: dict[str, str], threads: int | None) -> list[str]:
    """Write every output into a staging folder beside ``--out``, then rename it to ``--out``.

    An OS error (a full disk, a folder removed under us) removes the staging folder and raises
    :class:`OutputError`: ``--out`` keeps what it held before, or does not exist.
    """
    from .video_io import side_by_side, write_frames, write_video

    out: Path = args.out
    parent = out.absolute().parent
    staging = None
    try:
        parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(parent, out.name)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=parent))
        fps = result.config.fps
        upscale = max(1, UPSCALE_BELOW // max(result.frames.shape[-2:]))
        for name in ("video.mp4", "video.gif"):
            write_video(staging / name, result.frames, fps=fps, upscale=upscale)
        # The generated frames as they are: the videos of a small model are enlarged and the mp4 is lossy,
        # so scores (positions in pixels, colours) are computed from these.
        write_frames(staging / "frames", result.frames)
        both = side_by_side(result.reference_frames, result.frames)
        for name in ("side_by_side.mp4", "side_by_side.gif"):
            write_video(staging / name, both, fps=fps, upscale=upscale)
        write_run_config(staging / "config.json", args, result, sources, threads, video_upscale=upscale)
        write_mask_page(staging / "masks.html", result, args.reference_subject)
        written = sorted(path.name for path in staging.iterdir())
        publish(staging, out.absolute(), args.overwrite)
    except OSError as error:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        where = f" ({error.filename})" if getattr(error, "filename", None) else ""
        raise OutputError(
            f"cannot write the outputs to {str(out)!r}: {error.strerror or error}{where}; nothing was written "
            "there. Free some space or choose another --out"
        ) from None
    return written


def publish(staging: Path, out: Path, overwrite: bool) -> None:
    """Rename the complete ``staging`` folder to ``out``; an existing ``out`` is replaced only with ``overwrite``."""
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if not out.exists():
        os.rename(staging, out)
        return
    if not overwrite:
        # Another process wrote --out while we ran: keep its files and ours apart.
        raise FileExistsError(17, "another run wrote this folder meanwhile; pass --overwrite to replace it", str(out))
    previous = out.parent / f".{out.name}.{os.getpid()}.previous.tmp"
    os.rename(out, previous)
    os.rename(staging, out)
    shutil.rmtree(previous, ignore_errors=True)


def remove_stale_staging(parent: Path, name: str) -> None:
    """Remove staging folders of ``name`` left by runs that died (their process id is gone)."""
    for path in parent.glob(f".{name}.*.tmp"):
        parts = path.name[len(name) + 2 :].split(".")
        if not parts or not parts[0].isdigit() or _process_alive(int(parts[0])):
            continue
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def write_run_config(
    path: Path,
    args: argparse.Namespace,
    result,
    sources: dict[str, str] | None = None,
    threads: int | None = None,
    video_upscale: int = 1,
) -> Path:
    """The resolved LMPConfig plus the run's inputs: ``--config`` this file to repeat the run.

    ``LMPConfig.load`` reads the ``config`` part back; the ``run`` part names the inputs by absolute path,
    and ``video_upscale`` says how many times the videos are enlarged over ``frames/``.
    """
    from attnkit.record.atomic import atomic_write_bytes

    details = {key: value for key, value in result.record.items() if key not in ("prompt", "reference_prompt")}
    # The record's "reference" says which kind of reference ran; the run's "reference" is the input path.
    details["reference_kind"] = details.pop("reference", None)
    payload = {
        "config": result.config.to_dict(),
        "run": {
            **details,
            "model": str(Path(args.model).absolute()),
            "reference": str(Path(args.reference).absolute()) if args.reference is not None else None,
            "reference_prompt": args.reference_prompt,
            "reference_subject": args.reference_subject,
            "prompt": args.prompt,
            "subject": args.subject,
            "image": str(Path(args.image).absolute()) if args.image is not None else None,
            "seed": args.seed,
            "dtype": args.dtype,
            "device": args.device,
            "threads": threads,
            "modules": result.modules,
            "settings": dict(sorted((sources or {}).items())),
            "video_upscale": video_upscale,
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
    figure.update_layout(title_text=f"FBDM foreground of '{subject}' in the reference (mask used at step t+1)")
    description = (
        f"What FBDM found in the reference video, over its frames, for each denoising step (slider). "
        f"'{subject}: normalised map' is how strongly the subject word '{subject}' and each reference video "
        f"token attend to each other (both directions, averaged over heads and the layers FBDM reads), "
        f"scaled to 0..1 within each latent frame. '{subject}: foreground mask' is that map at or above "
        f"fg_threshold = {result.config.fg_threshold}: the tokens RMTM lets the target attend to at the "
        "next step. The menu at the top left switches between the two. docs/method.md explains the method."
    )
    return save_html(figure, path, title="LMP FBDM masks", description=description)


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
