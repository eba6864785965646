"""Tests of the D4 symmetry helpers (numpy and torch)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tuningfork.errors import ConfigError
from tuningfork.preprocessing import (
    D4_ELEMENTS,
    d4_apply,
    d4_apply_each,
    d4_apply_torch,
    d4_compose,
    d4_element,
    d4_inverse,
    random_d4,
)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Random (bands, H, W) stack: no symmetry, so distinct elements give distinct images."""
    return np.random.default_rng(7).normal(size=(3, 6, 6)).astype(np.float32)


def test_elements_are_the_eight_distinct_symmetries(images):
    results = [d4_apply(images, element) for element in D4_ELEMENTS]
    assert len({result.tobytes() for result in results}) == 8
    np.testing.assert_array_equal(results[0], images)
    np.testing.assert_array_equal(results[d4_element(1, False)], np.rot90(images, 1, axes=(1, 2)))
    np.testing.assert_array_equal(results[d4_element(0, True)], images[..., ::-1])


@pytest.mark.parametrize(("first", "second"), list(itertools.product(D4_ELEMENTS, D4_ELEMENTS)))
def test_composition_is_closed_and_matches_applying_in_turn(images, first, second):
    composed = d4_compose(second, first)
    assert composed in D4_ELEMENTS
    np.testing.assert_array_equal(
        d4_apply(images, composed), d4_apply(d4_apply(images, first), second)
    )


@pytest.mark.parametrize("element", D4_ELEMENTS)
def test_every_element_has_an_inverse(images, element):
    inverse = d4_inverse(element)
    assert d4_compose(inverse, element) == 0 and d4_compose(element, inverse) == 0
    np.testing.assert_array_equal(d4_apply(d4_apply(images, element), inverse), images)


@pytest.mark.parametrize("element", D4_ELEMENTS)
def test_numpy_and_torch_versions_agree(element):
    batch = np.random.default_rng(element).normal(size=(2, 3, 5, 7)).astype(np.float32)
    tensor = torch.from_numpy(batch.copy())
    np.testing.assert_array_equal(d4_apply_torch(tensor, element).numpy(), d4_apply(batch, element))


def test_torch_version_keeps_gradients_and_input():
    tensor = torch.arange(16.0).reshape(1, 1, 4, 4).requires_grad_()
    before = tensor.detach().clone()
    d4_apply_torch(tensor, 6).sum().backward()
    assert torch.equal(tensor.grad, torch.ones_like(tensor))
    assert torch.equal(tensor.detach(), before)
    assert d4_apply_torch(tensor, 0).data_ptr() != tensor.data_ptr()


def test_apply_each_uses_one_element_per_item_for_numpy_and_torch():
    batch = np.random.default_rng(1).normal(size=(8, 2, 5, 5)).astype(np.float32)
    original = batch.copy()
    elements = np.array([3, 0, 7, 3, 5, 1, 6, 2])
    out = d4_apply_each(batch, elements)
    for item, element, result in zip(batch, elements, out):
        np.testing.assert_array_equal(result, d4_apply(item, int(element)))
    np.testing.assert_array_equal(batch, original)
    torch_out = d4_apply_each(torch.from_numpy(batch), elements)
    np.testing.assert_array_equal(torch_out.numpy(), out)


def test_random_draws_are_reproducible_and_cover_the_group():
    draws = random_d4(np.random.default_rng(42), size=400)
    again = random_d4(np.random.default_rng(42), size=400)
    np.testing.assert_array_equal(draws, again)
    assert set(draws.tolist()) == set(D4_ELEMENTS)
    single = random_d4(np.random.default_rng(0))
    assert isinstance(single, int) and single in D4_ELEMENTS


def test_bad_elements_and_batches_raise_config_errors(images):
    with pytest.raises(ConfigError, match="element 8 must be an integer in 0..7"):
        d4_apply(images, 8)
    with pytest.raises(ConfigError, match="element 1.5"):
        d4_inverse(1.5)
    with pytest.raises(ConfigError, match="2 elements given for a batch of 3"):
        d4_apply_each(images, [0, 1])
    with pytest.raises(ConfigError, match="square"):
        d4_apply_each(np.zeros((2, 1, 4, 6)), [0, 1])


def test_numpy_apply_does_not_modify_or_alias_input(images):
    original = images.copy()
    for element in D4_ELEMENTS:
        result = d4_apply(images, element)
        assert not np.shares_memory(result, images)
    np.testing.assert_array_equal(images, original)
