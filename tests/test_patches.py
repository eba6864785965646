"""Patch ordering and the image <-> patch-sequence round trip."""

import numpy as np
import pytest
import torch

from tuningfork.errors import ConfigError
from tuningfork.models.patches import image_to_patches, patch_order, patches_to_image


@pytest.mark.parametrize("rows, cols", [(4, 4), (5, 5), (3, 6), (1, 1)])
def test_order_is_a_permutation(rows, cols):
    order = patch_order(rows, cols)
    assert sorted(order.tolist()) == list(range(rows * cols))


def test_spiral_starts_at_centre_and_moves_outwards():
    order = patch_order(5, 5)
    rows, cols = np.divmod(order, 5)
    ring = np.maximum(np.abs(rows - 2), np.abs(cols - 2))
    assert order[0] == 12  # the centre patch of a 5 x 5 grid
    assert np.all(np.diff(ring) >= 0)
    # Consecutive patches of a spiral touch each other (8-connectivity).
    steps = np.maximum(np.abs(np.diff(rows)), np.abs(np.diff(cols)))
    assert steps.max() == 1


def test_raster_order_is_identity():
    assert patch_order(3, 4, "raster").tolist() == list(range(12))


@pytest.mark.parametrize("order", ["spiral", "raster"])
def test_round_trip_restores_the_image(order):
    images = torch.randn(2, 3, 24, 16)
    original = images.clone()
    patches = image_to_patches(images, 8, order)
    assert patches.shape == (2, 6, 3 * 64)
    restored = patches_to_image(patches, (3, 24, 16), 8, order)
    assert torch.equal(restored, original)
    assert torch.equal(images, original)  # input untouched


def test_first_spiral_patch_holds_the_central_pixels():
    image = np.zeros((1, 1, 12, 12), dtype=np.float32)
    image[0, 0, 4:8, 4:8] = 1.0
    patches = image_to_patches(image, 4)
    assert patches[0, 0].sum() == 16
    assert patches[0, 1:].sum() == 0


def test_patch_size_that_does_not_divide_the_image_is_a_clear_error():
    with pytest.raises(ConfigError, match="does not divide the image size 10 x 10"):
        image_to_patches(torch.zeros(1, 1, 10, 10), 4)


def test_unknown_order_is_a_clear_error():
    with pytest.raises(ConfigError, match="patch order 'zigzag'"):
        patch_order(2, 2, "zigzag")


def test_wrong_patch_tensor_shape_is_a_clear_error():
    with pytest.raises(ConfigError, match="does not fit images"):
        patches_to_image(torch.zeros(1, 3, 16), (1, 8, 8), 4)
