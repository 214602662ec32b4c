"""Attention maps you can afford: a recorder plugin under a memory budget, and the record file it saves.

``AttentionRecorder`` keeps chosen tokens' maps per (branch, step, layer) as the run streams;
``AttentionRecord`` is what it produces; ``save_record`` / ``load_record`` write and read it as one
safetensors file with JSON metadata. See docs/attention-maps.md.
"""

from .file import RecordFileError, load_record, save_record
from .maps import AttentionRecord, RecordLookupError
from .recorder import (
    AttentionRecorder,
    MemoryBudgetError,
    RecordingEstimate,
    estimate_recording_bytes,
    format_bytes,
)

__all__ = [
    "AttentionRecord",
    "AttentionRecorder",
    "MemoryBudgetError",
    "RecordFileError",
    "RecordLookupError",
    "RecordingEstimate",
    "estimate_recording_bytes",
    "format_bytes",
    "load_record",
    "save_record",
]
