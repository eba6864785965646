"""Tests of the polar transform and its inverse."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from scipy.ndimage import rotate

from tuningfork.errors import ConfigError, ImageShapeError
from tuningfork.preprocessing import extension_columns, from_polar, to_polar


@pytest.fixture(scope="module")
def galaxy() -> np.ndarray:
    """A smooth two-band GalSim galaxy with an off-centre clump: no rotation symmetry."""
    disc = galsim.Sersic(n=1.0, half_light_radius=7.0).shear(q=0.5, beta=20 * galsim.degrees)
    profile = disc + galsim.Gaussian(sigma=2.5, flux=0.3).shift(9.0, 4.0)
    plane = profile.drawImage(nx=65, ny=65, scale=1.0).array
    return np.stack([plane, 2.0 * plane]).astype(np.float32)


def test_shape_and_extension_repeat_the_first_angles(galaxy):
    polar = to_polar(galaxy, n_radii=24, n_angles=48, extension=0.25)
    assert extension_columns(48, 0.25) == 12
    assert polar.shape == (2, 24, 60) and polar.dtype == np.float32
    np.testing.assert_array_equal(polar[..., 48:], polar[..., :12])


def test_round_trip_recovers_smooth_galaxy_away_from_centre(galaxy):
    polar = to_polar(galaxy, n_radii=64, n_angles=256, extension=0.3)
    back = from_polar(polar, galaxy.shape[-2:], n_angles=256)
    assert back.shape == galaxy.shape
    radius = np.hypot(*(np.indices((65, 65)) - 32.0))
    ring = (radius > 3) & (radius < 28)
    error = np.abs(back[:, ring] - galaxy[:, ring]).max(axis=1)
    assert np.all(error < 0.02 * galaxy.max(axis=(1, 2)))
    assert np.isnan(back[:, radius > 32.5]).all()


def test_quarter_turn_becomes_exact_circular_shift(galaxy):
    polar = to_polar(galaxy, n_radii=16, n_angles=64)
    turned = to_polar(np.rot90(galaxy, axes=(-2, -1)), n_radii=16, n_angles=64)
    np.testing.assert_allclose(turned, np.roll(polar, -16, axis=-1), atol=1e-6)


def test_arbitrary_rotation_becomes_a_shift_along_angle(galaxy):
    n_angles = 72
    polar = to_polar(galaxy[0], n_radii=16, n_angles=n_angles)
    # scipy rotates counter-clockwise on screen, i.e. from +x towards -y (row).
    rotated = rotate(galaxy[0], 50.0, reshape=False, order=3)
    rotated_polar = to_polar(rotated, n_radii=16, n_angles=n_angles)
    errors = [
        np.abs(np.roll(polar, shift, axis=-1) - rotated_polar).mean() for shift in range(n_angles)
    ]
    assert int(np.argmin(errors)) == n_angles - 10  # 50 degrees = 10 columns of 5 degrees
    assert min(errors) < 0.1 * np.median(errors)


def test_input_is_not_modified_and_outputs_are_new(galaxy):
    original = galaxy.copy()
    polar = to_polar(galaxy, 8, 16, extension=0.5)
    polar_copy = polar.copy()
    from_polar(polar, (65, 65), n_angles=16)
    np.testing.assert_array_equal(galaxy, original)
    np.testing.assert_array_equal(polar, polar_copy)


def test_bad_grid_and_shapes_raise_clear_errors(galaxy):
    with pytest.raises(ConfigError, match="n_radii"):
        to_polar(galaxy, n_radii=0, n_angles=16)
    with pytest.raises(ConfigError, match="extension 1.5"):
        to_polar(galaxy, n_radii=8, n_angles=16, extension=1.5)
    with pytest.raises(ImageShapeError, match="polar image: n_angles 40"):
        from_polar(np.zeros((8, 20), np.float32), (32, 32), n_angles=40)
    with pytest.raises(ImageShapeError, match="image: expected at least 2 dimensions"):
        to_polar(np.zeros(10), 4, 4)
