"""A recording of attention maps: arrays per branch plus what they mean, with lookups that explain mistakes.

An :class:`AttentionRecord` holds, for each recorded branch, one float32 tensor of shape
``(steps, layers, tokens, frames, height, width)``. The step axis has one entry per recorded denoising
step (or one, the mean, when steps were reduced); the layer axis likewise. Everything needed to read
the arrays without the model that made them is in the metadata fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

DIRECTIONS = ("text->video", "video->text", "both")
MEAN = "mean"


class RecordLookupError(KeyError):
    """A token, layer, step or branch asked of a record is not in it; the message lists what is."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class AttentionRecord:
    """Attention maps of chosen text tokens over the latent video grid, per branch, step and layer.

    ``maps[branch]`` has shape ``(len(step_labels), len(layer_labels), len(tokens), *grid)``.
    ``steps`` / ``timesteps`` are the recorded denoising steps; with ``step_reduction="mean"`` the step
    axis has length 1 and holds their mean (likewise ``layers`` / ``layer_reduction``).
    ``token_positions[i]`` are the positions in the text sequence that ``tokens[i]`` covers (a word can
    be several tokens); the map of a token sums its positions' maps.
    """

    maps: dict[str, torch.Tensor]
    grid: tuple[int, int, int]
    tokens: list[str]
    token_positions: list[list[int]]
    steps: list[int]
    timesteps: list[float | None]
    layers: list[int]
    layer_names: list[str]
    direction: str = "both"
    heads: str | list[int] = MEAN
    step_reduction: str | None = None
    layer_reduction: str | None = None
    model_class: str = ""
    pipeline_class: str | None = None
    adapter: str = ""
    layout: dict[str, list[int]] = field(default_factory=dict)
    prompt: str | None = None
    prompt_tokens: list[str] | None = None
    num_heads: int | None = None
    complete: bool = True
    attnkit_version: str = ""

    # --- shape ------------------------------------------------------------------------------------

    @property
    def branches(self) -> list[str]:
        return list(self.maps)

    @property
    def step_labels(self) -> list[str]:
        """One label per step-axis entry: ``["step 0 (t=999)", ...]`` or ``["mean of steps 0-3"]``."""
        if self.step_reduction == MEAN:
            return [f"mean of {_describe_indices('steps', self.steps)}"] if self.steps else []
        return [_step_label(step, timestep) for step, timestep in zip(self.steps, self.timesteps)]

    @property
    def layer_labels(self) -> list[str]:
        if self.layer_reduction == MEAN:
            return [f"mean of {_describe_indices('layers', self.layers)}"] if self.layers else []
        return [f"layer {layer}" for layer in self.layers]

    def expected_shape(self) -> tuple[int, ...]:
        return (len(self.step_labels), len(self.layer_labels), len(self.tokens), *self.grid)

    @property
    def is_empty(self) -> bool:
        """True when no step was recorded (e.g. the run ended before the first recorded step)."""
        return not self.steps or not self.maps

    def describe(self) -> str:
        """One line saying what the record holds."""
        return (
            f"{self.model_class or 'model'} record: branches {self.branches}, tokens {self.tokens}, "
            f"{len(self.steps)} steps{' (mean)' if self.step_reduction else ''}, "
            f"{len(self.layers)} layers{' (mean)' if self.layer_reduction else ''}, "
            f"grid {tuple(self.grid)}, direction {self.direction}"
        )

    # --- lookups with explaining errors ---------------------------------------------------------------

    def branch_name(self, branch: str | None) -> str:
        """``branch``, or the only/``cond`` branch when None."""
        if self.is_empty:
            raise RecordLookupError(f"the record has no maps ({self.describe()}); record at least one step")
        if branch is None:
            return "cond" if "cond" in self.maps else self.branches[0]
        if branch not in self.maps:
            raise RecordLookupError(
                f"branch {branch!r} is not in the record; it has branches {self.branches}"
            )
        return branch

    def token_index(self, token: str | int) -> int:
        """Index on the token axis of a recorded token, by its label (``"dog"``) or text position (``2``)."""
        if isinstance(token, str) and token in self.tokens:
            return self.tokens.index(token)
        if isinstance(token, int) or (isinstance(token, str) and token.isdigit()):
            position = int(token)
            for index, positions in enumerate(self.token_positions):
                if positions == [position]:
                    return index
        recorded = ", ".join(
            f"{label!r} (positions {positions})"
            for label, positions in zip(self.tokens, self.token_positions)
        )
        raise RecordLookupError(
            f"token {token!r} is not in the record; it has tokens {recorded or 'none'}. "
            "Record it with AttentionRecorder(tokens=[...]) or choose one of these"
        )

    def layer_index(self, layer: int | str | None) -> int | None:
        """Index on the layer axis for a model layer number; None (or ``"mean"``) asks for the layer mean."""
        return _axis_index("layer", layer, self.layers, self.layer_reduction)

    def step_index(self, step: int | str | None) -> int | None:
        """Index on the step axis for a denoising step number; None (or ``"mean"``) asks for the step mean."""
        return _axis_index("step", step, self.steps, self.step_reduction)

    def map(
        self,
        token: str | int,
        branch: str | None = None,
        step: int | str | None = MEAN,
        layer: int | str | None = MEAN,
    ) -> torch.Tensor:
        """The ``(frames, height, width)`` map of ``token``; ``"mean"`` (or None) averages that axis."""
        maps = self.maps[self.branch_name(branch)][:, :, self.token_index(token)]
        step_index, layer_index = self.step_index(step), self.layer_index(layer)
        maps = maps.nanmean(dim=0) if step_index is None else maps[step_index]
        return maps.nanmean(dim=0) if layer_index is None else maps[layer_index]

    def select(
        self,
        branch: str | None = None,
        steps: list[int] | None = None,
        layers: list[int] | None = None,
        tokens: list[str | int] | None = None,
    ) -> AttentionRecord:
        """A smaller record with only the given branch, steps, layers and tokens (each None = all)."""
        branch = self.branch_name(branch)
        step_indices = (
            list(range(len(self.step_labels))) if steps is None else [self.step_index(s) for s in steps]
        )
        layer_indices = (
            list(range(len(self.layer_labels))) if layers is None else [self.layer_index(x) for x in layers]
        )
        token_indices = (
            list(range(len(self.tokens))) if tokens is None else [self.token_index(t) for t in tokens]
        )
        if None in step_indices or None in layer_indices:
            raise RecordLookupError(
                "select() takes step and layer numbers; use map(..., step='mean') for means"
            )
        maps = self.maps[branch][step_indices][:, layer_indices][:, :, token_indices].clone()
        kept_steps = self.steps if self.step_reduction else [self.steps[i] for i in step_indices]
        kept_timesteps = self.timesteps if self.step_reduction else [self.timesteps[i] for i in step_indices]
        kept_layers = self.layers if self.layer_reduction else [self.layers[i] for i in layer_indices]
        kept_names = (
            self.layer_names if self.layer_reduction else [self.layer_names[i] for i in layer_indices]
        )
        metadata = self.metadata()
        metadata.update(
            branches=[branch],
            steps=kept_steps,
            timesteps=kept_timesteps,
            layers=kept_layers,
            layer_names=kept_names,
            tokens=[self.tokens[i] for i in token_indices],
            token_positions=[self.token_positions[i] for i in token_indices],
        )
        return AttentionRecord.from_metadata(metadata, {branch: maps})

    # --- metadata -------------------------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Everything but the arrays, as JSON-ready values (the branch order included)."""
        return {
            "branches": self.branches,
            "grid": list(self.grid),
            "tokens": list(self.tokens),
            "token_positions": [list(positions) for positions in self.token_positions],
            "steps": list(self.steps),
            "timesteps": list(self.timesteps),
            "layers": list(self.layers),
            "layer_names": list(self.layer_names),
            "direction": self.direction,
            "heads": self.heads if isinstance(self.heads, str) else list(self.heads),
            "step_reduction": self.step_reduction,
            "layer_reduction": self.layer_reduction,
            "model_class": self.model_class,
            "pipeline_class": self.pipeline_class,
            "adapter": self.adapter,
            "layout": {name: list(span) for name, span in self.layout.items()},
            "prompt": self.prompt,
            "prompt_tokens": self.prompt_tokens,
            "num_heads": self.num_heads,
            "complete": self.complete,
            "attnkit_version": self.attnkit_version,
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any], maps: dict[str, torch.Tensor]) -> AttentionRecord:
        fields = dict(metadata)
        branches = fields.pop("branches")
        fields["grid"] = tuple(fields["grid"])
        return cls(maps={branch: maps[branch] for branch in branches}, **fields)

    def save(self, path) -> None:
        """Write the record to ``path`` (a ``.safetensors`` file); see :func:`attnkit.record.save_record`."""
        from .file import save_record

        save_record(self, path)

    @classmethod
    def load(cls, path) -> AttentionRecord:
        from .file import load_record

        return load_record(path)


