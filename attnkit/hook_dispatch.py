"""Calling a session's hooks: through pluggy, gated by each plugin's :class:`~attnkit.where.Where`, named.

pluggy runs every hook call (its order, ``tryfirst``/``trylast``, ``firstresult`` where a spec sets it,
wrappers around the plain implementations, and its tracing). What this module adds:

- a per-attention hook is called only for the plugins whose gate admits the call; the gates are read
  once per session and applied once per attention call, in one place;
- each plain implementation runs inside a thin shim that names its plugin: an exception becomes a
  :class:`~attnkit.PluginError` naming plugin, hook, layer and step, a caller's check of that plugin's
  edit runs right after it, and its return value stays attributed to it;
- a hook nobody implements (or nobody admitted for this call) costs a dictionary look-up, not a pluggy call.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any, Callable

import pluggy

from .call import AttentionCall
from .errors import PluginError
from .where import Where

# Hooks called once per attention call, with the call; the only ones a gate applies to.
ATTENTION_HOOKS = ("attnkit_before_attention", "attnkit_qkv", "attnkit_extra_kv", "attnkit_attention_output")

Check = Callable[[str, Any, Any], None]


class _Invocation:
    """One hook call in progress, as the shims of its implementations see it."""

    __slots__ = ("hook", "call", "check", "snapshot", "wrappers", "returned", "latest")

    def __init__(self, hook: str, call: AttentionCall | None, check: Check | None, snapshot, wrappers: str):
        self.hook, self.call, self.check, self.snapshot, self.wrappers = hook, call, check, snapshot, wrappers
        self.returned: list[tuple[str, Any]] = []  # (plugin, result) of each plain implementation, in order
        # With wrappers around the plain implementations: the state as last checked, so that a change no
        # plain implementation made (a wrapper's, before or after it yields) is checked as the wrappers'.
        self.latest = snapshot() if wrappers and check is not None else None

    def check_wrappers(self) -> None:
        """Check, as the wrappers' edit, whatever changed since the state was last checked."""
        if self.check is not None:
            self.check(self.wrappers, None, self.latest)
            self.latest = self.snapshot()


class _Impls:
    """Implementations of one hook that fire together, in pluggy's order, and which of them are wrappers."""

    __slots__ = ("impls", "wrappers", "wrapper_names")

    def __init__(self, impls: list[pluggy.HookImpl]):
        self.impls = impls
        self.wrappers = [impl for impl in impls if impl.wrapper or impl.hookwrapper]
        self.wrapper_names = ", ".join(impl.plugin_name for impl in self.wrappers)


