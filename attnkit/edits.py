"""What plugins changed in a session, and the opt-in finiteness check (``attach(..., check_finite=True)``).

Every plugin edit is noted: per plugin, the attention calls, steps and layers it changed (what it did, not
what it was configured to do), and the last edit of all, which is named when a non-finite value appears
downstream of it. With the check on, each edit's tensors and the model's own tensors must be finite.
"""

from __future__ import annotations

from typing import Any

from .call import AttentionCall, first_non_finite
from .errors import NonFiniteError


class EditLog:
    """The plugin edits of one session run, and the finiteness check of its tensors."""

    def __init__(self, check_finite: bool = False):
        self.check_finite = check_finite
        # plugin name -> {"calls", "steps", "layers"} of the attention calls it changed.
        self.activity: dict[str, dict[str, Any]] = {}
        # The last plugin call that changed a tensor, named when a non-finite value appears downstream of it.
        self.last_edit: str | None = None

    def plugin_edited(
        self, call: AttentionCall | None, step: int, plugin: str, hook: str, tensors: dict, nan_only=None
    ) -> None:
        """Note ``plugin``'s edit; with the check on, its tensors must be finite (``nan_only``: not NaN)."""
        where = f"{plugin!r} in {hook}" + (f" at layer {call.layer} ({call.name})" if call is not None else "")
        self.last_edit = f"{where}, step {step}"
        done = self.activity.setdefault(plugin, {"calls": 0, "steps": set(), "layers": set()})
        done["calls"] += 1
        done["steps"].add(step)
        if call is not None:
            done["layers"].add(call.layer)
        if not self.check_finite:
            return
        bad = first_non_finite(tensors)
        if bad is None and nan_only:
            bad = next((name for name, t in nan_only.items() if t is not None and t.isnan().any()), None)
        if bad is not None:
            raise NonFiniteError(
                f"plugin {where}, step {step} produced inf or NaN in {bad}; its inputs were finite. "
                "Check the plugin's settings (a huge scale or step size overflows)",
                plugin=plugin,
                hook=hook,
                layer=call.name if call is not None else None,
                step=step,
            )

    def require_finite(self, call: AttentionCall | None, step: int, tensors: dict, where: str | None = None) -> None:
        """With the check on: raise if a tensor no plugin produced holds inf or NaN, naming where it was seen."""
        if not self.check_finite:
            return
        bad = first_non_finite(tensors)
        if bad is None:
            return
        if where is None:
            where = f"at layer {call.layer} ({call.name}), step {step}"
        cause = (
            f"the last plugin to change a tensor before it was {self.last_edit}"
            if self.last_edit is not None
            else "no plugin changed a tensor before it, so the model or the pipeline made it (e.g. an "
            "infinite guidance scale, or inputs that were already non-finite)"
        )
        raise NonFiniteError(
            f"{bad} {where} holds inf or NaN; {cause}",
            plugin=None,
            hook=None,
            layer=call.name if call is not None else None,
            step=step,
        )
