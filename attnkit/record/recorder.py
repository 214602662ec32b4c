"""The recorder plugin: keeps chosen text tokens' attention maps over the video grid as a run streams.

Usage::

    recorder = AttentionRecorder(tokens=["dog"], prompt="a red dog runs", direction="both")
    with attnkit.attach(pipe, plugins=[recorder]):
        pipe("a red dog runs", ...)
    recorder.save_record("dog.safetensors")

Per attention call it reads two thin slices of the softmax map through ``call.attention_probs`` (the
kernel's own log-sum-exp, never the N x N map), reduces heads and the branch's batch rows, sums each
token's positions, and adds the result into one preallocated slot per (branch, step, layer). Memory is
planned once, from shapes, before the first map is computed; see :func:`estimate_recording_bytes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import AttnkitError
from ..plugins import hookimpl
from .maps import DIRECTIONS, MEAN, AttentionRecord

DEFAULT_MEMORY_BUDGET_BYTES = 1 << 30
BYTES_PER_KEPT_VALUE = 4  # maps are kept in float32 whatever the model's dtype
# The probe's matmul, its scaled scores and their exponential can be alive at once.
PROBE_TEMPORARIES = 3


class MemoryBudgetError(AttnkitError, ValueError):
    """Recording what was asked would exceed ``memory_budget_bytes``; raised before any map is kept."""


@dataclass(frozen=True)
class RecordingEstimate:
    """Bytes a recording will hold, from shapes alone.

    ``kept_bytes`` = branches x step slots x layer slots x tokens x video tokens x 4 (float32 maps).
    ``working_bytes`` is the largest probe slice alive during one attention call: batch rows of one
    branch x heads x token positions x video tokens x the model's element size x 3 temporaries.
    ``steps`` is None when the number of steps is not known before the run (then it is checked per step).
    """

    branches: int
    steps: int | None
    layers: int
    tokens: int
    video_tokens: int
    working_bytes: int

    @property
    def bytes_per_step(self) -> int:
        return self.branches * self.layers * self.tokens * self.video_tokens * BYTES_PER_KEPT_VALUE

    @property
    def kept_bytes(self) -> int:
        return self.bytes_per_step * (self.steps if self.steps is not None else 1)

    @property
    def total_bytes(self) -> int:
        return self.kept_bytes + self.working_bytes

    def describe(self) -> str:
        steps = (
            f"{self.steps} step slots"
            if self.steps is not None
            else "1 step slot (more steps are checked as they come)"
        )
        return (
            f"{format_bytes(self.total_bytes)} = kept maps {self.branches} branches x {steps} x "
            f"{self.layers} layer slots x "
            f"{self.tokens} tokens x {self.video_tokens} video tokens x {BYTES_PER_KEPT_VALUE} bytes "
            f"({format_bytes(self.kept_bytes)}) + probe working memory ({format_bytes(self.working_bytes)})"
        )


def estimate_recording_bytes(
    *,
    video_tokens: int,
    tokens: int,
    layers: int,
    steps: int | None,
    branches: int = 1,
    rows_per_branch: int = 1,
    heads: int = 1,
    token_positions: int | None = None,
    element_size: int = 4,
) -> RecordingEstimate:
    """How much memory a recording needs; the recorder checks this against its budget before the run."""
    positions = tokens if token_positions is None else token_positions
    working = PROBE_TEMPORARIES * rows_per_branch * heads * positions * video_tokens * element_size
    return RecordingEstimate(
        branches=branches,
        steps=steps,
        layers=layers,
        tokens=tokens,
        video_tokens=video_tokens,
        working_bytes=working,
    )


class AttentionRecorder:
    """Plugin: record the attention maps of chosen text tokens over the latent video grid.

    ``tokens``: words (``"dog"``, resolved through the pipeline's tokenizer, or ``tokenizer=``, in
    ``prompt``; a word that is several tokens, or occurs twice, covers all its positions) or text
    positions (ints, 0 = the first text token).
    ``direction``: ``"text->video"`` (the token's row of the map: where the token looks), ``"video->text"``
    (each video token's attention to the token), or ``"both"`` (their sum, as FBDM uses it). A token's map
    sums its positions.
    ``layers`` / ``steps``: which attention layers and denoising steps to keep (None = all).
    ``heads``: ``"mean"`` over all heads, or a list of head indices to average.
    ``branches``: batch branches to record (``"cond"``, ``"uncond"``, ``"reference"``...); each branch's
    batch rows are averaged.
    ``reduce_layers`` / ``reduce_steps``: keep only the mean over the kept layers / steps (one slot).
    ``memory_budget_bytes``: the most the kept maps plus the probe's working memory may take; checked
    from shapes at the first attention call of the run, before any map is computed.

    Roles: ``text->video`` and ``both`` read joint attention (CogVideoX, HunyuanVideo); ``video->text``
    also cross-attention (Wan), so one recorder runs unchanged on all three. Layers without calls of
    those roles (Wan's self-attention) are left out of the record.
    """

    name = "attnkit.record"

    def __init__(
        self,
        tokens: list[str | int],
        prompt: str | None = None,
        tokenizer=None,
        direction: str = "both",
        layers: list[int] | None = None,
        steps: list[int] | None = None,
        heads: str | list[int] = MEAN,
        branches: list[str] | tuple[str, ...] = ("cond",),
        reduce_layers: bool = False,
        reduce_steps: bool = False,
        memory_budget_bytes: int | None = DEFAULT_MEMORY_BUDGET_BYTES,
    ):
        self.token_specs = _checked_tokens(tokens)
        words = [token for token in self.token_specs if isinstance(token, str)]
        if words and prompt is None:
            raise ValueError(
                f"tokens {words} are words, so the recorder needs the prompt to find them: pass "
                "prompt='...' (the prompt the pipeline is called with), or pass text positions (ints)"
            )
        if direction not in DIRECTIONS:
            raise ValueError(f"direction={direction!r} is not supported; use one of {list(DIRECTIONS)}")
        if heads != MEAN and not (
            isinstance(heads, (list, tuple)) and heads and all(isinstance(h, int) for h in heads)
        ):
            raise ValueError(
                f"heads={heads!r} is not supported; use 'mean' or a non-empty list of head indices"
            )
        if not branches or isinstance(branches, str):
            raise ValueError(f"branches={branches!r} must be a non-empty list of branch names, e.g. ['cond']")
        for what, numbers in (("layers", layers), ("steps", steps)):
            if numbers is not None and (not numbers or any(not isinstance(n, int) or n < 0 for n in numbers)):
                raise ValueError(f"{what}={numbers!r} must be None (all) or a non-empty list of indices >= 0")
        if memory_budget_bytes is not None and memory_budget_bytes <= 0:
            raise ValueError(
                f"memory_budget_bytes={memory_budget_bytes} must be positive (or None for no limit)"
            )

        self.prompt = prompt
        self.tokenizer = tokenizer
        self.direction = direction
        self.layers = None if layers is None else sorted(set(layers))
        self.steps = None if steps is None else sorted(set(steps))
        self.heads = MEAN if heads == MEAN else list(heads)
        self.branches = list(branches)
        self.reduce_layers = reduce_layers
        self.reduce_steps = reduce_steps
        self.memory_budget_bytes = memory_budget_bytes
        # Text->video rows exist only where text tokens are queries (joint attention); video->text
        # columns also in cross-attention. The session then skips other calls (e.g. video self-attention).
        self.attnkit_roles = {"joint", "cross"} if direction == "video->text" else {"joint"}
        self.record: AttentionRecord | None = None
        self.estimate: RecordingEstimate | None = None
        self.peak_kept_bytes = 0
        self._reset()
        if tokenizer is not None:
            self._resolve_tokens(tokenizer)

    # --- per-run state ------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._session = None
        self._planned = False
        self._grid: tuple[int, int, int] | None = None
        self._layer_slots: dict[int, int] = {}
        self._sums: dict[tuple[str, int], torch.Tensor] = {}
        self._counts: dict[tuple[str, int], torch.Tensor] = {}
        self._timesteps: dict[int, float | None] = {}
        self._layer_names: dict[int, str] = {}
        self._kept_bytes = 0
        self._layout: dict[str, list[int]] = {}
        self._num_heads: int | None = None

    def _resolve_tokens(self, tokenizer) -> None:
        from ..tokens import word_token_indices

        self.token_labels: list[str] = []
        self.token_positions: list[list[int]] = []
        prompt_tokens = None
        if self.prompt is not None and tokenizer is not None:
            prompt_tokens = tokenizer.convert_ids_to_tokens(
                tokenizer(self.prompt, add_special_tokens=True)["input_ids"]
            )
        self.prompt_tokens = prompt_tokens
        for token in self.token_specs:
            if isinstance(token, str):
                self.token_positions.append(word_token_indices(tokenizer, self.prompt, token))
                self.token_labels.append(token)
            else:
                self.token_positions.append([token])
                known = prompt_tokens is not None and token < len(prompt_tokens)
                self.token_labels.append(f"{prompt_tokens[token]}@{token}" if known else f"#{token}")

    # --- hooks --------------------------------------------------------------------------------------

    @hookimpl
    def attnkit_session_start(self, session):
        self._reset()
        self.record = None
        self.estimate = None
        self.peak_kept_bytes = 0
        self._session = session
        tokenizer = (
            self.tokenizer if self.tokenizer is not None else getattr(session.pipeline, "tokenizer", None)
        )
        if tokenizer is None and any(isinstance(token, str) for token in self.token_specs):
            raise ValueError(
                "the recorder was given words but there is no tokenizer to find them: attach to a pipeline "
                "(it has .tokenizer) or pass AttentionRecorder(..., tokenizer=...)"
            )
        self._resolve_tokens(tokenizer)
        num_layers = session.num_attention_modules
        if self.layers is not None and self.layers[-1] >= num_layers:
            raise IndexError(
                f"layers={self.layers} out of range: {type(session.model).__name__} has {num_layers} "
                "attention "
                f"layers (0..{num_layers - 1})"
            )
        kept = self.layers if self.layers is not None else list(range(num_layers))
        self._layer_slots = {layer: 0 if self.reduce_layers else slot for slot, layer in enumerate(kept)}

    @hookimpl
    def attnkit_attention_output(self, call):
        if not self._planned:
            self._plan(call)
        slot = self._layer_slots.get(call.layer)
        if slot is None or (self.steps is not None and call.step not in self.steps):
            return None
        if call.layout.grid != self._grid:
            raise ValueError(
                f"the latent grid changed from {self._grid} to {call.layout.grid} within one session; "
                "record each resolution in its own attach() block"
            )
        step_key = 0 if self.reduce_steps else call.step
        text_start = call.layout.text.start
        positions = [text_start + position for position in self._flat_positions]
        for branch in self.branches:
            if not call.has_branch(branch):
                continue
            token_maps = self._token_maps(call, branch, positions)
            sums, counts = self._slot(branch, step_key, token_maps)
            sums[slot] += token_maps
            counts[slot] += 1
        # Noted only once something was kept, so a step refused by the budget leaves no empty slot behind.
        self._timesteps.setdefault(call.step, call.timestep)
        self._layer_names.setdefault(call.layer, call.name)
        return None

    @hookimpl
    def attnkit_session_end(self, session, error):
        self.record = self._finish(session, complete=error is None)
        self._sums.clear()
        self._counts.clear()
        self._session = None  # do not keep the pipeline alive through the recorder

    # --- planning and the memory budget ---------------------------------------------------------------

    def _plan(self, call) -> None:
        """Check everything that can be checked from the first call's shapes, before any map is kept."""
        self._planned = True
        self._grid = tuple(call.layout.grid)
        missing = [branch for branch in self.branches if not call.has_branch(branch)]
        if missing:
            raise KeyError(
                f"branches {missing} are not in this run's batch, which has {sorted(call.branches)}; pass "
                f"AttentionRecorder(branches=[...]) with some of those (CFG runs have 'uncond' and 'cond')"
            )
        num_text = call.layout.num_text_tokens
        for label, positions in zip(self.token_labels, self.token_positions):
            if max(positions) >= num_text:
                raise IndexError(
                    f"token {label!r} is at text positions {positions}, but the model sees only {num_text} "
                    "text tokens (the pipeline's max_sequence_length); shorten the prompt or raise "
                    "max_sequence_length"
                )
        num_heads = call.q.shape[1]
        self._num_heads = num_heads
        if self.heads != MEAN and (min(self.heads) < 0 or max(self.heads) >= num_heads):
            raise IndexError(
                f"heads={self.heads} out of range: the attention has {num_heads} heads (0..{num_heads - 1})"
            )
        self._layout = {
            "text": [call.layout.text.start, call.layout.text.stop],
            "video": [call.layout.video.start, call.layout.video.stop],
        }
        self._flat_positions = [position for positions in self.token_positions for position in positions]
        self._position_token = torch.tensor(
            [index for index, positions in enumerate(self.token_positions) for _ in positions],
            device=call.q.device,
        )
        rows = max(len(call.rows(branch)) for branch in self.branches)
        self.estimate = estimate_recording_bytes(
            video_tokens=call.layout.num_video_tokens,
            tokens=len(self.token_specs),
            layers=1 if self.reduce_layers else len(self._layer_slots),
            steps=self._expected_step_slots(),
            branches=len(self.branches),
            rows_per_branch=rows,
            heads=num_heads if self.heads == MEAN else len(self.heads),
            token_positions=len(self._flat_positions),
            element_size=call.q.element_size(),
        )
        self._check_budget(self.estimate.total_bytes, "the whole recording")

    def _expected_step_slots(self) -> int | None:
        if self.reduce_steps:
            return 1
        if self.steps is not None:
            return len(self.steps)
        return self._session.num_steps if self._session is not None else None

    def _check_budget(self, needed: int, what: str) -> None:
        if self.memory_budget_bytes is None or needed <= self.memory_budget_bytes:
            return
        raise MemoryBudgetError(
            f"recording would need {self.estimate.describe()} for {what}, over memory_budget_bytes="
            f"{self.memory_budget_bytes} ({format_bytes(self.memory_budget_bytes)}); keep fewer "
            "layers/steps/tokens/"
            "branches, pass reduce_layers=True or reduce_steps=True, or raise memory_budget_bytes"
        )

    def _slot(self, branch: str, step_key: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (branch, step_key)
        if key not in self._sums:
            num_slots = 1 if self.reduce_layers else len(self._layer_slots)
            new_bytes = num_slots * like.numel() * BYTES_PER_KEPT_VALUE
            # Steps beyond the planned count (unknown step count, or a second run) are checked as they come.
            self._check_budget(self._kept_bytes + new_bytes + self.estimate.working_bytes, f"step {step_key}")
            self._sums[key] = like.new_zeros((num_slots, *like.shape), dtype=torch.float32)
            self._counts[key] = torch.zeros(num_slots, dtype=torch.float32)
            self._kept_bytes += new_bytes
            self.peak_kept_bytes = max(self.peak_kept_bytes, self._kept_bytes)
        return self._sums[key], self._counts[key]

    # --- the maps of one call -------------------------------------------------------------------------

    def _token_maps(self, call, branch: str, positions: list[int]) -> torch.Tensor:
        """``(tokens, video tokens)`` float32: head- and row-reduced, each token's positions summed."""
        num_video = call.layout.num_video_tokens
        token_maps = torch.zeros(len(self.token_specs), num_video, dtype=torch.float32, device=call.q.device)
        if self.direction in ("text->video", "both"):
            probs = self._reduced(call.attention_probs(positions, "video", branch=branch, heads=self.heads))
            token_maps.index_add_(0, self._position_token, probs.float())
        if self.direction in ("video->text", "both"):
            probs = self._reduced(call.attention_probs("video", positions, branch=branch, heads=self.heads))
            token_maps.index_add_(0, self._position_token, probs.float().T)
        return token_maps

    def _reduced(self, probs: torch.Tensor) -> torch.Tensor:
        """Mean over batch rows (and over the selected heads when a head list was given)."""
        return probs.mean(dim=(0, 1)) if self.heads != MEAN else probs.mean(dim=0)

    # --- the record ---------------------------------------------------------------------------------

    def _finish(self, session, complete: bool) -> AttentionRecord:
        seen_steps = sorted(self._timesteps)
        step_keys = [0] if self.reduce_steps and seen_steps else seen_steps
        # Only layers that had calls of the recorder's roles (e.g. Wan's cross-attention, not its
        # self-attention); with nothing recorded, the planned layers.
        layers = sorted(self._layer_names) or sorted(self._layer_slots)
        slots = [0] if self.reduce_layers else [self._layer_slots[layer] for layer in layers]
        num_layer_slots = len(slots)
        frames, height, width = self._grid if self._grid is not None else (0, 0, 0)
        maps = {}
        for branch in self.branches:
            slabs = []
            for step_key in step_keys:
                sums = self._sums.get((branch, step_key))
                if sums is None:
                    slabs.append(
                        torch.full(
                            (num_layer_slots, len(self.token_specs), frames * height * width), float("nan")
                        )
                    )
                    continue
                counts = self._counts[(branch, step_key)].to(sums.device)
                # A slot no call reached (e.g. a branch absent in that forward) is NaN, not a fake zero map.
                slabs.append((sums[slots] / counts[slots].view(-1, 1, 1)).cpu())
            stacked = (
                torch.stack(slabs)
                if slabs
                else torch.zeros(0, num_layer_slots, len(self.token_specs), frames * height * width)
            )
            maps[branch] = stacked.reshape(
                len(step_keys), num_layer_slots, len(self.token_specs), frames, height, width
            )
        from .. import __version__

        return AttentionRecord(
            maps=maps,
            grid=(frames, height, width),
            tokens=list(self.token_labels),
            token_positions=[list(positions) for positions in self.token_positions],
            steps=seen_steps,
            timesteps=[self._timesteps[step] for step in seen_steps],
            layers=layers,
            layer_names=[self._layer_names.get(layer, f"layer {layer}") for layer in layers],
            direction=self.direction,
            heads=self.heads,
            step_reduction=MEAN if self.reduce_steps else None,
            layer_reduction=MEAN if self.reduce_layers else None,
            model_class=type(session.model).__name__,
            pipeline_class=type(session.pipeline).__name__ if session.pipeline is not None else None,
            adapter=getattr(session.adapter, "name", ""),
            layout=dict(self._layout),
            prompt=self.prompt,
            prompt_tokens=self.prompt_tokens,
            num_heads=self._num_heads,
            complete=complete,
            attnkit_version=__version__,
        )

    def save_record(self, path):
        """Save the record of the last session (see :func:`attnkit.record.save_record`)."""
        if self.record is None:
            raise RuntimeError(
                "nothing recorded yet: run the pipeline inside "
                "`with attnkit.attach(pipe, plugins=[recorder]):` first"
            )
        from .file import save_record

        return save_record(self.record, path)


def _checked_tokens(tokens) -> list[str | int]:
    if isinstance(tokens, (str, int)):
        tokens = [tokens]
    tokens = list(tokens) if tokens is not None else []
    if not tokens:
        raise ValueError("tokens is empty; name at least one word (e.g. tokens=['dog']) or text position")
    for token in tokens:
        if (
            isinstance(token, bool)
            or not isinstance(token, (str, int))
            or (isinstance(token, int) and token < 0)
        ):
            raise ValueError(f"token {token!r} is neither a word nor a text position >= 0")
        if isinstance(token, str) and not token.strip():
            raise ValueError("tokens contains an empty word; name a word of the prompt")
    duplicates = sorted({str(token) for token in tokens if tokens.count(token) > 1})
    if duplicates:
        raise ValueError(f"tokens {duplicates} are listed more than once; list each once")
    return tokens


def format_bytes(num_bytes: int) -> str:
    """``1536`` -> ``"1.5 KiB"``: sizes in error messages and benchmark output."""
    size = float(num_bytes)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