class HookDispatch:
    """The hooks of one session's plugin manager, called through pluggy with gates and named errors."""

    def __init__(self, plugin_manager: pluggy.PluginManager, gates: dict[str, Where], current_step: Callable[[], int]):
        # pluggy's own executor (what plugin_manager.hook.<name>(...) runs, tracing included), given the
        # implementations that fire for this call.
        self._execute = plugin_manager._hookexec
        self._gates = gates
        self._current_step = current_step
        self._invocation: _Invocation | None = None
        self._impls: dict[str, _Impls] = {}
        self._firstresult: dict[str, bool] = {}
        for name, caller in vars(plugin_manager.hook).items():
            if not name.startswith("attnkit_") or not caller.get_hookimpls():
                continue
            self._impls[name] = _Impls([self._named(impl) for impl in caller.get_hookimpls()])
            self._firstresult[name] = bool(caller.spec and caller.spec.opts.get("firstresult"))
        # (hook, plugins a call's gates closed) -> the implementations that still fire
        self._gated_impls: dict[tuple[str, frozenset[str]], _Impls] = {}
        self._last_call: weakref.ref | None = None
        self._last_closed: frozenset[str] = frozenset()

    def implements(self, hook: str) -> bool:
        """Whether some plugin implements ``hook`` (before any gate)."""
        return hook in self._impls

    def call_hook(self, hook: str, **kwargs) -> list[tuple[str, Any]]:
        """Call a session-level hook (not gated); ``(plugin, result)`` of each non-None result."""
        impls = self._impls.get(hook)
        if impls is None:
            return []
        return self._run(hook, impls, kwargs, None, None, None)

    def call_attention_hook(
        self, hook: str, call: AttentionCall, check: Check | None = None, snapshot=None, **kwargs
    ) -> list[tuple[str, Any]]:
        """Call a per-attention hook for the plugins whose gate admits ``call``.

        ``check(plugin, result, before)``, if given, runs right after each implementation, ``before`` being
        what ``snapshot()`` returned just before it, so a bad edit names the plugin that made it.
        """
        impls = self._impls.get(hook)
        if impls is None:
            return []
        if self._gates:
            impls = self._admitted(hook, impls, call)
            if not impls.impls:
                return []
        kwargs["call"] = call
        return self._run(hook, impls, kwargs, call, check, snapshot)

    # --- gates --------------------------------------------------------------------------------------

    def _admitted(self, hook: str, impls: _Impls, call: AttentionCall) -> _Impls:
        """The implementations of ``hook`` whose plugin's gate admits ``call``; the gates are asked once per
        call, however many hooks it runs."""
        if self._last_call is None or self._last_call() is not call:
            self._last_call = weakref.ref(call)
            self._last_closed = frozenset(name for name, where in self._gates.items() if not where.admits(call))
        if not self._last_closed:
            return impls
        key = (hook, self._last_closed)
        admitted = self._gated_impls.get(key)
        if admitted is None:
            admitted = _Impls([impl for impl in impls.impls if impl.plugin_name not in self._last_closed])
            self._gated_impls[key] = admitted
        return admitted

    # --- running through pluggy ---------------------------------------------------------------------

    def _run(self, hook: str, impls: _Impls, kwargs, call, check, snapshot) -> list[tuple[str, Any]]:
        wrappers = impls.wrappers
        outer = self._invocation
        invocation = self._invocation = _Invocation(hook, call, check, snapshot, impls.wrapper_names)
        try:
            result = self._execute(hook, impls.impls, kwargs, self._firstresult[hook])
            if wrappers:
                invocation.check_wrappers()
        except PluginError:
            raise
        except Exception as error:
            if not wrappers:
                raise
            # Plain implementations' errors are named by their shims; what is left came from a wrapper.
            plugin = _raising_plugin(error, wrappers) or impls.wrapper_names
            raise self._error(plugin, invocation, error) from error
        finally:
            self._invocation = outer
        if not wrappers:
            return invocation.returned
        # A wrapper may change the results: attribute what pluggy returns, by identity, to the plain
        # implementation that returned it, and anything else to the wrappers.
        values = ([] if result is None else [result]) if self._firstresult[hook] else result
        returned_by = {id(value): plugin for plugin, value in invocation.returned}
        return [(returned_by.get(id(value), impls.wrapper_names), value) for value in values]

    def _named(self, impl: pluggy.HookImpl) -> pluggy.HookImpl:
        """``impl`` with its function run by a shim that names its plugin; wrappers are left as they are
        (their errors are named by traceback, their edits checked after the whole call)."""
        if impl.wrapper or impl.hookwrapper:
            return impl
        function, plugin = impl.function, impl.plugin_name

        @functools.wraps(function)
        def named(*args, **kwargs):
            return self._run_plain(plugin, function, args, kwargs)

        named_impl = pluggy.HookImpl(impl.plugin, plugin, named, impl.opts)
        # pluggy passes an implementation the arguments its function names; the shim takes whatever the
        # original asked for.
        named_impl.argnames, named_impl.kwargnames = impl.argnames, impl.kwargnames
        return named_impl

    def _run_plain(self, plugin: str, function, args, kwargs):
        invocation = self._invocation
        before = None
        if invocation.check is not None:
            if invocation.wrappers:
                invocation.check_wrappers()
            before = invocation.snapshot()
        try:
            result = function(*args, **kwargs)
        except Exception as error:
            raise self._error(plugin, invocation, error) from error
        if invocation.check is not None:
            invocation.check(plugin, result, before)
            if invocation.wrappers:
                invocation.latest = invocation.snapshot()
        if result is not None:
            invocation.returned.append((plugin, result))
        return result

    def _error(self, plugin: str, invocation: _Invocation, error: Exception) -> PluginError:
        call, step = invocation.call, self._current_step()
        where = f" at layer {call.layer} ({call.name})" if call is not None else ""
        return PluginError(
            f"plugin {plugin!r} raised in {invocation.hook}{where}, step {step}: {type(error).__name__}: {error}",
            plugin=plugin,
            hook=invocation.hook,
            layer=call.name if call is not None else None,
            step=step,
        )


def _raising_plugin(error: BaseException, impls) -> str | None:
    """Which of ``impls``' functions the traceback of ``error`` passes through, or None."""
    codes = {impl.function.__code__: impl.plugin_name for impl in impls if hasattr(impl.function, "__code__")}
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code in codes:
            return codes[traceback.tb_frame.f_code]
        traceback = traceback.tb_next
    return None


def raising_plugin(error: BaseException, impls) -> str:
    """Which implementation's function the traceback of ``error`` passes through (pluggy does not say)."""
    return _raising_plugin(error, impls) or "unknown"
