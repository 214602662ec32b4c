"""Where a plugin fires: the roles, layers, denoising steps and branches of the attention calls it handles.

A plugin declares it as data instead of testing each call itself::

    class Probe:
        attnkit_where = attnkit.Where(steps=range(10), layers={0, 2}, branches=("reference",))

The session reads every plugin's gate once when it starts and calls the plugin's per-attention hooks
(``attnkit_before_attention``, ``attnkit_qkv``, ``attnkit_extra_kv``, ``attnkit_attention_output``) only
for the calls the gate admits; its other hooks (session, step, model inputs and outputs) always fire. A
plugin without a gate is called for every attention call. ``attnkit_roles`` (the older, roles-only
declaration) is the same gate with only ``roles`` set, and the two may be combined.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from numbers import Integral

from .call import AttentionCall
from .errors import PluginError
from .plugins import plugin_roles


@dataclass(frozen=True)
class Where:
    """The attention calls a plugin's per-attention hooks fire for; a field left None admits every value.

    ``roles``: layout roles (``"joint"``, ``"self"``, ``"cross"``). ``layers``: attention-call indices
    (``call.layer``). ``steps``: denoising steps (``call.step``, counted from 0), a ``range`` or a set;
    ``range(40)`` is "the first 40 steps", an empty set "no step". ``branches``: branches that must all hold
    rows in the call's batch (``call.has_branch``), e.g. ``("reference",)`` for a plugin that reads a
    reference row.
    """

    roles: frozenset[str] | None = None
    layers: frozenset[int] | None = None
    steps: range | frozenset[int] | None = None
    branches: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Normalised so that two gates saying the same compare equal and a gate is hashable.
        if self.roles is not None:
            object.__setattr__(self, "roles", _names(self.roles, "roles", frozenset))
        if self.layers is not None:
            object.__setattr__(self, "layers", _indices(self.layers, "layers"))
        if self.steps is not None and not isinstance(self.steps, range):
            object.__setattr__(self, "steps", _indices(self.steps, "steps"))
        object.__setattr__(self, "branches", _names(self.branches, "branches", tuple))

    def admits(self, call: AttentionCall) -> bool:
        """Whether ``call`` lies inside this gate."""
        return (
            (self.roles is None or call.layout.role in self.roles)
            and (self.layers is None or call.layer in self.layers)
            and (self.steps is None or call.step in self.steps)
            and all(call.branches.get(branch) for branch in self.branches)
        )


def plugin_where(name: str, plugin) -> Where | None:
    """The gate of a plugin: its ``attnkit_where``, with the roles of its ``attnkit_roles`` if it declares
    those; None when it declares neither (it fires for every attention call)."""
    try:
        where = getattr(plugin, "attnkit_where", None)
    except Exception as error:  # a plugin may compute its gate from its settings; say whose failed
        raise PluginError(
            f"plugin {name!r}'s attnkit_where raised {type(error).__name__}: {error}; check its settings",
            plugin=name,
            hook="attnkit_where",
        ) from error
    roles = plugin_roles(plugin)
    if where is None:
        return None if roles is None else Where(roles=roles)
    if not isinstance(where, Where):
        raise PluginError(
            f"plugin {name!r} has attnkit_where = {where!r}; it must be an attnkit.Where "
            "(e.g. attnkit.Where(steps=range(10), layers={0, 1}))",
            plugin=name,
            hook="attnkit_where",
        )
    if roles is None or where.roles == roles:
        return where
    if where.roles is None:
        return replace(where, roles=roles)
    raise PluginError(
        f"plugin {name!r} declares roles twice, attnkit_roles {sorted(roles)} and attnkit_where roles "
        f"{sorted(where.roles)}; declare them in one place",
        plugin=name,
        hook="attnkit_where",
    )


def _names(value, field: str, kind: type) -> frozenset[str] | tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    bad = [name for name in names if not isinstance(name, str)]
    if bad:
        raise TypeError(f"Where({field}=...) takes names (strings); got {bad}")
    return kind(names)


def _indices(value, field: str) -> frozenset[int]:
    if isinstance(value, Integral):
        hint = f"; pass range({value}) for the first {value}" if field == "steps" else f"; pass {{{value}}}"
        raise TypeError(f"Where({field}={value!r}) is one number, not a set of {field}{hint}")
    indices = tuple(value)
    bad = [index for index in indices if isinstance(index, bool) or not isinstance(index, Integral) or index < 0]
    if bad:
        raise TypeError(f"Where({field}=...) takes indices (integers from 0); got {bad}")
    return frozenset(int(index) for index in indices)
