"""Attention masks: a model's boolean or additive mask as the additive score bias, and which keys it hides.

Models hand their attention a mask in one of two forms: boolean (True = the query may attend to the key;
HunyuanVideo) or additive (added to the scores; LTX-Video's -10000 on text padding). The kernel, the probe
and plugins that need to know which keys a row may see all read it through these two functions.
"""

from __future__ import annotations

import torch

# Additive values at or below this hide a key: -inf (a boolean mask's masked keys) or a large finite bias
# (LTX-Video: -10000, whose softmax weight underflows to exactly 0 in float32).
MASKED_BIAS = -1e4


def as_4d(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` with leading dimensions of 1 added up to ``(B, heads, Nq, Nk)``; a view, never a copy."""
    while mask.dim() < 4:
        mask = mask.unsqueeze(0)
    return mask


def additive_bias(mask: torch.Tensor, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """``mask`` as a 4-D additive bias in ``dtype``: a boolean mask gives 0 where a key is visible and -inf
    where it is hidden (made on ``device``, by default the mask's); an additive mask is only cast."""
    mask = as_4d(mask)
    if mask.dtype == torch.bool:
        device = mask.device if device is None else device
        return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, float("-inf"))
    return mask.to(dtype)


def visible_keys(mask: torch.Tensor) -> torch.Tensor:
    """A 4-D boolean of where ``mask`` lets a query see a key: a boolean mask as it is, an additive one
    wherever its bias is above :data:`MASKED_BIAS`."""
    mask = as_4d(mask)
    return mask if mask.dtype == torch.bool else mask > MASKED_BIAS
