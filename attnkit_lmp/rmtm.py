"""RMTM (reweighted motion transfer): target video queries also attend to the reference's foreground.

docs/method.md, "RMTM". For the target's video queries the keys and values are extended::

    K' = [K^p_tar ; K^v_tar ; lambda * K^v_ref[fg]]     V' = [V^p_tar ; V^v_tar ; V^v_ref[fg]]
    h^v_tar = softmax(Q^v_tar K'^T / sqrt(d)) V'

Target text queries see only target tokens. In joint attention the paper's concatenation lets the
reference keys take attention from the prompt keys too, which weakens the prompt: the paper names this
"overshadowing the effects of the prompt" as what reweighting is for. With ``keep_prompt_share`` (the
default) the reference keys compete only with the target's video keys: each video query gives the prompt
exactly the share it gives without RMTM, and its target and reference video keys split the rest in one
softmax (:class:`attnkit.ExtraKV` ``competes_with``). docs/method.md gives the measurements behind this
choice; ``keep_prompt_share=False`` is the plain softmax over ``K'``.

``fg`` comes from an :class:`~attnkit_lmp.fbdm.FBDM` instance when one is given (its current mask; all
tokens until it has one), else all reference video tokens (the "without FBDM" ablation). Choices: active
while ``step < rmtm_steps``; all layers unless ``layers`` is given; both CFG rows of the target
(``cfg_rows="both"``) or only the conditional one (``"cond"``); the values are multiplied by lambda too
when ``scale_values`` (the paper's figure).

Roles (``attnkit_roles = {"joint", "self"}``): the calls whose keys hold video tokens, i.e. joint calls
(CogVideoX, HunyuanVideo; the prompt keys ``K^p_tar`` are then part of the own keys) and video
self-attention (Wan ``attn1``: ``K' = [K^v_tar ; lambda * K^v_ref[fg]]``, the prompt being in the separate
cross-attention). Cross calls are skipped: their keys are text, there is no ``K^v_ref`` to extend with.

The extension is an :class:`attnkit.ExtraKV` block, so the kernel computes the exact attention over own
and extra keys without concatenating K/V for the whole batch.
"""

from __future__ import annotations

import attnkit

from .fbdm import FBDM

TARGET_BRANCHES = {"both": ("uncond", "cond"), "cond": ("cond",)}


class RMTM:
    """Plugin: give the target rows' video queries lambda-scaled reference foreground keys/values."""

    name = "lmp.rmtm"
    attnkit_roles = frozenset({"joint", "self"})

    def __init__(
        self,
        rmtm_lambda: float = 0.98,
        rmtm_steps: int = 45,
        fbdm: FBDM | None = None,
        layers: list[int] | None = None,
        cfg_rows: str = "both",
        scale_values: bool = False,
        reference_branch: str = "reference",
        keep_prompt_share: bool = True,
    ):
        if rmtm_lambda <= 0:
            raise ValueError(f"rmtm_lambda={rmtm_lambda!r} must be positive (the paper uses 0.98)")
        if cfg_rows not in TARGET_BRANCHES:
            raise ValueError(f"cfg_rows={cfg_rows!r} must be one of {sorted(TARGET_BRANCHES)}")
        self.rmtm_lambda = rmtm_lambda
        self.rmtm_steps = rmtm_steps
        self.fbdm = fbdm
        self.layers = None if layers is None else set(layers)
        self.target_branches = TARGET_BRANCHES[cfg_rows]
        self.scale_values = scale_values
        self.reference_branch = reference_branch
        self.keep_prompt_share = keep_prompt_share

    @property
    def attnkit_where(self) -> attnkit.Where:
        """Where keys are added: calls holding the reference branch, in the first ``rmtm_steps`` steps, in
        ``layers`` (all by default)."""
        return attnkit.Where(steps=range(self.rmtm_steps), layers=self.layers, branches=(self.reference_branch,))

    @attnkit.hookimpl
    def attnkit_extra_kv(self, call):
        target_rows = [
            row for branch in self.target_branches if call.has_branch(branch) for row in call.rows(branch)
        ]
        if not target_rows:
            return None
        reference_key = call.video(call.branch(call.k, self.reference_branch))
        reference_value = call.video(call.branch(call.v, self.reference_branch))
        if reference_key.shape[0] != 1:
            raise ValueError(
                f"RMTM expects one reference row, the batch has {reference_key.shape[0]} in branch "
                f"{self.reference_branch!r}; generate one video per prompt (num_videos_per_prompt=1)"
            )
        foreground = self.fbdm.foreground_indices() if self.fbdm is not None else None
        if foreground is not None:
            if foreground.numel() == 0:
                return None
            foreground = foreground.to(reference_key.device)
            reference_key = reference_key[:, :, foreground]
            reference_value = reference_value[:, :, foreground]
        return attnkit.ExtraKV(
            key=reference_key,
            value=reference_value,
            rows=target_rows,
            query_tokens=call.layout.video,
            key_scale=self.rmtm_lambda,
            value_scale=self.rmtm_lambda if self.scale_values else 1.0,
            # In self-attention the video span is every key: then this is the plain softmax over K'.
            competes_with=call.layout.video if self.keep_prompt_share else None,
        )
