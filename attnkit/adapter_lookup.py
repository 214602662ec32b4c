"""Finding a model's adapter: the adapter classes plugins register, and which one supports a transformer."""

from __future__ import annotations

from .adapter import Adapter
from .hook_dispatch import raising_plugin
from .errors import PluginError, UnsupportedModelError


def registered_adapters(plugin_manager) -> list[type[Adapter]]:
    """Every adapter class the plugins register, in the order ``attnkit_register_adapters`` gives them."""
    adapters: list[type[Adapter]] = []
    caller = plugin_manager.hook.attnkit_register_adapters
    try:
        caller(register=adapters.append)
    except Exception as error:
        plugin = raising_plugin(error, caller.get_hookimpls())
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
    for adapter_class in registered_adapters(plugin_manager):
        names.extend(name for name in adapter_class.pipeline_transformers if name not in names)
    return names


def find_adapter(model, plugin_manager) -> Adapter:
    """The first registered adapter that supports ``model``; a clear error if none does."""
    adapters = registered_adapters(plugin_manager)
    for adapter_class in adapters:
        if adapter_class.supports(model):
            return adapter_class(model)
    supported = sorted({name for adapter_class in adapters for name in adapter_class.model_classes})
    raise UnsupportedModelError(
        f"no attnkit adapter supports {type(model).__name__}; supported model classes: {supported}. "
        "Pass a diffusers transformer or a pipeline with .transformer, or register an adapter for it "
        "with an attnkit_register_adapters(register) hook (see docs/hooks.md)"
    )

