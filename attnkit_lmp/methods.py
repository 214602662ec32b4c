"""The methods LMP is compared with, defined once: the backbone, LMP, and LMP without one of its modules.

Table 1 of the paper compares the backbone, LMP and LMP without one of its modules. Each method here is
either the plain pipeline call (``baseline``: the target prompt alone, with the same initial noise LMP
starts from) or LMP with some :class:`~attnkit_lmp.config.LMPConfig` fields changed::

    METHODS["lmp-no-fbdm"].config_changes  # {"enable_fbdm": False}

The evaluation sweep (``attnkit-lmp eval --methods``) and the toy measurement (``attnkit-lmp toy measure
--variants``) both run the methods of this table. The toy measurement names them with underscores
(:attr:`Method.variant`, e.g. ``lmp_no_fbdm``), the keys of its reports. Add a method by adding an entry to
``METHODS``; its name becomes a row of both tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Method:
    """One row of the table: a name, how it generates, and what it changes in the LMP config."""

    name: str
    kind: Literal["plain", "lmp"]
    """``plain``: the unmodified pipeline; ``lmp``: ``motion_transfer`` with ``config_changes`` applied."""
    description: str
    config_changes: dict[str, Any] = field(default_factory=dict)

    @property
    def variant(self) -> str:
        """The method's name in the toy measurement (its ``--variants`` and report keys): ``lmp_no_fbdm``."""
        return self.name.replace("-", "_")

    def config(self, base):
        """``base`` (an :class:`~attnkit_lmp.config.LMPConfig`) with this method's changes, validated."""
        from .config import LMPConfig

        return LMPConfig.from_dict({**base.to_dict(), **self.config_changes}).validate()


METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        Method("baseline", "plain", "the backbone alone: the target prompt, the same seed and initial noise"),
        Method("lmp", "lmp", "LMP with FBDM, RMTM and ASM"),
        Method(
            "lmp-no-fbdm",
            "lmp",
            "LMP without FBDM (RMTM attends to all reference tokens)",
            {"enable_fbdm": False},
        ),
        Method("lmp-no-asm", "lmp", "LMP without ASM (no appearance suppression)", {"enable_asm": False}),
        Method(
            "lmp-no-rmtm",
            "lmp",
            "LMP without RMTM (no reference keys/values for the target)",
            {"enable_rmtm": False},
        ),
    )
}

DEFAULT_METHODS: tuple[str, ...] = ("baseline", "lmp", "lmp-no-fbdm", "lmp-no-asm")

# The same methods by their toy-measurement names.
METHODS_BY_VARIANT: dict[str, Method] = {method.variant: method for method in METHODS.values()}
DEFAULT_VARIANTS: tuple[str, ...] = tuple(METHODS[name].variant for name in DEFAULT_METHODS)


def resolve_methods(names: Sequence[str]) -> list[Method]:
    """The methods named, in the order given; an unknown or repeated name is an error listing the known ones."""
    names = [name.strip() for name in names if name.strip()]
    if not names:
        raise ValueError(f"no methods given; choose some of {', '.join(METHODS)}")
    unknown = [name for name in names if name not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known methods: {', '.join(METHODS)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"method(s) {repeated} given more than once in --methods; list each method once")
    return [METHODS[name] for name in names]
