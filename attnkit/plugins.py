"""The plugin manager: built-ins, entry-point plugins, and the environment variables that filter them.

Environment variables:

``ATTNKIT_DISABLE_PLUGIN_AUTOLOAD=1``
    do not load plugins from the ``attnkit`` entry-point group (built-ins still load).
``ATTNKIT_BLOCK_PLUGINS=name1,name2``
    never register plugins with these names (entry-point names or built-in names).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

import pluggy

from . import hookspecs

PROJECT_NAME = "attnkit"
ENTRY_POINT_GROUP = "attnkit"
BLOCK_ENV = "ATTNKIT_BLOCK_PLUGINS"
AUTOLOAD_ENV = "ATTNKIT_DISABLE_PLUGIN_AUTOLOAD"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

# Built-in plugins, registered through the same manager as third-party ones: name -> module path.
BUILTIN_PLUGINS = {
    "attnkit.adapters.cogvideox": "attnkit.adapters.cogvideox",
    "attnkit.adapters.hunyuan_video": "attnkit.adapters.hunyuan_video",
    "attnkit.adapters.ltx_video": "attnkit.adapters.ltx_video",
    "attnkit.adapters.wan": "attnkit.adapters.wan",
}


def blocked_plugin_names() -> set[str]:
    return {name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",") if name.strip()}


def autoload_disabled() -> bool:
    return os.environ.get(AUTOLOAD_ENV, "").strip().lower() in {"1", "true", "yes"}


def make_plugin_manager(plugins=()) -> pluggy.PluginManager:
    """A fresh manager with the specs, the built-ins, entry-point plugins (unless disabled) and ``plugins``.

    A new manager per session keeps nothing global behind. ``check_pending`` turns a misspelt hook
    implementation into an error here instead of a silently ignored function.
    """
    manager = pluggy.PluginManager(PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for name in blocked_plugin_names():
        manager.set_blocked(name)
    for name, module_path in BUILTIN_PLUGINS.items():
        if not manager.is_blocked(name):
            manager.register(importlib.import_module(module_path), name=name)
    if not autoload_disabled():
        manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in plugins:
        name = plugin_name(plugin)
        if manager.is_blocked(name):
            continue
        if manager.is_registered(plugin):
            raise ValueError(f"plugin {name!r} was passed twice; pass each plugin object once")
        manager.register(plugin, name=_unique_name(manager, name))
    manager.check_pending()
    return manager


def plugin_name(plugin) -> str:
    """A readable name: a module's path, or a plugin object's ``name`` attribute or class name."""
    if isinstance(plugin, type(os)):
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


def describe_plugins(manager: pluggy.PluginManager) -> list[PluginInfo]:
    """Name, version (of the distribution that ships it, if any) and implemented hooks of each plugin."""
    distributions = {id(plugin): dist for plugin, dist in manager.list_plugin_distinfo()}
    infos = []
    for name, plugin in manager.list_name_plugin():
        if plugin is None:
            continue
        hooks = sorted(caller.name for caller in manager.get_hookcallers(plugin) or [])
        dist = distributions.get(id(plugin))
        version = dist.version if dist is not None else _builtin_version(name)
        infos.append(PluginInfo(name=name, version=version, hooks=hooks))
    return infos


def _builtin_version(name: str) -> str | None:
    if name in BUILTIN_PLUGINS:
        from . import __version__

        return __version__
    return None
