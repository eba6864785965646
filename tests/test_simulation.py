"""Tests of tuningfork.simulation: GalSim-rendered labelled galaxies."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from scipy import ndimage

from tuningfork.errors import ConfigError
from tuningfork.simulation import SIMULATED_CLASSES, SimulatedSample, simulate, write_sample
from tuningfork.simulation.classes import composite_half_light_radius

PER_CLASS = 6


@pytest.fixture(scope="module")
def sample() -> SimulatedSample:
    """Six noiseless-and-noisy galaxies of each class in three bands, at high S/N."""
    return simulate(
        PER_CLASS * len(SIMULATED_CLASSES),
        bands=("g", "r", "i"),
        snr=200.0,
        seed=7,
        workers=1,
        return_noiseless=True,
    )


def _of_class(sample: SimulatedSample, label: str) -> np.ndarray:
    return np.flatnonzero(sample.catalog["label"] == label)


def _centre(sample: SimulatedSample, index: int) -> np.ndarray:
    """Pixel (x, y) of the galaxy centre, from the true offset."""
    half = (sample.images.shape[-1] - 1) / 2
    return np.array(
        [half + sample.catalog["x_offset_pix"][index], half + sample.catalog["y_offset_pix"][index]]
    )


def _second_moments(image: np.ndarray) -> tuple[float, float]:
    """Axis ratio and RMS size (pixels) of a 2-D light distribution from its second moments."""
    y, x = np.indices(image.shape)
    weights = np.clip(image, 0, None)
    total = weights.sum()
    xc, yc = (weights * x).sum() / total, (weights * y).sum() / total
    cxx = (weights * (x - xc) ** 2).sum() / total
    cyy = (weights * (y - yc) ** 2).sum() / total
    cxy = (weights * (x - xc) * (y - yc)).sum() / total
    low, high = np.linalg.eigvalsh([[cxx, cxy], [cxy, cyy]])
    return float(np.sqrt(low / high)), float(np.sqrt(low + high))


def _central_light_fraction(image: np.ndarray, centre: np.ndarray, radius: float = 2.0) -> float:
    y, x = np.indices(image.shape)
    inside = np.hypot(x - centre[0], y - centre[1]) <= radius
    return float(image[inside].sum() / image.sum())


def _mirror_asymmetry(image: np.ndarray, centre: np.ndarray) -> float:
    """Smallest residual between the image and its mirror image about any axis through the centre.

    A light distribution with a symmetry axis (an ellipse) scores ~0; a chiral
    one (spiral arms) cannot be mirrored onto itself.
    """
    middle = (np.array(image.shape[::-1]) - 1) / 2
    centred = ndimage.shift(image, (middle - centre)[::-1], order=3)
    residuals = []
    for angle in np.arange(0.0, 180.0, 5.0):
        aligned = ndimage.rotate(centred, angle, reshape=False, order=3)
        residuals.append(np.abs(aligned - aligned[::-1]).sum() / np.abs(aligned).sum())
    return float(min(residuals))


def test_shapes_dtypes_bands_and_catalog(sample):
    n = PER_CLASS * len(SIMULATED_CLASSES)
    assert sample.images.shape == (n, 3, 64, 64)
    assert sample.images.dtype == np.float32
    assert sample.noiseless.shape == sample.images.shape and sample.noiseless.dtype == np.float32
    assert sample.bands == ("g", "r", "i") and len(sample) == n
    catalog = sample.catalog
    for column in (
        "id",
        "label",
        "label_index",
        "flux",
        "flux_g",
        "flux_r",
        "flux_i",
        "half_light_radius_arcsec",
        "half_light_radius_pix",
        "sersic_n",
        "bulge_to_total",
        "q",
        "position_angle_deg",
        "n_arms",
        "pitch_angle_deg",
        "bar_length_arcsec",
        "dust_lane",
        "companion_separation_arcsec",
        "snr",
        "psf_fwhm_arcsec",
    ):
        assert column in catalog.colnames, column
    assert len(set(catalog["id"])) == n
    assert {
        label: int(np.sum(catalog["label"] == label)) for label in SIMULATED_CLASSES
    } == dict.fromkeys(SIMULATED_CLASSES, PER_CLASS)
    assert all(
        sample.class_names[i] == label for i, label in zip(catalog["label_index"], catalog["label"])
    )
    np.testing.assert_allclose(
        catalog["half_light_radius_pix"], catalog["half_light_radius_arcsec"] / 0.2
    )


def test_parameters_that_do_not_apply_are_nan(sample):
    catalog = sample.catalog
    ellipticals, spirals, barred = (
        _of_class(sample, c) for c in ("elliptical", "spiral", "barred_spiral")
    )
    mergers, stars = _of_class(sample, "merger"), _of_class(sample, "star")
    assert np.all(np.isnan(catalog["n_arms"][ellipticals])) and np.all(
        catalog["n_arms"][spirals] >= 2
    )
    assert np.all(np.isfinite(catalog["sersic_n"][ellipticals]))
    assert np.all(np.isnan(catalog["bar_length_arcsec"][spirals]))
    assert np.all(catalog["bar_length_arcsec"][barred] > 0)
    assert np.all(catalog["companion_separation_arcsec"][mergers] > 0)
    assert np.all(np.isnan(catalog["companion_separation_arcsec"][ellipticals]))
    assert np.all(np.isnan(catalog["q"][stars]))
    for column in catalog.colnames:
        if catalog[column].dtype.kind == "f":
            assert not np.any(catalog[column] == -99), column


def test_every_class_renders_finite_images(sample):
    assert np.all(np.isfinite(sample.images)) and np.all(np.isfinite(sample.noiseless))
    for label in SIMULATED_CLASSES:
        for index in _of_class(sample, label):
            assert sample.noiseless[index].sum() > 0, label
            # The light must be in the stamp, not wrapped around or lost.
            assert sample.noiseless[index, 1].max() == pytest.approx(
                sample.noiseless[index, 1, 8:-8, 8:-8].max()
            ), label


def test_same_seed_same_sample_whatever_the_workers():
    one = simulate(10, size=32, seed=3, workers=1)
    two = simulate(10, size=32, seed=3, workers=2)
    np.testing.assert_array_equal(one.images, two.images)
    assert list(one.catalog["label"]) == list(two.catalog["label"])
    np.testing.assert_array_equal(one.catalog["flux"], two.catalog["flux"])
    other = simulate(10, size=32, seed=4, workers=1)
    assert not np.array_equal(one.images, other.images)


def test_ellipticals_are_more_concentrated_than_disks(sample):
    def central(label):
        return np.median(
            [
                _central_light_fraction(sample.noiseless[i, 1], _centre(sample, i))
                for i in _of_class(sample, label)
            ]
        )

    assert central("elliptical") > 1.5 * central("spiral")
    assert central("elliptical") > central("irregular")


def test_edge_on_disks_are_flat(sample):
    edge_on = [_second_moments(sample.noiseless[i, 1])[0] for i in _of_class(sample, "edge_on")]
    ellipticals = [
        _second_moments(sample.noiseless[i, 1])[0] for i in _of_class(sample, "elliptical")
    ]
    assert max(edge_on) < 0.5
    assert np.median(edge_on) < 0.6 * np.median(ellipticals)


def test_stars_are_more_compact_than_galaxies(sample):
    stars = [_second_moments(sample.noiseless[i, 1])[1] for i in _of_class(sample, "star")]
    galaxies = [
        _second_moments(sample.noiseless[i, 1])[1]
        for i in np.flatnonzero(sample.catalog["label"] != "star")
    ]
    assert max(stars) < np.median(galaxies)
    assert np.all(sample.catalog["half_light_radius_arcsec"][_of_class(sample, "star")] == 0)


def test_spiral_arms_break_the_symmetry_of_ellipticals(sample):
    spirals = [
        _mirror_asymmetry(sample.noiseless[i, 1], _centre(sample, i))
        for i in _of_class(sample, "spiral")
    ]
    ellipticals = [
        _mirror_asymmetry(sample.noiseless[i, 1], _centre(sample, i))
        for i in _of_class(sample, "elliptical")
    ]
    assert np.median(spirals) > 3 * np.median(ellipticals)


def test_spirals_are_bluer_than_ellipticals(sample):
    def g_over_r(label):
        rows = _of_class(sample, label)
        measured = sample.noiseless[rows, 0].sum(axis=(1, 2)) / sample.noiseless[rows, 1].sum(
            axis=(1, 2)
        )
        catalogued = sample.catalog["flux_g"][rows] / sample.catalog["flux_r"][rows]
        np.testing.assert_allclose(measured, catalogued, rtol=0.03)
        return np.median(measured)

    assert g_over_r("spiral") > 1.15 * g_over_r("elliptical")


def test_requested_snr_is_reached(sample):
    signal = np.sqrt((sample.noiseless.astype(np.float64) ** 2).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(signal / sample.catalog["noise_sigma"], 200.0, rtol=1e-4)
    np.testing.assert_allclose(sample.catalog["snr"], 200.0)


@pytest.mark.parametrize(
    ("noise", "level", "sigma"), [("gaussian", 2.0, 2.0), ("cosmos", 0.5, 0.5)]
)
def test_noise_level_matches_request(noise, level, sigma):
    sims = simulate(
        6, size=48, noise=noise, noise_level=level, seed=1, workers=1, return_noiseless=True
    )
    assert np.std(sims.images - sims.noiseless) == pytest.approx(sigma, rel=0.05)
    np.testing.assert_allclose(sims.catalog["noise_sigma"], sigma)


def test_poisson_noise_follows_sky_plus_source():
    sky = 100.0
    sims = simulate(
        4, size=48, noise="poisson", noise_level=sky, seed=2, workers=1, return_noiseless=True
    )
    residual = sims.images - sims.noiseless
    assert np.std(residual[..., :8, :8]) == pytest.approx(np.sqrt(sky), rel=0.1)
    expected_variance = np.clip(sims.noiseless, 0, None) + sky
    assert np.mean(residual**2 / expected_variance) == pytest.approx(1.0, rel=0.05)


def test_cosmos_noise_is_correlated_at_hst_resolution():
    def neighbour_correlation(noise):
        sims = simulate(
            3,
            size=64,
            pixel_scale=0.03,
            psf_fwhm=0.1,
            noise=noise,
            seed=5,
            workers=1,
            return_noiseless=True,
        )
        residual = (sims.images - sims.noiseless)[:, 0]
        return np.corrcoef(residual[:, :, :-1].ravel(), residual[:, :, 1:].ravel())[0, 1]

    assert neighbour_correlation("cosmos") > 0.1
    assert abs(neighbour_correlation("gaussian")) < 0.05


def test_psf_width_sets_star_size():
    narrow = simulate(
        3, classes=["star"], psf="kolmogorov", psf_fwhm=0.5, noise="none", seed=1, workers=1
    )
    wide = simulate(
        3, classes=["star"], psf="kolmogorov", psf_fwhm=(1.0, 1.2), noise="none", seed=1, workers=1
    )
    assert np.all(
        (wide.catalog["psf_fwhm_arcsec"] >= 1.0) & (wide.catalog["psf_fwhm_arcsec"] <= 1.2)
    )
    narrow_sizes = [_second_moments(image[0])[1] for image in narrow.images]
    wide_sizes = [_second_moments(image[0])[1] for image in wide.images]
    assert min(wide_sizes) > 1.5 * max(narrow_sizes)


def test_composite_half_light_radius_matches_galsim():
    bulge = galsim.Sersic(n=4, half_light_radius=0.3, trunc=8 * 0.3, flux_untruncated=False)
    disk = galsim.Exponential(half_light_radius=1.0)
    bulge_plus_disk = galsim.Add([bulge.withFlux(0.4), disk.withFlux(0.6)])
    # Sample the surface brightness finely and read off the radius enclosing half the light.
    scale = 0.015
    pixels = bulge_plus_disk.drawImage(nx=800, ny=800, scale=scale, method="no_pixel").array
    y, x = np.indices(pixels.shape)
    radius = np.hypot(x - 399.5, y - 399.5).ravel() * scale
    order = np.argsort(radius)
    enclosed = np.cumsum(pixels.ravel()[order])
    measured = radius[order][np.searchsorted(enclosed, 0.5 * enclosed[-1])]
    predicted = composite_half_light_radius([(4.0, 0.3, 0.4, True), (1.0, 1.0, 0.6, False)])
    assert predicted == pytest.approx(measured, rel=0.01)
    assert 0.3 < predicted < 1.0


def test_bands_are_stored_blue_to_red():
    sims = simulate(2, size=32, bands=["i", "g", "r"], seed=0, workers=1)
    assert sims.bands == ("g", "r", "i")
    assert (
        sims.catalog["flux_g"][0] < sims.catalog["flux_i"][0] or sims.catalog["label"][0] == "star"
    )


def test_progress_bar_does_not_change_the_sample(capsys):
    quiet = simulate(3, size=32, seed=9, workers=1)
    shown = simulate(3, size=32, seed=9, workers=1, progress=True)
    np.testing.assert_array_equal(quiet.images, shown.images)


def test_class_fractions_give_exact_counts():
    sims = simulate(
        10,
        size=32,
        classes=["elliptical", "star"],
        class_fractions={"elliptical": 0.7, "star": 0.3},
        seed=0,
        workers=1,
    )
    assert sorted(sims.catalog["label"]) == ["elliptical"] * 7 + ["star"] * 3
    assert sims.class_names == ("elliptical", "star")
    assert set(sims.catalog["label_index"][sims.catalog["label"] == "star"]) == {1}


def test_flux_mode_without_snr():
    sims = simulate(
        4, size=32, snr=None, flux_range=(500.0, 600.0), noise="none", seed=0, workers=1
    )
    assert np.all((sims.catalog["flux"] >= 500) & (sims.catalog["flux"] <= 600))
    assert np.all(sims.catalog["noise_sigma"] == 0)


def test_write_sample_files_and_catalog(tmp_path):
    sims = simulate(4, size=32, bands=("g", "r", "i"), seed=0, workers=1)
    catalog_path = write_sample(sims, tmp_path / "out")
    assert catalog_path == tmp_path / "out" / "catalog.csv"
    catalog = Table.read(catalog_path, format="ascii.csv")
    assert catalog.colnames[:3] == ["id", "file", "label"]
    assert "file" not in sims.catalog.colnames  # the caller's table is left alone
    for row, image in zip(catalog, sims.images):
        fits_path = catalog_path.parent / row["file"]
        assert fits_path.suffix == ".fits"
        with fits.open(fits_path) as hdul:
            np.testing.assert_array_equal(hdul[0].data, image)
            assert hdul[0].header["BANDS"] == "g,r,i" and hdul[0].header["LABEL"] == row["label"]
        assert fits_path.with_suffix(".png").is_file()
    assert np.isnan(catalog["n_arms"][catalog["label"] == "elliptical"]).all()
    assert not list((tmp_path / "out").rglob(".*"))  # no temporary files left behind


def test_write_sample_png_only_and_loadable(tmp_path):
    sims = simulate(2, size=32, seed=0, workers=1)
    catalog_path = write_sample(sims, tmp_path, formats=("png",))
    catalog = Table.read(catalog_path, format="ascii.csv")
    assert all(
        str(name).endswith(".png") and (tmp_path / name).is_file() for name in catalog["file"]
    )
    assert not list(tmp_path.rglob("*.fits"))
    data = pytest.importorskip("tuningfork.data")
    if not hasattr(data, "GalaxyCollection"):
        pytest.skip("tuningfork.data.GalaxyCollection not available yet")
    collection = data.GalaxyCollection.open(catalog_path)
    assert len(collection) == 2


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"n": 0}, "n must be"),
        ({"n": -3}, "n must be"),
        ({"n": 4, "classes": ["elliptical", "spirl"]}, "'spirl'"),
        ({"n": 4, "noise": "pink"}, "'pink'"),
        ({"n": 4, "psf": "airy"}, "'airy'"),
        ({"n": 4, "bands": ("r", "q")}, "'q'"),
        ({"n": 4, "snr": -1.0}, "snr"),
        ({"n": 4, "psf_fwhm": (1.0, 0.5)}, "psf_fwhm"),
        ({"n": 4, "size": 8}, "size"),
        ({"n": 4, "workers": 0}, "workers"),
        ({"n": 4, "class_fractions": [1.0, 2.0]}, "class_fractions"),
        ({"n": 4, "classes": ["star"], "class_fractions": {"spiral": 1.0}}, "spiral"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs, fragment):
    with pytest.raises(ConfigError, match="^simulate\\(\\)") as error:
        simulate(**kwargs)
    assert fragment in str(error.value) and "\n" not in str(error.value)


def test_write_sample_rejects_unknown_format(tmp_path):
    sims = simulate(1, size=32, seed=0, workers=1)
    with pytest.raises(ConfigError, match="'jpeg'"):
        write_sample(sims, tmp_path, formats=("jpeg",))
    assert not (tmp_path / "catalog.csv").exists()
