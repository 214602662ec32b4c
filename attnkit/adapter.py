"""The adapter contract, owned by the core: what the session asks of one model family.

An adapter is the one place that knows a model family's attention modules, its transformer's forward
signature and its pipelines' denoising loop. The session asks it both sides' questions:

- model side: does it handle this transformer, how to swap and restore its attention processors, what a
  forward's batch, timestep, latent grid and per-row inputs are, how to append rows;
- pipeline side: which pipeline attributes hold transformers, which batch rows of a forward are which
  guidance branch, and how many denoising steps the current call runs.

Adapter modules live in ``attnkit/adapters/`` (and in third-party packages); they import this module,
and this module imports nothing of the session, so neither side depends on the other's internals.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch

from .call import AttentionCall, Branches
from .errors import UnsupportedModelError


class Adapter(ABC):
    """Instruments one model family for a session and undoes it exactly.

    Subclasses name the model classes they handle (for error messages), decide ``supports(model)``,
    swap the attention processors in ``install`` and put the originals back in ``uninstall``, and
    describe the transformer's forward: its batch size, timestep, latent grid, and how to append rows.

    ``roles`` are the layout roles of the attention calls it builds (``"joint"``, ``"self"``, ``"cross"``);
    the session checks plugins' ``attnkit_roles`` against them at attach time.

    The pipeline-side answers (:attr:`pipeline_transformers`, :meth:`forward_branches`,
    :meth:`guidance_on`, :meth:`num_steps`) have diffusers' defaults; a family whose pipelines differ
    overrides them, and nothing else in the core reads a pipeline's attributes.
    """

    name: ClassVar[str]
    model_classes: ClassVar[tuple[str, ...]]
    roles: ClassVar[frozenset[str]]
    # Transformer classes of the family that this adapter recognises but cannot drive (class name -> what
    # it is): ``supports`` claims them so that attaching one is refused by name, not generically.
    unsupported_variants: ClassVar[dict[str, str]] = {}
    # What the supported classes are, for that refusal ("Wan 2.1/2.2 text-to-video, ...").
    supported_description: ClassVar[str] = ""

    def __init__(self, model: torch.nn.Module):
        variant = self.unsupported_variants.get(type(model).__name__)
        if variant is not None:
            raise UnsupportedModelError(
                f"{type(model).__name__} is {variant}; the attnkit {self.name!r} adapter supports "
                f"{', '.join(self.model_classes)} ({self.supported_description}) only. Write an adapter for this "
                "variant (see docs/porting.md) or use a supported model"
            )
        self.model = model
        self._forward_signature = inspect.signature(model.forward)
        self._original_processors: dict[torch.nn.Module, Any] = {}
        self.grid: tuple[int, int, int] | None = None  # the latent grid of the current forward

    @classmethod
    @abstractmethod
    def supports(cls, model: torch.nn.Module) -> bool:
        """True if this adapter handles ``model`` (a diffusers transformer)."""

    @classmethod
    def is_unsupported_variant(cls, model: torch.nn.Module) -> bool:
        return type(model).__name__ in cls.unsupported_variants

    def require_stock_processor(self, attention: torch.nn.Module, stock_class: type, name: str) -> None:
        """Refuse (after undoing what is installed) an attention module whose processor attnkit does not
        reproduce: another processor class, or a non-native attention backend."""
        from .adapters.dispatch import require_native_attention

        problem = None
        if type(attention.processor) is not stock_class:
            problem = (
                f"{name} uses {type(attention.processor).__name__}; attnkit reproduces {stock_class.__name__} only"
                f" (set_attn_processor({stock_class.__name__}()) on the attention modules first)"
            )
        else:
            try:
                require_native_attention(attention.processor, name)
            except TypeError as error:
                problem = str(error)
        if problem is not None:
            self.uninstall()
            raise UnsupportedModelError(problem)

    @abstractmethod
    def install(self, session) -> int:
        """Route every attention module through ``session`` (an :class:`attnkit.session.Session`); return how
        many were instrumented."""

    def replace_processor(self, attention: torch.nn.Module, processor) -> None:
        """Give ``attention`` a new processor, remembering the original for :meth:`uninstall`."""
        self._original_processors[attention] = attention.processor
        # Assigned directly: Attention.set_processor would also log and touch _modules.
        attention.processor = processor

    @property
    def num_instrumented(self) -> int:
        return len(self._original_processors)

    def uninstall(self) -> None:
        """Put back exactly what ``install`` replaced."""
        for attention, processor in self._original_processors.items():
            attention.processor = processor
        self._original_processors.clear()

    @abstractmethod
    def begin_forward(self, inputs: dict[str, Any]) -> None:
        """Read what the attention calls of this forward need (e.g. the latent grid) from its inputs."""

    # Forward inputs other than latents and text that carry one entry per batch row (their forward argument
    # names): the pooled text, text mask, image tokens, timestep, ... of each row.
    per_row_inputs: ClassVar[tuple[str, ...]] = ("timestep",)

    def add_rows(
        self,
        inputs: dict[str, Any],
        latents: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        **row_inputs: torch.Tensor,
    ) -> None:
        """Append batch rows (model-input latents and text embeddings) to the forward's ``inputs`` in place.

        ``row_inputs`` give the added rows' own values of inputs named in ``per_row_inputs`` (e.g.
        HunyuanVideo's ``pooled_projections`` and ``encoder_attention_mask``, Wan's
        ``encoder_hidden_states_image``), one entry per added row. A per-row input not given takes
        :meth:`default_row_input` (the last row's value, unless the adapter says otherwise).
        """
        unknown = sorted(set(row_inputs) - set(self.per_row_inputs))
        if unknown:
            raise ValueError(
                f"{unknown} are not per-row inputs of {type(self.model).__name__}; the {self.name!r} adapter "
                f"takes {list(self.per_row_inputs)} (forward argument names) for added rows"
            )
        base = inputs["hidden_states"]
        if latents.shape[1:] != base.shape[1:]:
            raise ValueError(
                f"added latents have shape {tuple(latents.shape)} but the model input rows are "
                f"{tuple(base.shape[1:])}; pass (rows, {', '.join(map(str, base.shape[1:]))})"
            )
        text = inputs["encoder_hidden_states"]
        if encoder_hidden_states.shape[1:] != text.shape[1:]:
            raise ValueError(
                f"added text embeddings have shape {tuple(encoder_hidden_states.shape)} but the model's are "
                f"{tuple(text.shape[1:])} per row; encode the prompt with the same max_sequence_length"
            )
        batch, added = base.shape[0], latents.shape[0]
        extended = {}  # every check passes before ``inputs`` changes
        for key in self.per_row_inputs:
            value, given = inputs.get(key), row_inputs.get(key)
            per_row = isinstance(value, torch.Tensor) and value.dim() > 0 and value.shape[0] == batch
            if given is None:
                if per_row:
                    extended[key] = torch.cat([value, self.default_row_input(key, value, added)], dim=0)
                continue
            if not per_row:
                held = "not passed" if value is None else f"shared by all rows ({_describe(value)})"
                raise ValueError(
                    f"added rows give their own {key!r}, but this forward's {key!r} is {held}; "
                    f"add rows without {key}= (they share the model's), or use a model that takes it per row"
                )
            if given.shape != (added, *value.shape[1:]):
                raise ValueError(
                    f"added {key!r} has shape {tuple(given.shape)}; the {added} added row(s) need "
                    f"{(added, *value.shape[1:])}, like the model's {tuple(value.shape)}"
                )
            extended[key] = torch.cat([value, given.to(value)], dim=0)
        inputs.update(extended)
        inputs["hidden_states"] = torch.cat([base, latents.to(base)], dim=0)
        inputs["encoder_hidden_states"] = torch.cat([text, encoder_hidden_states.to(text)], dim=0)

    def default_row_input(self, key: str, value: torch.Tensor, added: int) -> torch.Tensor:
        """The ``added`` rows of per-row input ``key`` when the caller gives none: the last row's, repeated."""
        return value[-1:].expand(added, *value.shape[1:])

    # --- shared helpers -----------------------------------------------------------------------------

    def bind_inputs(self, args: tuple, kwargs: dict) -> dict[str, Any]:
        """The forward's arguments by name, whichever way the caller passed them."""
        bound = self._forward_signature.bind(*args, **kwargs)
        return dict(bound.arguments)

    # --- the pipeline side ----------------------------------------------------------------------------

    # Pipeline attributes that may hold a transformer of this family, in the order the pipeline runs them
    # (Wan 2.2's experts: ``transformer`` for high-noise steps, ``transformer_2`` for low-noise ones).
    pipeline_transformers: ClassVar[tuple[str, ...]] = ("transformer",)

    def forward_branches(self, pipeline, batch_size: int, forward_in_step: int) -> Branches:
        """Branch rows of the ``forward_in_step``-th transformer forward of a denoising step of ``pipeline``
        (None when the session drives a bare transformer).

        The default is diffusers' batched guidance: ``uncond`` rows then ``cond`` rows when the pipeline
        runs classifier-free guidance in one forward, else all ``cond``. Pipelines that call the model once
        per guidance branch override this.
        """
        if pipeline is not None and batch_size % 2 == 0 and self.guidance_on(pipeline):
            half = batch_size // 2
            return {"uncond": list(range(half)), "cond": list(range(half, batch_size))}
        return {"cond": list(range(batch_size))}

    def guidance_on(self, pipeline) -> bool:
        """Whether ``pipeline``'s current call batches an unconditional half (its public flag)."""
        return bool(getattr(pipeline, "do_classifier_free_guidance", False))

    def num_steps(self, pipeline) -> int | None:
        """How many denoising steps ``pipeline``'s current call runs, or None if it does not say.

        Pipelines set their timesteps before the denoising loop, so at the first forward they are final.
        """
        steps = getattr(pipeline, "num_timesteps", None)
        if steps is None and getattr(pipeline, "scheduler", None) is not None:
            timesteps = getattr(pipeline.scheduler, "timesteps", None)
            steps = len(timesteps) if timesteps is not None else None
        return int(steps) if steps else None

    # --- forward inputs -------------------------------------------------------------------------------

    @staticmethod
    def batch_size(inputs: dict[str, Any]) -> int:
        return inputs["hidden_states"].shape[0]

    @staticmethod
    def timestep(inputs: dict[str, Any]) -> float | None:
        timestep = inputs.get("timestep")
        if timestep is None:
            return None
        if isinstance(timestep, torch.Tensor):
            return float(timestep.flatten()[0].item())
        return float(timestep)

    @staticmethod
    def latents(inputs: dict[str, Any]) -> torch.Tensor:
        return inputs["hidden_states"]

    @staticmethod
    def split_output(output: Any, keep: int) -> tuple[Any, torch.Tensor]:
        """(the output with only the first ``keep`` rows, the full sample tensor)."""
        if isinstance(output, tuple):
            sample = output[0]
            return (sample[:keep],) + tuple(output[1:]), sample
        sample = output.sample
        output.sample = sample[:keep]
        return output, sample


class InstrumentedProcessor:
    """Base of the processors adapters install: which session, adapter, original processor and layer."""

    def __init__(self, session, adapter: Adapter, original, layer: int, name: str):
        self.session = session
        self.adapter = adapter
        self.original = original
        self.layer = layer
        self.name = name

    def attention_call(self, layout, hidden_states: torch.Tensor, project, attention_mask=None):
        """The :class:`~attnkit.call.AttentionCall` of this module at the session's current step and branches."""
        session = self.session
        return AttentionCall(
            layer=self.layer,
            name=self.name,
            step=session.step,
            timestep=session.timestep,
            branches=session.branches,
            layout=layout,
            hidden_states=hidden_states,
            project=project,
            attention_mask=attention_mask,
        )


def _describe(value) -> str:
    return f"shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
