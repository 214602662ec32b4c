"""Exceptions attnkit raises, each saying what went wrong and how to fix it."""


class AttnkitError(Exception):
    """Base class of attnkit's own errors."""


class UnsupportedModelError(AttnkitError, TypeError):
    """No registered adapter handles the model passed to ``attach``."""


class PluginError(AttnkitError):
    """A plugin's hook raised or returned something the session cannot use.

    ``plugin``, ``hook``, ``layer`` and ``step`` say where; the original exception is ``__cause__``.
    """

    def __init__(self, message: str, *, plugin: str, hook: str, layer: str | None = None, step: int | None = None):
        super().__init__(message)
        self.plugin = plugin
        self.hook = hook
        self.layer = layer
        self.step = step


class UnsupportedRoleError(PluginError):
    """A plugin declares ``attnkit_roles`` that the model's attention calls do not have."""


class AlreadyAttachedError(AttnkitError, RuntimeError):
    """The model already has an active attnkit session."""


class NonFiniteError(PluginError, FloatingPointError):
    """With ``attach(..., check_finite=True)``: a tensor went inf or NaN.

    ``plugin`` and ``hook`` name the plugin call whose result was the first non-finite one; where no plugin
    produced it (the model's own layers, or the pipeline between steps) ``plugin`` is None and the message
    names the last plugin that changed something before it, if any. ``layer`` and ``step`` say where.
    """
