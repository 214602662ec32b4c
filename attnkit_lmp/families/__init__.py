"""Model families for motion transfer: one module per family, one object per family, passed down as an object.

Each family module (:mod:`.cogvideox`, :mod:`.wan`, :mod:`.hunyuan_video`, :mod:`.ltx_video`) says which stock diffusers
pipelines it drives and implements :class:`~attnkit_lmp.families.base.Family` for them. Adding a family is
one module and one line in ``FAMILIES``.
"""

from __future__ import annotations

from ..config import LMPConfig
from .base import (
    ChannelConcatCondition,
    Family,
    FirstFrameCondition,
    ReferenceCondition,
    ReferencePrompt,
)
from .cogvideox import CogVideoXFamily
from .hunyuan_video import HunyuanVideoFamily
from .ltx_video import LTXVideoFamily
from .wan import WanFamily

FAMILIES: tuple[Family, ...] = (CogVideoXFamily(), WanFamily(), HunyuanVideoFamily(), LTXVideoFamily())


def family_of(pipe) -> tuple[str, Family] | None:
    """``(variant, family)`` of a driven pipeline (``variant`` is ``"t2v"`` or ``"i2v"``), or None."""
    for cls in type(pipe).__mro__:
        for family in FAMILIES:
            if cls.__name__ in family.pipelines:
                return family.pipelines[cls.__name__], family
    return None


def not_driven_reason(pipe) -> str | None:
    """Why a pipeline of a known family is refused (e.g. HunyuanVideo image-to-video), or None."""
    for cls in type(pipe).__mro__:
        for family in FAMILIES:
            if cls.__name__ in family.not_driven:
                return family.not_driven[cls.__name__]
    return None


def driven_pipelines() -> list[str]:
    """The class names of every pipeline some family drives."""
    return sorted(name for family in FAMILIES for name in family.pipelines)


def foreign_config_fields(family: Family, config: LMPConfig) -> dict[str, dict]:
    """Fields of ``config`` set away from their defaults that only *other* families use:
    ``{family title: {field: default}}``."""
    foreign = {}
    for other in FAMILIES:
        changed = {name: default for name, default in other.config_fields.items() if getattr(config, name) != default}
        if other.name != family.name and changed:
            foreign[other.title] = changed
    return foreign


__all__ = [
    "FAMILIES",
    "ChannelConcatCondition",
    "CogVideoXFamily",
    "Family",
    "FirstFrameCondition",
    "HunyuanVideoFamily",
    "LTXVideoFamily",
    "ReferenceCondition",
    "ReferencePrompt",
    "WanFamily",
    "driven_pipelines",
    "family_of",
    "foreign_config_fields",
    "not_driven_reason",
]
