"""Masks: a boolean or additive model mask as the additive bias the kernel and the probe use, and its visible keys."""

from __future__ import annotations

import torch

from attnkit.masks import additive_bias, visible_keys


def test_a_boolean_mask_is_zero_where_visible_and_minus_infinity_where_hidden_in_four_dimensions():
    mask = torch.tensor([[True, False, True]])
    bias = additive_bias(mask, torch.float16)
    assert bias.shape == (1, 1, 1, 3) and bias.dtype == torch.float16
    assert bias.flatten().tolist() == [0.0, float("-inf"), 0.0]


def test_an_additive_mask_is_only_cast_and_given_four_dimensions():
    mask = torch.tensor([[0.0, -10000.0, -0.5]], dtype=torch.float64)
    bias = additive_bias(mask, torch.float32)
    assert bias.shape == (1, 1, 1, 3) and bias.dtype == torch.float32
    assert torch.equal(bias.flatten(), mask.flatten().float())


def test_visible_keys_of_an_additive_mask_hide_minus_infinity_and_minus_ten_thousand_only():
    mask = torch.tensor([0.0, -10000.0, float("-inf"), -5.0])
    assert visible_keys(mask).flatten().tolist() == [True, False, False, True]


def test_visible_keys_of_a_boolean_mask_are_the_mask():
    mask = torch.tensor([[[[True, False]]]])
    assert visible_keys(mask) is mask
