"""The plugin manager: built-ins, entry-point plugins, and the environment variables that filter them.

Environment variables:

``ATTNKIT_DISABLE_PLUGIN_AUTOLOAD=1``
    do not load plugins from the ``attnkit`` entry-point group (built-ins still load). Any value other
    than empty, ``0``, ``false``, ``no`` or ``off`` disables autoloading (``on`` and ``yes`` included).
``ATTNKIT_BLOCK_PLUGINS=name1,name2``
    never register plugins with these names (entry-point names or built-in names).

An entry point names a module, an object, a class or a factory function. A class or a function is called
with no arguments and its result is registered, so ``my_package.maps:WordMapRecorder`` registers a
``WordMapRecorder()`` instance, not the class (pluggy alone would register the class, whose hooks then
fail for want of ``self``).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
import types
from dataclasses import dataclass, field

import pluggy

from . import hookspecs
from .errors import AttnkitError

PROJECT_NAME = "attnkit"
ENTRY_POINT_GROUP = "attnkit"
BLOCK_ENV = "ATTNKIT_BLOCK_PLUGINS"
AUTOLOAD_ENV = "ATTNKIT_DISABLE_PLUGIN_AUTOLOAD"
_AUTOLOAD_KEPT = {"", "0", "false", "no", "off"}

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

# Built-in plugins, registered through the same manager as third-party ones: name -> module path.
BUILTIN_PLUGINS = {
    "attnkit.adapters.cogvideox": "attnkit.adapters.cogvideox",
    "attnkit.adapters.hunyuan_video": "attnkit.adapters.hunyuan_video",
    "attnkit.adapters.ltx_video": "attnkit.adapters.ltx_video",
    "attnkit.adapters.wan": "attnkit.adapters.wan",
}

# Plugin classes shipped with attnkit that a user passes to ``attach(..., plugins=[...])``: they need
# arguments, so no session registers them by itself; ``attnkit plugins`` lists them so they can be found.
# Imported only when listed, so the core does not depend on attnkit_lmp or its extra's packages.
SHIPPED_PLUGIN_CLASSES = (
    "attnkit.record.recorder:AttentionRecorder",
    "attnkit_lmp.reference:ReferenceBranch",
    "attnkit_lmp.fbdm:FBDM",
    "attnkit_lmp.rmtm:RMTM",
    "attnkit_lmp.asm:ASM",
    "attnkit_lmp.transfer:StepProgress",
)


class PluginLoadError(AttnkitError, ImportError):
    """An entry point of the ``attnkit`` group cannot be loaded or instantiated."""

    def __init__(self, message: str, *, entry_point: str, distribution: str | None):
        super().__init__(message)
        self.entry_point = entry_point
        self.distribution = distribution


class AttnkitPluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers where each plugin came from and which entry points failed."""

    def __init__(self, project_name: str = PROJECT_NAME):
        super().__init__(project_name)
        self.origins: dict[str, str] = {}
        self.versions: dict[str, str | None] = {}
        self.load_errors: list[PluginLoadError] = []


def blocked_plugin_names() -> set[str]:
    return {name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",") if name.strip()}


def autoload_disabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() not in _AUTOLOAD_KEPT


def make_plugin_manager(plugins=(), *, strict: bool = True) -> AttnkitPluginManager:
    """A fresh manager with the specs, the built-ins, entry-point plugins (unless disabled) and ``plugins``.

    A new manager per session keeps nothing global behind. ``check_pending`` turns a misspelt hook
    implementation into an error here instead of a silently ignored function. With ``strict`` (what a
    session uses) a broken entry point raises :class:`PluginLoadError`; without it (``attnkit plugins``)
    the error is kept in ``manager.load_errors`` and the other plugins still load.
    """
    from . import __version__

    manager = AttnkitPluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for name in blocked_plugin_names():
        manager.set_blocked(name)
    for name, module_path in BUILTIN_PLUGINS.items():
        if not manager.is_blocked(name):
            manager.register(importlib.import_module(module_path), name=name)
            manager.origins[name] = "built-in (attnkit)"
            manager.versions[name] = __version__
    if not autoload_disabled():
        load_entry_point_plugins(manager, ENTRY_POINT_GROUP)
        if strict and manager.load_errors:
            raise manager.load_errors[0]
    for plugin in plugins:
        name = plugin_name(plugin)
        if manager.is_blocked(name):
            continue
        if manager.is_registered(plugin):
            raise ValueError(f"plugin {name!r} was passed twice; pass each plugin object once")
        registered = manager.register(plugin, name=_unique_name(manager, name))
        manager.origins[registered] = "passed to attach()"
    manager.check_pending()
    return manager


