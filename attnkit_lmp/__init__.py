"""attnkit_lmp: the LMP zero-shot motion-transfer method as attnkit plugins, with its CLI and demo.

The pieces, one module each: :class:`FBDM` (reference foreground mask), :class:`RMTM` (extended
attention to the reference foreground), :class:`ASM` (appearance separation), :class:`ReferenceBranch`
(the reference rows, eq. 10), :class:`LMPConfig`, video reading/writing, and :func:`motion_transfer`.
"""

from .asm import ASM
from .config import LMPConfig, LMPConfigError
from .fbdm import FBDM
from .reference import ReferenceBranch
from .rmtm import RMTM
from .transfer import MotionTransferError, MotionTransferResult, UnsupportedPipelineError, motion_transfer
from .video_io import VideoReadError, read_video, write_video

__all__ = [
    "ASM",
    "FBDM",
    "LMPConfig",
    "LMPConfigError",
    "MotionTransferError",
    "MotionTransferResult",
    "RMTM",
    "ReferenceBranch",
    "UnsupportedPipelineError",
    "VideoReadError",
    "motion_transfer",
    "read_video",
    "write_video",
]
