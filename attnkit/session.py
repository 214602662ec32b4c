"""The session: ``with attnkit.attach(model_or_pipeline, plugins=[...]) as session:``.

Entering finds the model's adapter, swaps its attention processors and adds two forward hooks to the
transformer (one reads the timestep to count denoising steps and lets plugins add batch rows, one strips
those rows from the output). On a pipeline, the adapters say which attributes hold transformers; a
pipeline with two (Wan 2.2: ``transformer`` for the high-noise steps, ``transformer_2`` for the low-noise
ones) has both instrumented, so plugins see every step. What the session needs to know about the
pipeline (guidance rows, step count) it asks the adapter. Leaving, also through an exception, puts every
processor back and removes every hook, so the models are the objects they were.

The session owns this lifecycle and the step count; it leaves to other modules how hooks are called
(:mod:`attnkit.hook_dispatch`, with the plugins' gates of :mod:`attnkit.where`), one attention call's hooked
sequence (:mod:`attnkit.hooked_attention`), which rows are which branch (:mod:`attnkit.branches`), what
plugins changed (:mod:`attnkit.edits`) and how an adapter is found (:mod:`attnkit.adapter_lookup`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch

from .adapter import Adapter
from .adapter_lookup import find_adapter, pipeline_transformer_names
from .branches import BranchSpec, branch_rows, forwards_per_step
from .call import AttentionCall, Branches
from .hook_dispatch import ATTENTION_HOOKS, HookDispatch
from .edits import EditLog
from .errors import AlreadyAttachedError, PluginError, UnsupportedModelError, UnsupportedRoleError
from .hooked_attention import HookedAttention
from .layout import ROLES
from .model_inputs import ModelInputs
from .plugins import make_plugin_manager, plugin_roles
from .where import Where, plugin_where

_SESSION_ATTRIBUTE = "_attnkit_session"


def attach(model_or_pipeline, plugins=(), branches: BranchSpec = None, check_finite: bool = False) -> Session:
    """A session on a diffusers transformer, or on a pipeline holding one (as ``.transformer``, or wherever
    its adapter says: Wan 2.2's second expert ``.transformer_2`` is instrumented too).

    ``branches`` names the batch rows the pipeline passes: a dict (``{"uncond": [0], "cond": [1]}``) or a
    function of the batch size returning one. By default a pipeline running classifier-free guidance
    has ``uncond`` rows then ``cond`` rows (the diffusers order); anything else is all ``cond``.

    ``check_finite`` checks every plugin result, the model's own q/k/v and outputs, and each step's latents
    for inf and NaN, and raises :class:`attnkit.NonFiniteError` naming the first plugin call (or layer and
    step) where one appeared. It costs a pass over each tensor, so it is off by default.
    """
    return Session(model_or_pipeline, plugins=plugins, branches=branches, check_finite=check_finite)


class Session:
    """An active attachment of plugins to one model. Use it as a context manager."""

    def __init__(self, model_or_pipeline, plugins=(), branches: BranchSpec = None, check_finite: bool = False):
        self.pipeline = None if isinstance(model_or_pipeline, torch.nn.Module) else model_or_pipeline
        # (component name, transformer) of every model the session instruments; found on entering, when the
        # registered adapters can say which pipeline attributes hold transformers.
        self.components: list[tuple[str, torch.nn.Module]] = (
            [] if self.pipeline is not None else [("model", model_or_pipeline)]
        )
        # The first transformer; ``models`` lists all (two for Wan 2.2's experts).
        self.model = self.components[0][1] if self.components else None
        self.plugins = list(plugins)
        self.branch_spec = branches
        self.check_finite = check_finite
        # What plugins changed, and the finiteness check; a new log each time the session is entered.
        self.edits = EditLog(check_finite)
        self.attention = HookedAttention(self)
        self.plugin_manager = None
        self.adapter: Adapter | None = None  # the adapter of the transformer whose forward runs
        self.adapters: list[Adapter] = []
        self.step = -1
        self.timestep: float | None = None
        self.branches: Branches = {}
        self.num_attention_modules = 0
        self._forward_in_step = 0
        self._handles: list = []
        self._active = False

    # --- entering and leaving ---------------------------------------------------------------------

    @property
    def models(self) -> list[torch.nn.Module]:
        """Every instrumented transformer: the pipeline's ``transformer`` and, if it has one, ``transformer_2``."""
        return [model for _, model in self.components]

    def __enter__(self) -> Session:
        plugin_manager = make_plugin_manager(self.plugins)
        if self.pipeline is not None:
            names = pipeline_transformer_names(plugin_manager)
            self.components = [
                (name, getattr(self.pipeline, name)) for name in names if getattr(self.pipeline, name, None) is not None
            ]
            if not self.components:
                raise UnsupportedModelError(
                    f"{type(self.pipeline).__name__} holds no transformer ({' and '.join(names)} are None or "
                    "missing); load its transformer before attaching, or attach the transformer itself"
                )
            self.model = self.components[0][1]
        for _, model in self.components:
            if getattr(model, _SESSION_ATTRIBUTE, None) is not None:
                raise AlreadyAttachedError(
                    f"{type(model).__name__} already has an active attnkit session; leave it (exit its "
                    "`with` block) before attaching again, or pass all plugins to one attach()"
                )
        self.plugin_manager = plugin_manager
        self._check_not_blocked()
        # A session entered again starts a new run: its steps count from 0 again.
        self.step, self.timestep, self._forward_in_step = -1, None, 0
        self.edits = EditLog(self.check_finite)
        self.adapters = []
        for name, model in self.components:
            with self._naming_component(name):
                self.adapters.append(find_adapter(model, self.plugin_manager))
        self.adapter = self.adapters[0]
        self._check_roles()
        self._collect_hooks()
        try:
            counts = []
            for (name, model), adapter in zip(self.components, self.adapters):
                setattr(model, _SESSION_ATTRIBUTE, self)
                with self._naming_component(name):
                    counts.append(adapter.install(self))
                self._handles.append(model.register_forward_pre_hook(self._pre_hook(adapter), with_kwargs=True))
                self._handles.append(model.register_forward_hook(self._after_forward, with_kwargs=True))
            # Layer indices count the attention modules of one forward, i.e. of one transformer.
            self.num_attention_modules = max(counts)
            self._active = True
            self.dispatch.call_hook("attnkit_session_start", session=self)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if self._active:
                self._end_step()
                self.dispatch.call_hook("attnkit_session_end", session=self, error=exc)
        except Exception as plugin_error:
            if exc is None:
                raise
            # The body's error is the one the user must see; a plugin failing while cleaning up after it
            # is attached as a note, not raised in its place.
            exc.add_note(f"while ending the attnkit session: {plugin_error}")
        finally:
            self._restore()

    def _restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for adapter in self.adapters:
            adapter.uninstall()
        for _, model in self.components:
            if getattr(model, _SESSION_ATTRIBUTE, None) is self:
                delattr(model, _SESSION_ATTRIBUTE)
        self._active = False

    @contextmanager
    def _naming_component(self, component: str):
        """With two transformers, an unsupported-model error says which one, and that both are needed."""
        try:
            yield
        except UnsupportedModelError as error:
            if len(self.components) == 1:
                raise
            names = " and ".join(name for name, _ in self.components)
            raise UnsupportedModelError(
                f"{type(self.pipeline).__name__}.{component}: {error}. The pipeline runs {names} in turn, "
                "so attnkit instruments both or refuses"
            ) from error

    def _check_not_blocked(self) -> None:
        """A plugin passed to attach() that the block list dropped would silently not run: refuse instead."""
        from .plugins import BLOCK_ENV, plugin_name

        for plugin in self.plugins:
            if not self.plugin_manager.is_registered(plugin):
                name = plugin_name(plugin)
                raise PluginError(
                    f"plugin {name!r} was passed to attach() but {BLOCK_ENV} blocks it, so it would not run; "
                    f"remove {name!r} from {BLOCK_ENV}, or do not pass it",
                    plugin=name,
                    hook="attach",
                )

    def get_plugin(self, name: str):
        return self.plugin_manager.get_plugin(name)

    # --- hooks, asked once per session ---------------------------------------------------------------

    def _check_roles(self) -> None:
        """Read each plugin's gate (``attnkit_where``, ``attnkit_roles``, see :mod:`attnkit.where`); a plugin
        that declares roles must handle at least one role this model's attention has."""
        model_roles = set().union(*(adapter.roles for adapter in self.adapters or [self.adapter]))
        self._gates: dict[str, Where] = {}
        for name, plugin in self.plugin_manager.list_name_plugin():
            where = plugin_where(name, plugin)
            if where is None:
                continue
            self._gates[name] = where
            roles = where.roles
            if roles is None:
                continue
            declared = "attnkit_roles" if plugin_roles(plugin) is not None else "attnkit_where"
            unknown = sorted(roles - set(ROLES))
            if unknown:
                raise UnsupportedRoleError(
                    f"plugin {name!r} declares {declared} {sorted(roles)}; {unknown} are not roles "
                    f"(roles are {list(ROLES)})",
                    plugin=name,
                    hook=declared,
                )
            if not roles & model_roles:
                raise UnsupportedRoleError(
                    f"plugin {name!r} handles only {sorted(roles)} attention calls, but "
                    f"{type(self.model).__name__} (adapter {self.adapter.name!r}) has only "
                    f"{sorted(model_roles)} calls, so it would do nothing; use a plugin that handles "
                    f"{' or '.join(sorted(model_roles))} calls, or extend this one",
                    plugin=name,
                    hook=declared,
                )

    def _collect_hooks(self) -> None:
        self.dispatch = HookDispatch(self.plugin_manager, self._gates, lambda: self.step)
        # Adapters run the model's own processors untouched when no per-attention hook is implemented.
        self.hooks_attention = any(self.dispatch.implements(name) for name in ATTENTION_HOOKS)
        self.wants_logsumexp = self.dispatch.implements("attnkit_attention_output")

    # --- per attention call, called by the adapter's processor --------------------------------------

    def run_attention(self, call: AttentionCall) -> torch.Tensor:
        """The whole hooked attention of a call over its own keys; adapters' processors call this.

        Returns the (possibly replaced) output, ``(B, heads, N, head_dim)``, before the output projection.
        """
        return self.attention.run(call)

    def compute_qkv(self, call: AttentionCall) -> None:
        """``attnkit_before_attention``, the projections of the (maybe edited) hidden states, ``attnkit_qkv``."""
        self.attention.compute_qkv(call)

    def run_kernel(self, call: AttentionCall, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The kernel of ``call.q`` over ``key``/``value`` with the plugins' extra K/V (see
        :meth:`HookedAttention.run_kernel`)."""
        return self.attention.run_kernel(call, key, value)

    def run_attention_output(self, call: AttentionCall, output: torch.Tensor) -> torch.Tensor:
        """``attnkit_attention_output``: plugins read maps or replace the output."""
        return self.attention.run_attention_output(call, output)

    # --- per transformer forward ---------------------------------------------------------------------

    def _pre_hook(self, adapter: Adapter):
        def before_forward(module, args, kwargs):
            self.adapter = adapter
            return self._before_forward(module, args, kwargs)

        return before_forward

    def _before_forward(self, module, args, kwargs):
        inputs = self.adapter.bind_inputs(args, kwargs)
        timestep = self.adapter.timestep(inputs)
        step_full = self._forward_in_step + 1 >= forwards_per_step(self.pipeline, self.adapter)
        if self.step < 0 or timestep != self.timestep or step_full:
            self._end_step()
            self.step += 1
            self.timestep = timestep
            self._forward_in_step = 0
            self.dispatch.call_hook("attnkit_step_start", session=self, step=self.step, timestep=timestep)
        else:
            self._forward_in_step += 1
        self._base_batch = self.adapter.batch_size(inputs)
        self.branches = branch_rows(
            self.branch_spec, self.pipeline, self.adapter, self._base_batch, self._forward_in_step
        )
        step = f"step {self.step} (timestep {timestep:g})" if timestep is not None else f"step {self.step}"
        self._require_finite({"the latents passed to the transformer": self.adapter.latents(inputs)}, f"at {step}")
        model_inputs = ModelInputs(self, inputs)
        self.dispatch.call_hook("attnkit_model_inputs", session=self, inputs=model_inputs)
        if model_inputs.added:
            added = ", ".join(branch for branch, _ in model_inputs.added)
            self._require_finite(
                {f"the rows added by attnkit_model_inputs ({added})": self.adapter.latents(inputs)}, f"at {step}"
            )
        self.adapter.begin_forward(inputs)
        return (), inputs

    def _after_forward(self, module, args, kwargs, output):
        if (
            not self.check_finite
            and not self.dispatch.implements("attnkit_model_output")
            and self.adapter.batch_size(kwargs) == self._base_batch
        ):
            return output
        output, sample = self.adapter.split_output(output, self._base_batch)
        self._require_finite({"the transformer's output": sample}, f"at step {self.step}")
        outputs = {branch: sample[rows] for branch, rows in self.branches.items()}
        self.dispatch.call_hook("attnkit_model_output", session=self, outputs=outputs)
        return output

    def _end_step(self) -> None:
        if self.step >= 0:
            self.dispatch.call_hook("attnkit_step_end", session=self, step=self.step, timestep=self.timestep)

    def _require_finite(self, tensors: dict, where: str) -> None:
        self.edits.require_finite(None, self.step, tensors, where)

    @property
    def activity(self) -> dict[str, dict[str, Any]]:
        """plugin name -> ``{"calls", "steps", "layers"}`` of the attention calls it changed: what it did, not
        what it was configured to do."""
        return self.edits.activity

    @property
    def num_steps(self) -> int | None:
        """How many denoising steps the pipeline's current call runs (None for a bare transformer, or
        when the pipeline does not say), as the adapter reads it."""
        if self.pipeline is None or self.adapter is None:
            return None
        return self.adapter.num_steps(self.pipeline)
