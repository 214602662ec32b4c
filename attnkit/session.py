"""The session: ``with attnkit.attach(model_or_pipeline, plugins=[...]) as session:``.

Entering finds the model's adapter, swaps its attention processors and adds two forward hooks to the
transformer (one reads the timestep to count denoising steps and lets plugins add batch rows, one strips
those rows from the output). On a pipeline, the adapters say which attributes hold transformers; a
pipeline with two (Wan 2.2: ``transformer`` for the high-noise steps, ``transformer_2`` for the low-noise
ones) has both instrumented, so plugins see every step. What the session needs to know about the
pipeline (guidance rows, step count) it asks the adapter. Leaving, also through an exception, puts every
processor back and removes every hook, so the models are the objects they were.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable

import torch

from .adapter import Adapter
from .call import (
    AttentionCall,
    Branches,
    check_extra_kv,
    check_hidden_states,
    check_output_replacement,
    check_qkv,
    first_non_finite,
)
from .errors import AlreadyAttachedError, NonFiniteError, PluginError, UnsupportedModelError, UnsupportedRoleError
from .kernel import ExtraKV, attention_with_extras, sdpa, sdpa_with_logsumexp
from .layout import ROLES
from .plugins import make_plugin_manager, plugin_roles

BranchSpec = Branches | Callable[[int], Branches] | None
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
        # The last plugin call that changed a tensor, named when a non-finite value appears downstream of it.
        self._last_edit: str | None = None
        # plugin name -> {"calls", "steps", "layers"} of the attention calls it changed: what it did, not
        # what it was configured to do.
        self.activity: dict[str, dict[str, Any]] = {}
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
        self.step, self.timestep, self._forward_in_step, self._last_edit = -1, None, 0, None
        self.activity = {}
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
            self._call_hook("attnkit_session_start", session=self)
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            if self._active:
                self._end_step()
                self._call_hook("attnkit_session_end", session=self, error=exc)
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
        """A plugin declaring ``attnkit_roles`` must handle at least one role this model's attention has."""
        model_roles = set().union(*(adapter.roles for adapter in self.adapters or [self.adapter]))
        self._plugin_roles: dict[str, frozenset[str]] = {}
        for name, plugin in self.plugin_manager.list_name_plugin():
            roles = plugin_roles(plugin)
            if roles is None:
                continue
            unknown = sorted(roles - set(ROLES))
            if unknown:
                raise UnsupportedRoleError(
                    f"plugin {name!r} declares attnkit_roles {sorted(roles)}; {unknown} are not roles "
                    f"(roles are {list(ROLES)})",
                    plugin=name,
                    hook="attnkit_roles",
                )
            if not roles & model_roles:
                raise UnsupportedRoleError(
                    f"plugin {name!r} handles only {sorted(roles)} attention calls, but "
                    f"{type(self.model).__name__} (adapter {self.adapter.name!r}) has only "
                    f"{sorted(model_roles)} calls, so it would do nothing; use a plugin that handles "
                    f"{' or '.join(sorted(model_roles))} calls, or extend this one",
                    plugin=name,
                    hook="attnkit_roles",
                )
            self._plugin_roles[name] = roles

    def _collect_hooks(self) -> None:
        self._impls = {}
        for name in self.plugin_manager.hook.__dict__:
            if not name.startswith("attnkit_"):
                continue
            caller = getattr(self.plugin_manager.hook, name)
            impls = caller.get_hookimpls()
            wrappers = [impl.plugin_name for impl in impls if impl.hookwrapper or impl.wrapper]
            if wrappers:
                raise PluginError(
                    f"plugins {wrappers} implement {name} as a wrapper; attnkit calls its hooks directly, "
                    "so implement it as a plain hook (use tryfirst/trylast for order)",
                    plugin=wrappers[0],
                    hook=name,
                )
            # pluggy calls the last registered first; keep that order. Each impl carries the roles its
            # plugin handles (None = all) so per-call hooks skip calls of other roles.
            self._impls[name] = [(impl, self._plugin_roles.get(impl.plugin_name)) for impl in reversed(impls)]
        self.hooks_attention = any(
            self._impls.get(name)
            for name in ("attnkit_before_attention", "attnkit_qkv", "attnkit_extra_kv", "attnkit_attention_output")
        )
        self.wants_logsumexp = bool(self._impls.get("attnkit_attention_output"))

    def _call_hook(
        self,
        name: str,
        context: AttentionCall | None = None,
        check: Callable[[str, Any, Any], None] | None = None,
        snapshot: Callable[[], Any] | None = None,
        **kwargs,
    ) -> list[tuple[str, Any]]:
        """Call each impl; ``check(plugin, result, before)``, if given, runs after each one, ``before`` being
        what ``snapshot()`` returned just before it, so a bad result names the plugin that produced it."""
        results = []
        for impl, roles in self._impls.get(name, ()):
            if roles is not None and context is not None and context.layout.role not in roles:
                continue
            arguments = {argument: kwargs[argument] for argument in impl.argnames}
            before = snapshot() if snapshot is not None else None
            try:
                result = impl.function(**arguments)
            except Exception as error:
                where = f" at layer {context.layer} ({context.name})" if context is not None else ""
                raise PluginError(
                    f"plugin {impl.plugin_name!r} raised in {name}{where}, step {self.step}: "
                    f"{type(error).__name__}: {error}",
                    plugin=impl.plugin_name,
                    hook=name,
                    layer=context.name if context is not None else None,
                    step=self.step,
                ) from error
            if check is not None:
                check(impl.plugin_name, result, before)
            if result is not None:
                results.append((impl.plugin_name, result))
        return results

    # --- per attention call, called by the adapter's processor --------------------------------------

    def run_attention(self, call: AttentionCall) -> torch.Tensor:
        """The whole hooked attention of a call over its own keys; adapters' processors call this.

        Returns the (possibly replaced) output, ``(B, heads, N, head_dim)``, before the output projection.
        """
        self.compute_qkv(call)
        call.output = self.run_kernel(call, call.k, call.v)
        return self.run_attention_output(call, call.output)

    def compute_qkv(self, call: AttentionCall) -> None:
        """``attnkit_before_attention``, the projections of the (maybe edited) hidden states, ``attnkit_qkv``."""
        self._check_finite(call, {"the hidden states entering the layer": call.hidden_states})
        self.run_before_attention(call)
        call.q, call.k, call.v = call.project(call.hidden_states)
        self._check_finite(call, {"q (projected)": call.q, "k (projected)": call.k, "v (projected)": call.v})
        self.run_qkv(call)

    def run_kernel(self, call: AttentionCall, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The kernel of ``call.q`` over ``key``/``value`` (the call's own, or one softmax group of them) with
        the plugins' extra K/V; the log-sum-exp is kept on the call when a plugin will read maps."""
        extras = self.run_extra_kv(call)
        mask = call.attention_mask
        if extras:
            output, logsumexp = attention_with_extras(call.q, key, value, extras, self.wants_logsumexp, mask)
        elif self.wants_logsumexp:
            output, logsumexp = sdpa_with_logsumexp(call.q, key, value, mask)
        else:
            output, logsumexp = sdpa(call.q, key, value, mask), None
        call._logsumexp = logsumexp
        self._check_finite(call, {"the attention kernel's output": output})
        return output

    def run_before_attention(self, call: AttentionCall) -> None:
        def check(plugin, result, before):
            if call.hidden_states is not before:
                check_hidden_states(call, before, plugin)
                self._plugin_edited(call, plugin, "attnkit_before_attention", {"call.hidden_states": call.hidden_states})

        self._call_hook("attnkit_before_attention", call, check, lambda: call.hidden_states, call=call)

    def run_qkv(self, call: AttentionCall) -> None:
        def check(plugin, result, before):
            if any(now is not old for now, old in zip((call.q, call.k, call.v), before)):
                check_qkv(call, before, plugin)
                self._plugin_edited(call, plugin, "attnkit_qkv", {"call.q": call.q, "call.k": call.k, "call.v": call.v})

        self._call_hook("attnkit_qkv", call, check, lambda: (call.q, call.k, call.v), call=call)

    def run_extra_kv(self, call: AttentionCall) -> list[ExtraKV]:
        extras = []
        for plugin, result in self._call_hook("attnkit_extra_kv", call, call=call):
            for extra in result if isinstance(result, (list, tuple)) else [result]:
                check_extra_kv(extra, call, plugin)
                extra.source = plugin
                bias = extra.score_bias if isinstance(extra.score_bias, torch.Tensor) else None
                # A score bias of -inf masks keys on purpose; only NaN is a fault there.
                self._plugin_edited(
                    call,
                    plugin,
                    "attnkit_extra_kv",
                    {"ExtraKV.key": extra.key, "ExtraKV.value": extra.value},
                    {"ExtraKV.score_bias": bias},
                )
                extras.append(extra)
        return extras

    def run_attention_output(self, call: AttentionCall, output: torch.Tensor) -> torch.Tensor:
        replacements = self._call_hook("attnkit_attention_output", call, call=call, output=output)
        if not replacements:
            return output
        if len(replacements) > 1:
            names = [plugin for plugin, _ in replacements]
            raise PluginError(
                f"plugins {names} all replaced the attention output at layer {call.name}; only one may",
                plugin=names[1],
                hook="attnkit_attention_output",
                layer=call.name,
                step=self.step,
            )
        plugin, replacement = replacements[0]
        check_output_replacement(call, output, replacement, plugin)
        self._plugin_edited(call, plugin, "attnkit_attention_output", {"the returned output": replacement})
        call.output = replacement
        return replacement

    # --- the finiteness check (attach(..., check_finite=True)) ---------------------------------------

    def _plugin_edited(self, call: AttentionCall | None, plugin: str, hook: str, tensors: dict, nan_only=None) -> None:
        """Note ``plugin``'s edit; with the check on, its tensors must be finite (``nan_only``: not NaN)."""
        where = f"{plugin!r} in {hook}" + (f" at layer {call.layer} ({call.name})" if call is not None else "")
        self._last_edit = f"{where}, step {self.step}"
        done = self.activity.setdefault(plugin, {"calls": 0, "steps": set(), "layers": set()})
        done["calls"] += 1
        done["steps"].add(self.step)
        if call is not None:
            done["layers"].add(call.layer)
        if not self.check_finite:
            return
        bad = first_non_finite(tensors)
        if bad is None and nan_only:
            bad = next((name for name, t in nan_only.items() if t is not None and t.isnan().any()), None)
        if bad is not None:
            raise NonFiniteError(
                f"plugin {where}, step {self.step} produced inf or NaN in {bad}; its inputs were finite. "
                "Check the plugin's settings (a huge scale or step size overflows)",
                plugin=plugin,
                hook=hook,
                layer=call.name if call is not None else None,
                step=self.step,
            )

    def _check_finite(self, call: AttentionCall | None, tensors: dict, where: str | None = None) -> None:
        """With the check on: raise if a tensor no plugin produced holds inf or NaN, naming where it was seen."""
        if not self.check_finite:
            return
        bad = first_non_finite(tensors)
        if bad is None:
            return
        if where is None:
            where = f"at layer {call.layer} ({call.name}), step {self.step}"
        cause = (
            f"the last plugin to change a tensor before it was {self._last_edit}"
            if self._last_edit is not None
            else "no plugin changed a tensor before it, so the model or the pipeline made it (e.g. an "
            "infinite guidance scale, or inputs that were already non-finite)"
        )
        raise NonFiniteError(
            f"{bad} {where} holds inf or NaN; {cause}",
            plugin=None,
            hook=None,
            layer=call.name if call is not None else None,
            step=self.step,
        )

    # --- per transformer forward ---------------------------------------------------------------------

    def _pre_hook(self, adapter: Adapter):
        def before_forward(module, args, kwargs):
            self.adapter = adapter
            return self._before_forward(module, args, kwargs)

        return before_forward

    def _before_forward(self, module, args, kwargs):
        inputs = self.adapter.bind_inputs(args, kwargs)
        timestep = self.adapter.timestep(inputs)
        if self.step < 0 or timestep != self.timestep or self._forward_in_step + 1 >= self._forwards_per_step():
            self._end_step()
            self.step += 1
            self.timestep = timestep
            self._forward_in_step = 0
            self._call_hook("attnkit_step_start", session=self, step=self.step, timestep=timestep)
        else:
            self._forward_in_step += 1
        self._base_batch = self.adapter.batch_size(inputs)
        self.branches = self._base_branches(self._base_batch)
        step = f"step {self.step} (timestep {timestep:g})" if timestep is not None else f"step {self.step}"
        self._check_finite(None, {"the latents passed to the transformer": self.adapter.latents(inputs)}, f"at {step}")
        model_inputs = ModelInputs(self, inputs)
        self._call_hook("attnkit_model_inputs", session=self, inputs=model_inputs)
        if model_inputs.added:
            added = ", ".join(branch for branch, _ in model_inputs.added)
            self._check_finite(
                None, {f"the rows added by attnkit_model_inputs ({added})": self.adapter.latents(inputs)}, f"at {step}"
            )
        self.adapter.begin_forward(inputs)
        return (), inputs

    def _after_forward(self, module, args, kwargs, output):
        if (
            not self.check_finite
            and not self._impls.get("attnkit_model_output")
            and self.adapter.batch_size(kwargs) == self._base_batch
        ):
            return output
        output, sample = self.adapter.split_output(output, self._base_batch)
        self._check_finite(None, {"the transformer's output": sample}, f"at step {self.step}")
        outputs = {branch: sample[rows] for branch, rows in self.branches.items()}
        self._call_hook("attnkit_model_output", session=self, outputs=outputs)
        return output

    def _forwards_per_step(self) -> float:
        """How many forwards of a pipeline's call share one timestep: one, or two where the pipeline runs
        each guidance branch as its own forward. A forward beyond them at an unchanged timestep starts a new
        step (a second call of a pipeline whose steps repeat the first's timesteps)."""
        if self.pipeline is None:
            return float("inf")  # a bare model may be called any number of times per step
        if self.adapter.forward_branches(self.pipeline, 1, 1) == self.adapter.forward_branches(self.pipeline, 1, 0):
            return 1  # a second forward would be labelled like the first: guidance is batched in one forward
        # Only an explicit flag says guidance is off: HunyuanVideo's true CFG is decided inside its __call__.
        return 1 if getattr(self.pipeline, "do_classifier_free_guidance", None) is False else 2

    def _end_step(self) -> None:
        if self.step >= 0:
            self._call_hook("attnkit_step_end", session=self, step=self.step, timestep=self.timestep)

    def _base_branches(self, batch_size: int) -> Branches:
        spec = self.branch_spec
        if callable(spec):
            spec = spec(batch_size)
        if spec is not None:
            rows = sorted(row for branch_rows in spec.values() for row in branch_rows)
            if rows and (rows[-1] >= batch_size or rows[0] < 0):
                raise ValueError(
                    f"branches {spec} name rows outside the batch of {batch_size}; "
                    f"rows must be in 0..{batch_size - 1}"
                )
            return {name: list(branch_rows) for name, branch_rows in spec.items()}
        if self.pipeline is not None and getattr(self.pipeline, "current_timestep", 0) is None:
            # diffusers pipelines set current_timestep inside their denoising loop only; a forward while it
            # is None comes from elsewhere, and the attached pipeline's guidance says nothing about its rows.
            raise ValueError(
                f"the transformer ran outside the attached {type(self.pipeline).__name__}'s denoising loop "
                "(another pipeline sharing it, or a direct call), so that pipeline's guidance setting cannot "
                "say which rows are uncond and cond; attach the pipeline that runs it, or pass "
                "attach(..., branches={...})"
            )
        # The adapter knows its pipelines' loop: batched guidance halves, or one forward per branch.
        return self.adapter.forward_branches(self.pipeline, batch_size, self._forward_in_step)

    @property
    def num_steps(self) -> int | None:
        """How many denoising steps the pipeline's current call runs (None for a bare transformer, or
        when the pipeline does not say), as the adapter reads it."""
        if self.pipeline is None or self.adapter is None:
            return None
        return self.adapter.num_steps(self.pipeline)



def _registered_adapters(plugin_manager) -> list[type[Adapter]]:
    adapters: list[type[Adapter]] = []
    caller = plugin_manager.hook.attnkit_register_adapters
    try:
        caller(register=adapters.append)
    except Exception as error:
        plugin = _raising_plugin(error, caller.get_hookimpls())
        raise PluginError(
            f"plugin {plugin!r} raised in attnkit_register_adapters: {type(error).__name__}: {error}; fix or "
            "uninstall it (or block it with ATTNKIT_BLOCK_PLUGINS)",
            plugin=plugin,
            hook="attnkit_register_adapters",
        ) from error
    return adapters


def pipeline_transformer_names(plugin_manager) -> list[str]:
    """Every pipeline attribute some registered adapter says may hold a transformer, in their order."""
    names: list[str] = []
    for adapter_class in _registered_adapters(plugin_manager):
        names.extend(name for name in adapter_class.pipeline_transformers if name not in names)
    return names


def find_adapter(model, plugin_manager) -> Adapter:
    """The first registered adapter that supports ``model``; a clear error if none does."""
    adapters = _registered_adapters(plugin_manager)
    for adapter_class in adapters:
        if adapter_class.supports(model):
            return adapter_class(model)
    supported = sorted({name for adapter_class in adapters for name in adapter_class.model_classes})
    raise UnsupportedModelError(
        f"no attnkit adapter supports {type(model).__name__}; supported model classes: {supported}. "
        "Pass a diffusers transformer or a pipeline with .transformer, or register an adapter for it "
        "with an attnkit_register_adapters(register) hook (see docs/hooks.md)"
    )


def _raising_plugin(error: BaseException, impls) -> str:
    """Which impl's function the traceback of ``error`` passes through (pluggy does not say)."""
    codes = {impl.function.__code__: impl.plugin_name for impl in impls if hasattr(impl.function, "__code__")}
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code in codes:
            return codes[traceback.tb_frame.f_code]
        traceback = traceback.tb_next
    return "unknown"
