"""Trains the toy pipeline on clips rendered on the fly by the toy world, with resumable checkpoints.

What is learnt: the transformer and the tiny T5 text encoder, jointly, to predict the clean clip
(x0-prediction) from a noised one and its prompt. The VAE is a fixed identity
(:func:`attnkit_lmp.toy.model.build_identity_vae`, :func:`attnkit_lmp.toy.wan_model.build_identity_wan_vae`),
so latents are pixels in [-1, 1] and the training loop skips it (it would return its input to ~1e-5).
The same loop trains either architecture (``ToyModelConfig.architecture``); what differs, the noise path,
the prompt encoding and the transformer's call, :mod:`attnkit_lmp.toy.denoiser` asks of the model family.

Reproducibility: the model weights, the clips of every step (world seeds derived from the run seed
and the step) and the noise are seeded; a resumed run continues the same data stream. Threads
default to 1 because the machine is shared; pass ``threads`` to use more.

Output folder layout::

    OUT/checkpoint.pt      training state (weights, EMA, optimiser, step, configs) for --resume
    OUT/pipeline/          the EMA weights as the stock pipeline class (save_pretrained, safetensors)
    OUT/train.log          one line per logged step: step, loss, learning rate, seconds per step
"""

from __future__ import annotations

import copy
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from attnkit_lmp.model_defaults import DEFAULTS_FILE
from attnkit_lmp.toy.denoiser import toy_denoiser
from attnkit_lmp.toy.model import TOY_CONFIG_FILE, ToyModelConfig, build_toy_pipeline
from attnkit_lmp.toy.world import background_mix, random_clip_spec, render_clip, world_description

CHECKPOINT_FORMAT = "attnkit-toy-checkpoint-v1"
# Clip seeds of a run: run_seed * _SEEDS_PER_RUN + step * batch_size + index; runs never share clips.
_SEEDS_PER_RUN = 10**9


