"""One transformer forward's inputs as ``attnkit_model_inputs`` sees them: read them, append batch rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .session import Session


class ModelInputs:
    """One transformer forward's inputs, as ``attnkit_model_inputs`` sees them."""

    def __init__(self, session: Session, inputs: dict[str, Any]):
        self.session = session
        self.inputs = inputs
        self.added: list[tuple[str, int]] = []

    @property
    def batch_size(self) -> int:
        return self.session.adapter.batch_size(self.inputs)

    @property
    def latents(self) -> torch.Tensor:
        """The model-input latents of the pipeline's rows (and of rows added so far)."""
        return self.session.adapter.latents(self.inputs)

    @property
    def encoder_hidden_states(self) -> torch.Tensor:
        return self.inputs["encoder_hidden_states"]

    @property
    def per_row_inputs(self) -> tuple[str, ...]:
        """Forward inputs, besides latents and text, that added rows may give per row (the adapter's list)."""
        return self.session.adapter.per_row_inputs

    def add_rows(
        self, branch: str, latents: torch.Tensor, encoder_hidden_states: torch.Tensor, **row_inputs: torch.Tensor
    ) -> None:
        """Append rows of a new branch; the pipeline will not see them in the output.

        ``row_inputs`` are the rows' own values of other per-row forward inputs, by forward argument name
        (see :attr:`per_row_inputs`, e.g. ``pooled_projections=`` and ``encoder_attention_mask=`` on
        HunyuanVideo); inputs not given repeat the last row's (HunyuanVideo: a text mask of ones).
        """
        if branch in self.session.branches:
            raise ValueError(f"branch {branch!r} already exists in this batch ({sorted(self.session.branches)})")
        start = self.batch_size
        self.session.adapter.add_rows(self.inputs, latents, encoder_hidden_states, **row_inputs)
        self.session.branches[branch] = list(range(start, start + latents.shape[0]))
        self.added.append((branch, latents.shape[0]))
