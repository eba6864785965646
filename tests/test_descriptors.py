"""Tests of tuningfork.models.nets.descriptors: the default clustering encoder."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from scipy.stats import spearmanr

from tuningfork.clustering.encoders import rotation_consistency
from tuningfork.clustering.trend import SnrTrend
from tuningfork.clustering.voting import score_groups
from tuningfork.errors import ConfigError, FeatureError, ImageShapeError
from tuningfork.models import load_encoder
from tuningfork.models.nets.descriptors import (
    MorphologyEncoder,
    describe_morphology,
)
from tuningfork.morphometry import measure_morphology
from tuningfork.simulation import simulate

CLASSES = ("elliptical", "edge_on", "merger")


@pytest.fixture(scope="module")
def galaxies():
    sample = simulate(36, size=48, snr=(100.0, 300.0), seed=11, workers=1, classes=CLASSES)
    return sample.images, np.asarray(sample.catalog["label"]).astype(str)


def test_descriptors_ignore_rotation_mirroring_and_intensity_scale(galaxies):
    images, _ = galaxies
    original = describe_morphology(images[:6])
    turned = describe_morphology(np.rot90(images[:6], k=1, axes=(-2, -1)))
    mirrored = describe_morphology(images[:6, :, :, ::-1])
    rescaled = describe_morphology(images[:6] * 7.0 + 3.0)
    assert original.values.shape == (6, len(original.names))
    np.testing.assert_allclose(rescaled.values, original.values, rtol=1e-3, atol=1e-4)
    # The S/N does not depend on the units either.
    np.testing.assert_allclose(rescaled.log_snr, original.log_snr, atol=1e-6)
    angular = np.array([name.startswith(("mode", "winding")) for name in original.names])
    for other in (turned, mirrored):
        np.testing.assert_allclose(
            other.values[:, ~angular], original.values[:, ~angular], rtol=1e-3, atol=1e-3
        )
        # The polar grid samples the turned pixel noise at other points.
        np.testing.assert_allclose(other.values[:, angular], original.values[:, angular], atol=0.03)


def test_input_is_not_modified_and_polar_step_adds_angular_modes(galaxies):
    images, _ = galaxies
    before = images[:3].copy()
    with_modes = describe_morphology(images[:3], angular=True)
    without = describe_morphology(images[:3], angular=False)
    np.testing.assert_array_equal(images[:3], before)
    added = set(with_modes.names) - set(without.names)
    assert {"mode2_ring1", "winding2_ring2"} <= added
    assert all(name.startswith(("mode", "winding")) for name in added)
    np.testing.assert_array_equal(with_modes.values[:, : len(without.names)], without.values)


def test_descriptors_group_galaxies_by_class(galaxies):
    from sklearn.cluster import KMeans

    images, labels = galaxies
    encoder = MorphologyEncoder()
    described = encoder.descriptors(images)
    assert encoder.describe()["encoder"] == "morphology"
    features = SnrTrend.fit(described.values, described.log_snr).transform(described.values, described.log_snr)
    groups = KMeans(3, n_init=5, random_state=0).fit_predict(features)
    assert score_groups(groups, labels)["purity"] > 0.8
    ellipticity = described.values[:, described.names.index("ellipticity")]
    assert ellipticity[labels == "edge_on"].min() > np.median(ellipticity[labels == "elliptical"])


def test_colour_gradients_for_multi_band_images():
    sample = simulate(4, size=48, bands=("g", "r", "i"), snr=(200.0, 300.0), seed=2, workers=1)
    described = describe_morphology(sample.images)
    assert {"colour_gradient_0", "colour_gradient_1"} <= set(described.names)
    # Scaling one band alone (as per-band min-max normalisation does) changes nothing.
    scaled = sample.images * np.array([1.0, 5.0, 0.2], dtype=np.float32)[None, :, None, None]
    np.testing.assert_allclose(
        describe_morphology(scaled).values, described.values, rtol=1e-3, atol=1e-3
    )


def test_fast_statistics_follow_statmorph():
    indices = (0.5, 1.0, 2.0, 3.0, 4.0)
    images = []
    for n in indices:
        profile = galsim.Sersic(n=n, half_light_radius=5.0, flux=2e4, trunc=40.0)
        image = profile.shear(q=0.7, beta=0.4 * galsim.radians).drawImage(nx=64, ny=64, scale=1.0)
        images.append(image.array + np.random.default_rng(1).normal(0, 0.3, image.array.shape))
    stack = np.asarray(images, dtype=np.float32)[:, None]
    described = describe_morphology(stack)
    reference = [measure_morphology(image[0]) for image in stack]
    for quantity in ("concentration", "gini"):
        ours = described.values[:, described.names.index(quantity)]
        theirs = [values[quantity] for values in reference]
        assert spearmanr(ours, theirs)[0] > 0.85, quantity
    # Same definition of C; statmorph's larger total aperture matters only for steep profiles.
    concentration = described.values[:3, described.names.index("concentration")]
    expected = [values["concentration"] for values in reference[:3]]
    np.testing.assert_allclose(concentration, expected, atol=0.3)


def test_snr_trend_is_removed_and_columns_standardised():
    rng = np.random.default_rng(0)
    log_snr = rng.uniform(np.log(10), np.log(300), 400)
    morphology = rng.normal(size=(400, 2))
    biased = morphology + np.stack([2 * log_snr, (log_snr - 4) ** 2], axis=1)
    normalised = SnrTrend.fit(biased, log_snr, degree=2).transform(biased, log_snr)
    assert np.allclose(normalised.std(axis=0), 1.0, atol=1e-5)
    assert abs(np.corrcoef(normalised[:, 0], log_snr)[0, 1]) < 0.05
    assert np.corrcoef(normalised[:, 1], morphology[:, 1])[0, 1] > 0.95
    only_scaled = SnrTrend.fit(biased, log_snr, degree=0).transform(biased, log_snr)
    assert np.corrcoef(only_scaled[:, 0], log_snr)[0, 1] > 0.5


def test_bad_input_is_a_clear_error(galaxies):
    images, _ = galaxies
    with pytest.raises(ImageShapeError, match="expected a \\(n, bands, H, W\\) stack"):
        describe_morphology(images[0])
    with_nan = images[:2].copy()
    with_nan[0, 0, 5, 5] = np.nan
    with pytest.raises(ImageShapeError, match="NaN or inf"):
        describe_morphology(with_nan)
    with pytest.raises(ImageShapeError, match="too small"):
        describe_morphology(np.zeros((2, 1, 8, 8), np.float32))
    with pytest.raises(ConfigError, match="n_angles"):
        describe_morphology(images[:2], n_angles=6, n_modes=4)
    with pytest.raises(FeatureError, match="galaxies.csv: \\(3,\\) S/N values"):
        SnrTrend.fit(np.zeros((4, 2)), np.zeros(3), name="galaxies.csv")
    assert isinstance(load_encoder("morphology"), MorphologyEncoder)


def test_rotated_copies_keep_their_descriptors(galaxies):
    images, _ = galaxies
    scores = rotation_consistency(
        MorphologyEncoder(angular=False), images[:8], angles_deg=(30.0, 90.0), standardise=True
    )
    assert scores["angle_90"] > 0.99 and scores["mean"] > 0.9