class CheckpointError(RuntimeError):
    """A checkpoint cannot be resumed: missing, unreadable, or written for other settings."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; the ones that change what a step means must match to resume."""

    batch_size: int = 8
    learning_rate: float = 1.5e-3
    warmup_steps: int = 200
    final_learning_rate_fraction: float = 0.1
    weight_decay: float = 0.0
    prompt_dropout: float = 0.1
    ema_decay: float = 0.999
    # Share of clips on the default (black) background; the world's other backgrounds share the rest.
    default_background_probability: float = 0.2
    # Share of clips with a distractor (in a world that has them).
    distractor_probability: float = 0.3
    high_noise_fraction: float = 0.5
    high_noise_start: int = 800
    region_loss_weight: float = 4.0
    frame_mean_loss_weight: float = 16.0
    temporal_loss_weight: float = 0.0

    def validate(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size}: expected at least 1.")
        if not 0 <= self.prompt_dropout < 1:
            raise ValueError(f"prompt_dropout={self.prompt_dropout}: expected a probability in [0, 1).")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"ema_decay={self.ema_decay}: expected a value in [0, 1).")
        if not 0 <= self.high_noise_fraction <= 1:
            raise ValueError(
                f"high_noise_fraction={self.high_noise_fraction}: expected a probability in [0, 1]."
            )
        for name in ("region_loss_weight", "frame_mean_loss_weight", "temporal_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: expected a non-negative loss weight.")
        for name in ("default_background_probability", "distractor_probability"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected a probability in [0, 1].")

    # Fields that decide the data stream or the model: a resumed run must use the same values.
    RESUME_FIELDS = ("batch_size", "prompt_dropout", "default_background_probability", "distractor_probability")


def x0_loss(predicted: torch.Tensor, clean: torch.Tensor, config: TrainConfig, region: int = 8) -> torch.Tensor:
    """MSE of the predicted clean clip, plus MSEs of its region means, frame means and frame-to-frame changes.

    ``region`` is the side in pixels of the pooled regions: the model's patch, i.e. one video token.

    The MSE and the pooled terms are minimised by the same prediction (the conditional mean of the
    clip), so the pooled terms add no bias; they add signal. Per pixel, the object's colour is ~10 % of
    the frame and, at high noise, smeared over every place the object could be, so the per-pixel loss
    barely rewards using the prompt's colour words (a model trained on it alone ignored them for 2,000
    steps). The frame mean depends on that colour directly. (Weighting object pixels more instead
    biases the prediction towards "object everywhere": samples filled the frame with the colour.)
    The temporal term (differences of consecutive frames) is linear in the clip too, so it has the
    same minimiser; it weights most the errors that change from frame to frame, i.e. an object that
    jumps instead of travelling.
    """
    loss = ((predicted - clean) ** 2).mean()
    if config.region_loss_weight:
        region_error = _region_means(predicted, region) - _region_means(clean, region)
        loss = loss + config.region_loss_weight * (region_error**2).mean()
    if config.frame_mean_loss_weight:
        frame_error = predicted.mean(dim=(-2, -1)) - clean.mean(dim=(-2, -1))
        loss = loss + config.frame_mean_loss_weight * (frame_error**2).mean()
    if config.temporal_loss_weight:
        change_error = (predicted - clean).diff(dim=1)
        loss = loss + config.temporal_loss_weight * (change_error**2).mean()
    return loss


def _region_means(video: torch.Tensor, region: int = 8) -> torch.Tensor:
    """Mean colour of every ``region`` x ``region`` pixel block of every frame of (B, F, C, H, W) clips."""
    batch, frames, channels, height, width = video.shape
    return torch.nn.functional.avg_pool2d(video.reshape(batch * frames, channels, height, width), region)


def learning_rate_at(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``final_learning_rate_fraction`` at ``total_steps``."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    floor = config.final_learning_rate_fraction
    return config.learning_rate * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def sample_timesteps(
    batch: int, num_timesteps: int, config: TrainConfig, generator: torch.Generator
) -> torch.Tensor:
    """Training timesteps: uniform, except a ``high_noise_fraction`` drawn from [high_noise_start, T).

    Why oversample high noise: the prompt's colour and shape only help where the noisy input no
    longer shows them (abar < ~0.01, t >= ~800 here), and that is where sampling decides them. With
    uniform timesteps 20 % of the steps train that regime and the model ignored the prompt's colour
    words for 2,000+ steps: colours came out random (fixed by the noise).
    """
    uniform = torch.randint(0, num_timesteps, (batch,), generator=generator)
    high = torch.randint(config.high_noise_start, num_timesteps, (batch,), generator=generator)
    pick_high = torch.rand(batch, generator=generator) < config.high_noise_fraction
    return torch.where(pick_high, high, uniform)


def training_batch(run_seed: int, step: int, config: TrainConfig, model_config: ToyModelConfig):
    """The clips of ``step``: (pixels (B,F,3,H,W) in [-1,1], prompts)."""
    world = model_config.world
    backgrounds = background_mix(world, config.default_background_probability)
    distractors = config.distractor_probability if world.distractor_size else 0.0
    pixels, prompts = [], []
    for index in range(config.batch_size):
        clip_seed = run_seed * _SEEDS_PER_RUN + step * config.batch_size + index
        spec = random_clip_spec(
            clip_seed, "train", background_probabilities=backgrounds, distractor_probability=distractors, world=world
        )
        clip = render_clip(spec, world)
        pixels.append(clip.frames)
        prompts.append(clip.prompt)
    pixels = torch.from_numpy(np.stack(pixels)).float().div(127.5).sub(1.0).permute(0, 1, 4, 2, 3)
    return pixels.contiguous(), prompts


def train(
    out_dir: str | Path,
    steps: int,
    seed: int = 0,
    resume: bool = False,
    model_config: ToyModelConfig | None = None,
    train_config: TrainConfig | None = None,
    checkpoint_every: int = 250,
    log_every: int = 25,
    threads: int | None = 1,
    progress: bool = True,
    init_from: str | Path | None = None,
    device: str = "cpu",
    data_workers: int = 0,
    time_limit_minutes: float | None = None,
) -> Path:
    """Train until ``steps`` total steps; returns the folder of the saved pipeline (EMA weights).

    With ``resume=True`` and a checkpoint in ``out_dir``, training continues from its step; the
    checkpoint's model and data settings must equal the requested ones (else ``CheckpointError``).
    Without ``resume``, an existing checkpoint in ``out_dir`` is an error rather than overwritten.
    ``init_from`` (a saved toy pipeline folder, e.g. the bundled one) starts a new run from its weights
    instead of random ones: fine-tuning, with a fresh optimiser and learning-rate schedule.

    ``device`` runs the model there (e.g. ``"cuda"``); clips, noise and timesteps are still drawn on the
    CPU from the same seeded streams, so the data of every step is the same on any device.
    ``data_workers`` renders the clips of coming steps in that many worker processes (each step's clips
    depend only on the step, so the stream is unchanged). ``time_limit_minutes`` stops after that much
    wall time with a checkpoint, to be continued with ``resume``: a run that must end before a deadline.
    """
    model_config = model_config or ToyModelConfig()
    train_config = train_config or TrainConfig()
    model_config.validate()
    train_config.validate()
    if steps < 0:
        raise ValueError(f"steps={steps}: expected a non-negative number of training steps.")
    if threads is not None:
        torch.set_num_threads(threads)
    device = _checked_device(device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out_dir / "checkpoint.pt"

    torch.manual_seed(seed)
    pipeline = build_toy_pipeline(model_config, seed=seed)
    trainable = torch.nn.ModuleDict({"transformer": pipeline.transformer, "text_encoder": pipeline.text_encoder})
    ema = copy.deepcopy(trainable).requires_grad_(False)
    optimizer = torch.optim.AdamW(
        trainable.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay
    )
    start_step = 0
    generator = torch.Generator().manual_seed(seed)
    if checkpoint_path.exists():
        if not resume:
            raise CheckpointError(
                f"{checkpoint_path} already exists; pass --resume to continue it or choose another --out."
            )
        state = load_checkpoint(checkpoint_path, model_config, train_config, seed)
        trainable.load_state_dict(state["trainable"])
        ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["generator"])
        start_step = state["step"]
        if start_step >= steps:
            # Nothing to train: exporting again would only rewrite the same model (and drop its searched
            # LMP settings), so the run is left as it is.
            print(
                f"{checkpoint_path} is already at step {start_step} of --steps {steps}: nothing to train. "
                f"Pass a larger --steps (STEPS=... for scripts/train-toy.sh) to continue it on a longer schedule.",
                file=sys.stderr,
            )
            return out_dir / "pipeline"
    elif init_from is not None:
        initial = load_initial_weights(init_from, model_config)
        trainable.load_state_dict(initial)
        ema.load_state_dict(initial)

    trainable.to(device)
    ema.to(device)
    _move_optimizer_state(optimizer, device)
    denoiser = toy_denoiser(pipeline, model_config)
    num_timesteps = pipeline.scheduler.config.num_train_timesteps
    trainable.train()
    started = time.perf_counter()
    batches = _batch_stream(seed, start_step, steps, train_config, model_config, data_workers)
    log_file = (out_dir / "train.log").open("a")
    log_file.write(
        json.dumps(
            {
                "event": "start",
                "step": start_step,
                "steps": steps,
                "seed": seed,
                "threads": torch.get_num_threads(),
                "device": str(device),
                "data_workers": data_workers,
                "init_from": None if init_from is None or start_step else str(init_from),
            }
            | {"model": model_config.to_dict(), "train": asdict(train_config)}
        )
        + "\n"
    )
    bar = tqdm(total=steps, initial=start_step, disable=not progress, desc="toy train", dynamic_ncols=True)
    running_loss, window_start, window_steps = 0.0, time.perf_counter(), 0
    step = start_step
    try:
        for step in range(start_step, steps):
            learning_rate = learning_rate_at(step, steps, train_config)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate
            clean, prompts = next(batches)
            batch = clean.shape[0]
            drop = torch.rand(batch, generator=generator) < train_config.prompt_dropout
            prompts = ["" if dropped else prompt for prompt, dropped in zip(prompts, drop.tolist())]
            timesteps = sample_timesteps(batch, num_timesteps, train_config, generator)
            noise = torch.randn(clean.shape, generator=generator)
            clean, noise, timesteps = clean.to(device), noise.to(device), timesteps.to(device)
            noisy = denoiser.noised(clean, noise, timesteps)
            predicted = denoiser.predict_clean(noisy, denoiser.encode(prompts), timesteps, clip=clean)
            loss = x0_loss(predicted, clean, train_config, region=model_config.patch_size)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable.parameters(), 1.0)
            optimizer.step()
            _update_ema(ema, trainable, step, train_config.ema_decay)

            running_loss += loss.item()
            window_steps += 1
            bar.update(1)
            done = step + 1
            if done % log_every == 0 or done == steps:
                seconds_per_step = (time.perf_counter() - window_start) / window_steps
                mean_loss = running_loss / window_steps
                bar.set_postfix(loss=f"{mean_loss:.4f}", s_per_step=f"{seconds_per_step:.3f}")
                log_file.write(
                    json.dumps(
                        {"step": done, "loss": round(mean_loss, 6), "lr": learning_rate}
                        | {"s_per_step": round(seconds_per_step, 4), "time": time.strftime("%H:%M:%S")}
                    )
                    + "\n"
                )
                log_file.flush()
                running_loss, window_start, window_steps = 0.0, time.perf_counter(), 0
            out_of_time = time_limit_minutes is not None and time.perf_counter() - started >= 60 * time_limit_minutes
            if done % checkpoint_every == 0 or done == steps or out_of_time:
                _save(
                    out_dir,
                    pipeline,
                    trainable,
                    ema,
                    optimizer,
                    generator,
                    done,
                    model_config,
                    train_config,
                    seed,
                )
            if out_of_time:
                log_file.write(json.dumps({"event": "time_limit", "step": done, "minutes": time_limit_minutes}) + "\n")
                break
        if steps <= start_step:
            _save(
                out_dir,
                pipeline,
                trainable,
                ema,
                optimizer,
                generator,
                start_step,
                model_config,
                train_config,
                seed,
            )
    finally:
        bar.close()
        log_file.close()
    return out_dir / "pipeline"


def _checked_device(device: str) -> torch.device:
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device {device!r} is not a torch device ({error}); use e.g. 'cpu' or 'cuda'.") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r}: this torch ({torch.__version__}) sees no CUDA GPU; train with --device cpu."
        )
    return resolved