def _axis_index(what: str, value: int | str | None, kept: list[int], reduction: str) -> int | None:
    """Index of ``value`` among the ``kept`` layer or step numbers; None for their mean (or ``"mean"``)."""
    if value is None or value == MEAN:
        return None
    if reduction == MEAN:
        raise RecordLookupError(
            f"{what} {value} was not kept on its own: the record holds only the mean of "
            f"{_describe_indices(what + 's', kept)}; ask for {what}='mean'"
        )
    number = _as_int(value, what)
    if number not in kept:
        raise RecordLookupError(
            f"{what} {value} is out of range: the record has {_describe_indices(what + 's', kept)} (or 'mean')"
        )
    return kept.index(number)


def _as_int(value: int | str, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RecordLookupError(f"{what} {value!r} is not a number; pass a {what} number or 'mean'") from None


def _step_label(step: int, timestep: float | None) -> str:
    if timestep is None:
        return f"step {step}"
    return f"step {step} (t={timestep:g})"


def _describe_indices(what: str, numbers: list[int]) -> str:
    if not numbers:
        return f"no {what}"
    if numbers == list(range(numbers[0], numbers[-1] + 1)) and len(numbers) > 2:
        return f"{what} {numbers[0]}-{numbers[-1]}"
    return f"{what} {', '.join(map(str, numbers))}"
