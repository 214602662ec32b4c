"""Which model family drives a pipeline, under the name the toy measurement imports it by.

The families themselves live in :mod:`attnkit_lmp.families`; new code should call
:func:`attnkit_lmp.families.family_of` directly.
"""

from __future__ import annotations

from .families import family_of


def pipeline_entry(pipe) -> tuple[str, str] | None:
    """``(variant, family name)`` of a driven pipeline, or None."""
    entry = family_of(pipe)
    return None if entry is None else (entry[0], entry[1].name)
