"""FBDM (fore/background disentangle): the reference video's foreground mask from its subject-word attention.

docs/method.md, "FBDM". For each reference video token i and reference subject token s the map is
``A[i] = sum_s (W[s, i] + W[i, s])`` — the text->video block transposed plus the video->text block of the
joint attention — averaged over heads and layers and reshaped to the latent grid ``(frames, h, w)``.
Per latent frame it is min-max normalised and thresholded: ``mask = A >= fg_threshold``.

Timing (a [choice]): maps are accumulated over all layers during step t and turned into a mask at the
end of step t, which the next step uses (a one-step lag). Before the first mask exists (step 0) there is
no mask, i.e. all reference video tokens count as foreground. Maps are accumulated while
``step < fbdm_steps``; the mask made from the last of those steps is kept for the rest of the run.

The maps are read with ``call.attention_probs`` in ``attnkit_attention_output``, where it uses the
kernel's own log-sum-exp: no N x N map is formed and the attention itself is not changed.

Roles (``attnkit_roles = {"joint", "cross"}``, see docs/porting.md): in a joint call (CogVideoX,
HunyuanVideo) both blocks exist and ``A`` is as above. In a cross call (Wan ``attn2``: video queries,
text keys) the model never computes the text->video block ``W[s, i]`` (text tokens issue no queries), so
FBDM uses the video->text block alone there: ``A[i] = sum_s W[i, s]``, with ``W`` the model's own
cross-attention softmax over the text keys (image keys of image-to-video have a softmax of their own and
do not enter it). Self calls hold no text and are skipped. ``layers`` are attention-call indices
(``call.layer``): in Wan each block has two, ``attn1`` (self, even) and ``attn2`` (cross, odd).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import attnkit


@dataclass
class FBDMRecord:
    """One refresh of the mask: the step (and timestep) whose maps made it, the normalised map, the mask."""

    step: int
    timestep: float | None
    attention_map: torch.Tensor  # (frames, h, w), float, per-frame min-max normalised
    mask: torch.Tensor  # (frames, h, w), bool


class FBDM:
    """Plugin: accumulate the reference branch's subject attention and expose ``.mask`` / ``.history``.

    ``subject_tokens`` are positions of the subject word(s) in the reference prompt's token sequence
    (as ``attnkit.testing.word_token_indices`` returns them). ``layers`` restricts which attention
    layers are averaged (default all). ``branch`` is the batch branch holding the reference.
    """

    name = "lmp.fbdm"
    attnkit_roles = frozenset({"joint", "cross"})

    def __init__(
        self,
        subject_tokens: list[int],
        fbdm_steps: int = 40,
        fg_threshold: float = 0.4,
        layers: list[int] | None = None,
        branch: str = "reference",
    ):
        if not subject_tokens:
            raise ValueError("FBDM needs at least one subject token position in the reference prompt")
        self.subject_tokens = list(subject_tokens)
        self.fbdm_steps = fbdm_steps
        self.fg_threshold = fg_threshold
        self.layers = None if layers is None else set(layers)
        self.branch = branch
        self.mask: torch.Tensor | None = None
        self.history: list[FBDMRecord] = []
        self.layer_names: dict[int, str] = {}  # the attention calls averaged: index -> module path
        self._reset_accumulator()

    @property
    def attnkit_where(self) -> attnkit.Where:
        """Where maps are read: calls holding the reference branch, in the first ``fbdm_steps`` steps, in
        ``layers`` (all by default)."""
        return attnkit.Where(steps=range(self.fbdm_steps), layers=self.layers, branches=(self.branch,))

    def _reset_accumulator(self) -> None:
        self._map_sum: torch.Tensor | None = None
        self._num_layers = 0
        self._grid: tuple[int, int, int] | None = None

    @attnkit.hookimpl
    def attnkit_session_start(self, session):
        self.mask = None
        self.history = []
        self.layer_names = {}
        self._reset_accumulator()

    @attnkit.hookimpl
    def attnkit_attention_output(self, call):
        layer_map = subject_attention_map(call, self.subject_tokens, self.branch)
        self._map_sum = layer_map if self._map_sum is None else self._map_sum + layer_map
        self._num_layers += 1
        self._grid = call.layout.grid
        self.layer_names[call.layer] = call.name
        return None

    @attnkit.hookimpl
    def attnkit_step_end(self, step, timestep):
        if self._map_sum is None:
            return
        attention_map = normalise_per_frame((self._map_sum / self._num_layers).reshape(self._grid))
        self.mask = attention_map >= self.fg_threshold
        self.history.append(
            FBDMRecord(step=step, timestep=timestep, attention_map=attention_map.cpu(), mask=self.mask.cpu())
        )
        self._reset_accumulator()

    def foreground_indices(self) -> torch.Tensor | None:
        """Flat indices of the foreground video tokens in the current mask, or None (= all tokens)."""
        if self.mask is None:
            return None
        return torch.nonzero(self.mask.flatten()).flatten()


class FBDMLayerMaps:
    """Plugin: FBDM's map of each attention call, before the layer average, kept per ``(step, layer)``.

    Register it beside LMP (``motion_transfer(..., plugins=[maps])``) to see which layers localise the
    subject; ``subject_tokens`` are the reference prompt's subject positions, as FBDM takes them
    (``result.record["reference_subject_tokens"]``).

    ``maps[(step, layer)]`` is the ``(frames, h, w)`` map of that call, before FBDM's layer average and
    normalisation. Calls of the first ``steps`` denoising steps are recorded (all steps when None). It
    keeps one float per video token, layer and step: about 120 MB for 40 steps of CogVideoX-5B.
    """

    name = "lmp.fbdm_layer_maps"
    attnkit_roles = frozenset({"joint", "cross"})

    def __init__(self, subject_tokens: list[int], steps: int | None = None, branch: str = "reference"):
        self.subject_tokens = list(subject_tokens)
        self.steps = steps
        self.branch = branch
        self.maps: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def attnkit_where(self) -> attnkit.Where:
        return attnkit.Where(steps=None if self.steps is None else range(self.steps), branches=(self.branch,))

    @attnkit.hookimpl
    def attnkit_session_start(self, session):
        self.maps = {}

    @attnkit.hookimpl
    def attnkit_attention_output(self, call):
        layer_map = subject_attention_map(call, self.subject_tokens, self.branch)
        self.maps[(call.step, call.layer)] = layer_map.reshape(call.layout.grid).cpu()
        return None

    def layer_map(self, layers, step: int) -> torch.Tensor:
        """The map FBDM would form at ``step`` from ``layers`` (None = every recorded layer): their mean."""
        recorded = sorted(layer for recorded_step, layer in self.maps if recorded_step == step)
        if not recorded:
            raise ValueError(f"no maps were recorded at step {step}; recorded steps: {self.recorded_steps()}")
        chosen = recorded if layers is None else [layer for layer in recorded if layer in set(layers)]
        if not chosen:
            raise ValueError(f"none of the layers {sorted(layers)} was recorded; recorded layers: {recorded}")
        return torch.stack([self.maps[(step, layer)] for layer in chosen]).mean(dim=0)

    def recorded_steps(self) -> list[int]:
        return sorted({step for step, _ in self.maps})

    def recorded_layers(self) -> list[int]:
        return sorted({layer for _, layer in self.maps})


def subject_attention_map(call, subject_tokens: list[int], branch: str) -> torch.Tensor:
    """One attention call's FBDM map ``A`` over the video tokens, ``(video,)`` float: the subject tokens'
    text->video plus video->text attention of ``branch``'s rows, head-mean (see the module docstring).

    ``subject_tokens`` are positions in the prompt's token sequence (not in the call's key sequence).
    """
    subject = [call.layout.key_span("text").start + position for position in subject_tokens]
    # (rows, video, subject), head-mean; and in a joint call (rows, subject, video).
    video_to_text = call.attention_probs("video", subject, branch=branch, heads="mean")
    if call.layout.role == "joint":
        text_to_video = call.attention_probs(subject, "video", branch=branch, heads="mean")
        return (text_to_video.sum(dim=1) + video_to_text.sum(dim=2)).mean(dim=0).float()
    # cross: the text->video block does not exist (see the module docstring)
    return video_to_text.sum(dim=2).mean(dim=0).float()


def normalise_per_frame(attention_map: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each latent frame of a ``(frames, h, w)`` map to [0, 1] (a flat frame gives 0)."""
    flat = attention_map.flatten(1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    normalised = torch.where(
        span > 0, (flat - low) / span.clamp_min(torch.finfo(flat.dtype).tiny), torch.zeros_like(flat)
    )
    return normalised.reshape(attention_map.shape)