def _move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    for state in optimizer.state.values():
        for key, value in state.items():
            if torch.is_tensor(value) and key != "step":
                state[key] = value.to(device)


class _StepBatches(torch.utils.data.Dataset):
    """The clips of step ``first_step + index``: a pure function of the step, so workers may render ahead."""

    def __init__(self, run_seed, first_step, last_step, train_config, model_config):
        self.run_seed, self.first_step, self.last_step = run_seed, first_step, last_step
        self.train_config, self.model_config = train_config, model_config

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step)

    def __getitem__(self, index: int):
        return training_batch(self.run_seed, self.first_step + index, self.train_config, self.model_config)


def _batch_stream(run_seed, first_step, last_step, train_config, model_config, workers: int):
    """An iterator over the clips of steps ``first_step..last_step-1``, rendered ahead by ``workers`` processes."""
    dataset = _StepBatches(run_seed, first_step, last_step, train_config, model_config)
    if workers <= 0:
        return (dataset[index] for index in range(len(dataset)))
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=False, num_workers=workers, prefetch_factor=4, persistent_workers=False
    )
    return iter(loader)


def load_checkpoint(path: Path, model_config: ToyModelConfig, train_config: TrainConfig, seed: int) -> dict:
    """Read a checkpoint and check it belongs to a run with these settings; raise ``CheckpointError`` if not."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(error).__name__}: {error}); delete it or choose another --out"
            " to train from scratch."
        ) from error
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path} is not a toy-world training checkpoint (expected format {CHECKPOINT_FORMAT!r}); choose another"
            " --out to train from scratch."
        )
    problems = []
    saved_model = ToyModelConfig.from_dict(state["model_config"]).to_dict()
    if saved_model != model_config.to_dict():
        problems.append(f"model settings {saved_model} != requested {model_config.to_dict()}")
    for name in TrainConfig.RESUME_FIELDS:
        if state["train_config"].get(name) != getattr(train_config, name):
            problems.append(
                f"{name}={state['train_config'].get(name)} != requested {getattr(train_config, name)}"
            )
    if state["seed"] != seed:
        problems.append(f"seed={state['seed']} != requested {seed}")
    if problems:
        raise CheckpointError(
            f"checkpoint {path} is incompatible with this run: "
            + "; ".join(problems)
            + ". Resume with the checkpoint's settings, or choose another --out to start a new run."
        )
    return state


def load_initial_weights(folder: str | Path, model_config: ToyModelConfig) -> dict:
    """Transformer and text-encoder weights of a saved toy pipeline, checked to fit ``model_config``.

    A text-to-video CogVideoX toy may start an image-to-video one of the same sizes: the input projection
    gains the image channels with zero weights, so the fine-tune starts as the text-to-video model.
    """
    from attnkit_lmp.toy.pretrained import load_toy_pipeline

    folder = Path(folder)
    record_path = folder / TOY_CONFIG_FILE
    try:
        saved = ToyModelConfig.from_dict(json.loads(record_path.read_text())["model"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"cannot start from {folder}: {record_path} is missing or unreadable ({error}); expected a folder"
            " written by `python -m attnkit_lmp.toy train` (OUT/pipeline) or the bundled model."
        ) from error
    widen = saved.architecture == "cogvideox" and model_config.architecture == "cogvideox-i2v"
    comparable = replace(saved, architecture=model_config.architecture) if widen else saved
    if comparable != model_config:
        raise CheckpointError(
            f"cannot start from {folder}: its model settings {saved.to_dict()} != requested"
            f" {model_config.to_dict()}. Pass the same model sizes, or train from scratch without --init-from."
        )
    pipeline = load_toy_pipeline(folder)
    weights = {
        **{f"transformer.{key}": value for key, value in pipeline.transformer.state_dict().items()},
        **{f"text_encoder.{key}": value for key, value in pipeline.text_encoder.state_dict().items()},
    }
    if widen:
        name = "transformer.patch_embed.proj.weight"
        weights[name] = torch.cat([weights[name], torch.zeros_like(weights[name])], dim=1)
    return weights


def _update_ema(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    # Warm-up of the decay so the average is not dominated by the random initial weights.
    decay = min(decay, (1 + step) / (10 + step))
    with torch.no_grad():
        for average, current in zip(ema.parameters(), model.parameters()):
            average.lerp_(current, 1 - decay)


def _save(
    out_dir, pipeline, trainable, ema, optimizer, generator, step, model_config, train_config, seed
) -> None:
    state = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "seed": seed,
        "model_config": model_config.to_dict(),
        "train_config": asdict(train_config),
        "trainable": trainable.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": optimizer.state_dict(),
        "generator": generator.get_state(),
    }
    temporary = out_dir / "checkpoint.pt.tmp"
    torch.save(state, temporary)
    temporary.replace(out_dir / "checkpoint.pt")  # atomic: a kill mid-save never leaves a torn checkpoint
    export_pipeline(pipeline, ema, out_dir / "pipeline", model_config, extra={"step": step, "seed": seed})


def export_pipeline(
    pipeline, ema: torch.nn.Module, folder: Path, model_config: ToyModelConfig, extra: dict | None = None
) -> None:
    """Save ``pipeline`` with the EMA weights (``save_pretrained``, safetensors) plus ``toy_config.json``."""
    transformer = copy.deepcopy(pipeline.transformer).cpu()
    text_encoder = copy.deepcopy(pipeline.text_encoder).cpu()
    transformer.load_state_dict(ema["transformer"].state_dict())
    text_encoder.load_state_dict(ema["text_encoder"].state_dict())
    exported = type(pipeline)(
        tokenizer=pipeline.tokenizer,
        text_encoder=text_encoder.eval(),
        vae=pipeline.vae,
        transformer=transformer.eval(),
        scheduler=pipeline.scheduler,
    )
    exported.save_pretrained(folder, safe_serialization=True)
    record = {"model": model_config.to_dict(), "world": world_description(model_config.world), **(extra or {})}
    (Path(folder) / TOY_CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    searched = Path(folder) / DEFAULTS_FILE
    if searched.is_file():
        # LMP settings searched on the weights just replaced no longer describe this model.
        searched.unlink()
        print(f"removed {searched}: it was searched on earlier weights; search again on these", file=sys.stderr)
