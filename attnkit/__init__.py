"""attnkit: read and rewrite the attention of diffusers video transformers through pluggy plugins."""

__version__ = "0.1.0"

from .call import AttentionCall
from .errors import (
    AlreadyAttachedError,
    AttnkitError,
    NonFiniteError,
    PluginError,
    UnsupportedModelError,
    UnsupportedRoleError,
)
from .kernel import ExtraKV
from .layout import TokenLayout
from .plugins import hookimpl
from .session import ModelInputs, Session, attach
from .where import Where

__all__ = [
    "AlreadyAttachedError",
    "AttentionCall",
    "AttnkitError",
    "ExtraKV",
    "ModelInputs",
    "NonFiniteError",
    "PluginError",
    "Session",
    "TokenLayout",
    "UnsupportedModelError",
    "UnsupportedRoleError",
    "Where",
    "attach",
    "hookimpl",
]
