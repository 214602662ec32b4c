"""The hooked attention of one call: the per-attention hooks, the kernel, and the checks of what plugins did.

One direction, the order of the design: ``attnkit_before_attention`` (may move the hidden states), the
layer's projections, ``attnkit_qkv`` (may rewrite q/k/v), ``attnkit_extra_kv`` and the kernel,
``attnkit_attention_output`` (may read maps or replace the output). Each plugin's edit or return is checked
right after that plugin ran, so a bad one names it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .call import AttentionCall, check_extra_kv, check_hidden_states, check_output_replacement, check_qkv
from .errors import PluginError
from .kernel import ExtraKV, attention_with_extras, sdpa, sdpa_with_logsumexp

if TYPE_CHECKING:
    from .session import Session


class HookedAttention:
    """Runs the attention calls of one session through its plugins; adapters reach it through the session."""

    def __init__(self, session: Session):
        self.session = session

    def run(self, call: AttentionCall) -> torch.Tensor:
        """The whole hooked attention of a call over its own keys; ``(B, heads, N, head_dim)``, before the
        output projection."""
        self.compute_qkv(call)
        call.output = self.run_kernel(call, call.k, call.v)
        return self.run_attention_output(call, call.output)

    def compute_qkv(self, call: AttentionCall) -> None:
        """``attnkit_before_attention``, the projections of the (maybe edited) hidden states, ``attnkit_qkv``."""
        self._require_finite(call, {"the hidden states entering the layer": call.hidden_states})
        self.run_before_attention(call)
        call.q, call.k, call.v = call.project(call.hidden_states)
        self._require_finite(call, {"q (projected)": call.q, "k (projected)": call.k, "v (projected)": call.v})
        self.run_qkv(call)

    def run_kernel(self, call: AttentionCall, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The kernel of ``call.q`` over ``key``/``value`` (the call's own, or one softmax group of them) with
        the plugins' extra K/V; the log-sum-exp is kept on the call when a plugin will read maps."""
        extras = self.run_extra_kv(call)
        mask = call.attention_mask
        wants_logsumexp = self.session.wants_logsumexp
        if extras:
            result = attention_with_extras(call.q, key, value, extras, wants_logsumexp, mask)
            output, logsumexp = result.output, result.logsumexp
            if result.competing_keys is not None:
                if key.shape[-2] != call.k.shape[-2]:
                    raise ValueError(
                        f"ExtraKV.competes_with at layer {call.name}: this call normalises its keys in separate "
                        "groups, and extra keys can compete only in a call with one softmax over all its keys"
                    )
                call._kept_share = (result.competing_keys, result.outside_logsumexp)
        elif wants_logsumexp:
            output, logsumexp = sdpa_with_logsumexp(call.q, key, value, mask)
        else:
            output, logsumexp = sdpa(call.q, key, value, mask), None
        call._logsumexp = logsumexp
        self._require_finite(call, {"the attention kernel's output": output})
        return output

    def run_before_attention(self, call: AttentionCall) -> None:
        def check(plugin, result, before):
            if call.hidden_states is not before:
                check_hidden_states(call, before, plugin)
                self._edited(call, plugin, "attnkit_before_attention", {"call.hidden_states": call.hidden_states})

        self.session.dispatch.call_attention_hook("attnkit_before_attention", call, check, lambda: call.hidden_states)

    def run_qkv(self, call: AttentionCall) -> None:
        def check(plugin, result, before):
            if any(now is not old for now, old in zip((call.q, call.k, call.v), before)):
                check_qkv(call, before, plugin)
                self._edited(call, plugin, "attnkit_qkv", {"call.q": call.q, "call.k": call.k, "call.v": call.v})

        self.session.dispatch.call_attention_hook("attnkit_qkv", call, check, lambda: (call.q, call.k, call.v))

    def run_extra_kv(self, call: AttentionCall) -> list[ExtraKV]:
        extras = []
        for plugin, result in self.session.dispatch.call_attention_hook("attnkit_extra_kv", call):
            for extra in result if isinstance(result, (list, tuple)) else [result]:
                check_extra_kv(extra, call, plugin)
                extra.source = plugin
                bias = extra.score_bias if isinstance(extra.score_bias, torch.Tensor) else None
                # A score bias of -inf masks keys on purpose; only NaN is a fault there.
                self._edited(
                    call,
                    plugin,
                    "attnkit_extra_kv",
                    {"ExtraKV.key": extra.key, "ExtraKV.value": extra.value},
                    {"ExtraKV.score_bias": bias},
                )
                extras.append(extra)
        return extras

    def run_attention_output(self, call: AttentionCall, output: torch.Tensor) -> torch.Tensor:
        replacements = self.session.dispatch.call_attention_hook(
            "attnkit_attention_output", call, output=output
        )
        if not replacements:
            return output
        if len(replacements) > 1:
            names = [plugin for plugin, _ in replacements]
            raise PluginError(
                f"plugins {names} all replaced the attention output at layer {call.name}; only one may",
                plugin=names[1],
                hook="attnkit_attention_output",
                layer=call.name,
                step=self.session.step,
            )
        plugin, replacement = replacements[0]
        check_output_replacement(call, output, replacement, plugin)
        self._edited(call, plugin, "attnkit_attention_output", {"the returned output": replacement})
        call.output = replacement
        return replacement

    def _edited(self, call: AttentionCall, plugin: str, hook: str, tensors: dict, nan_only=None) -> None:
        self.session.edits.plugin_edited(call, self.session.step, plugin, hook, tensors, nan_only)

    def _require_finite(self, call: AttentionCall, tensors: dict) -> None:
        self.session.edits.require_finite(call, self.session.step, tensors)