def load_entry_point_plugins(manager: AttnkitPluginManager, group: str) -> None:
    """Register every plugin of entry-point ``group``: a class or factory is called, its result registered.

    A failure is kept in ``manager.load_errors`` as a :class:`PluginLoadError` naming the entry point and
    its distribution, and loading goes on with the next entry point.
    """
    for entry_point in importlib.metadata.entry_points(group=group):
        if manager.get_plugin(entry_point.name) is not None or manager.is_blocked(entry_point.name):
            continue
        dist = getattr(entry_point, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else None
        try:
            plugin = _instantiate(entry_point.load())
        except Exception as error:  # a third party's import may raise anything; say whose it was
            manager.load_errors.append(_load_error(entry_point, dist_name, error))
            continue
        manager.register(plugin, name=entry_point.name)
        where = f"entry point {entry_point.name} = {entry_point.value}"
        manager.origins[entry_point.name] = f"{where} (distribution {dist_name})" if dist_name else where
        manager.versions[entry_point.name] = dist.version if dist is not None else None


def _instantiate(loaded):
    """A class or a plain function named by an entry point is called; modules and instances are plugins."""
    if inspect.isclass(loaded) or isinstance(loaded, (types.FunctionType, types.BuiltinFunctionType)):
        return loaded()
    return loaded


def _load_error(entry_point, dist_name: str | None, error: Exception) -> PluginLoadError:
    owner = f" of distribution {dist_name!r}" if dist_name else ""
    fix = f"pip uninstall {dist_name}" if dist_name else "uninstall the package that declares it"
    return PluginLoadError(
        f"attnkit plugin entry point {entry_point.name!r} ({entry_point.value}){owner} cannot be loaded: "
        f"{type(error).__name__}: {error}. Fix or reinstall that package, {fix}, or skip it with "
        f"{BLOCK_ENV}={entry_point.name}",
        entry_point=entry_point.name,
        distribution=dist_name,
    )


def plugin_name(plugin) -> str:
    """A readable name: a module's path, or a plugin object's ``name`` attribute or class name."""
    if isinstance(plugin, types.ModuleType):
        return plugin.__name__
    return getattr(plugin, "name", None) or type(plugin).__name__


def plugin_roles(plugin) -> frozenset[str] | None:
    """The attention roles a plugin declares it handles (its ``attnkit_roles``), or None for all roles.

    A plugin that reads text<->video maps might declare ``attnkit_roles = {"joint", "cross"}``; the session
    then calls its per-attention hooks only for those calls, and refuses to attach it to a model that has
    none of them.
    """
    roles = getattr(plugin, "attnkit_roles", None)
    if roles is None:
        return None
    if isinstance(roles, str):
        return frozenset({roles})
    return frozenset(roles)


def _unique_name(manager: pluggy.PluginManager, name: str) -> str:
    candidate, counter = name, 1
    while manager.get_plugin(candidate) is not None:
        counter += 1
        candidate = f"{name}#{counter}"
    return candidate


@dataclass
class PluginInfo:
    name: str
    version: str | None
    hooks: list[str]
    origin: str = ""
    loaded: bool = True  # registered in every session; False: a class to pass to attach()
    problem: str | None = None  # why it cannot be used here (a missing extra), if so


@dataclass
class PluginListing:
    """What ``attnkit plugins`` shows: loaded plugins, shipped plugin classes, and broken entry points."""

    loaded: list[PluginInfo]
    shipped: list[PluginInfo] = field(default_factory=list)
    errors: list[PluginLoadError] = field(default_factory=list)


def describe_plugins(manager: pluggy.PluginManager) -> list[PluginInfo]:
    """Name, version, implemented hooks and origin of each plugin registered in ``manager``."""
    origins = getattr(manager, "origins", {})
    versions = getattr(manager, "versions", {})
    infos = []
    for name, plugin in manager.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(caller.name for caller in manager.get_hookcallers(plugin) or [])
        infos.append(
            PluginInfo(name=name, version=versions.get(name), hooks=hooks, origin=origins.get(name, ""))
        )
    return infos


def describe_shipped_plugins() -> list[PluginInfo]:
    """The plugin classes of :data:`SHIPPED_PLUGIN_CLASSES`, with their hooks (read from the class)."""
    from . import __version__

    marker = f"{PROJECT_NAME}_impl"
    infos = []
    for path in SHIPPED_PLUGIN_CLASSES:
        module_path, class_name = path.split(":")
        origin = f"{module_path}.{class_name} (attnkit {__version__}); pass an instance to attach()"
        try:
            cls = getattr(importlib.import_module(module_path), class_name)
        except ImportError as error:
            infos.append(
                PluginInfo(
                    name=f"{module_path}.{class_name}",
                    version=__version__,
                    hooks=[],
                    origin=origin,
                    loaded=False,
                    problem=f"cannot import ({error}); install attnkit[lmp]",
                )
            )
            continue
        hooks = sorted(
            attribute
            for attribute in dir(cls)
            if attribute.startswith(f"{PROJECT_NAME}_") and hasattr(getattr(cls, attribute, None), marker)
        )
        infos.append(
            PluginInfo(
                name=getattr(cls, "name", None) or class_name,
                version=__version__,
                hooks=hooks,
                origin=origin,
                loaded=False,
            )
        )
    return infos


def list_plugins() -> PluginListing:
    """Every plugin a user can use here; a broken entry point is reported, not raised."""
    manager = make_plugin_manager(strict=False)
    return PluginListing(
        loaded=describe_plugins(manager), shipped=describe_shipped_plugins(), errors=list(manager.load_errors)
    )
