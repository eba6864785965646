"""Tests of tuningfork.morphometry: the statmorph wrapper, segmentation and catalog."""

from __future__ import annotations

import json

import galsim
import numpy as np
import pytest
import statmorph
from astropy.io import fits

from tuningfork.errors import (
    ConfigError,
    EmptyImageError,
    ImageShapeError,
    InputFileError,
    NoSourcesError,
)
from tuningfork.morphometry import (
    ALL_QUANTITIES,
    DOUBLESERSIC_QUANTITIES,
    measure_morphology,
    morphometry_catalog,
    segment_central_source,
)

# statmorph pins its reference values at rtol=1e-5 for the astropy/scipy it
# was released with; the model fits (single and double Sersic) converge to
# within a few 1e-4 of them with newer optimisers, every non-parametric value
# still to 1e-5.
FIT_PREFIXES = ("sersic_", "doublesersic_")


def _galsim_galaxy(
    n: float, half_light_radius: float = 4.0, size: int = 64, noise: float = 0.5, seed: int = 1
):
    profile = galsim.Sersic(n=n, half_light_radius=half_light_radius, flux=5000.0).shear(
        q=0.8, beta=0.3 * galsim.radians
    )
    image = profile.drawImage(nx=size, ny=size, scale=1.0).array.astype(np.float32)
    return image + np.random.default_rng(seed).normal(0.0, noise, image.shape).astype(np.float32)


@pytest.fixture(scope="module")
def reference(shared_data):
    folder = shared_data / "statmorph-reference"
    with fits.open(folder / "slice.fits") as hdus:
        image, segmap, mask = (hdu.data for hdu in hdus[:3])
    values = json.loads((folder / "statmorph_reference_values.json").read_text())["values"]
    return image, segmap, mask.astype(bool), values


def test_wrapper_reproduces_statmorph_reference_values(reference):
    image, segmap, mask, expected = reference
    measured = measure_morphology(
        image,
        segmap=segmap,
        mask=mask,
        gain=1.0,
        quantities=ALL_QUANTITIES + DOUBLESERSIC_QUANTITIES,
        include_doublesersic=True,
    )
    assert len(expected) == 72
    for name, value in expected.items():
        rtol = 1e-3 if name.startswith(FIT_PREFIXES) else 1e-5
        assert measured[name] == pytest.approx(value, rel=rtol), name


def test_wrapper_matches_statmorph_called_directly(reference):
    image, segmap, mask, _ = reference
    direct = statmorph.source_morphology(image, segmap, mask=mask, gain=1.0)[0]
    wrapped = measure_morphology(
        image, segmap=segmap, mask=mask, gain=1.0, quantities=ALL_QUANTITIES
    )
    for name in ALL_QUANTITIES:
        expected = np.nan if direct[name] == -99.0 else direct[name]
        assert wrapped[name] == pytest.approx(expected, nan_ok=True), name
    assert wrapped["flag"] == direct.flag and wrapped["flag_sersic"] == direct.flag_sersic


def test_wrapper_does_not_modify_the_callers_image(reference):
    image, _, _, _ = reference
    before = image.copy()
    measure_morphology(image, gain=1.0)
    np.testing.assert_array_equal(image, before)


def test_concentrated_galaxy_scores_higher_gini_and_concentration_than_a_disk():
    disk = measure_morphology(_galsim_galaxy(n=1.0))
    bulge = measure_morphology(_galsim_galaxy(n=4.0))
    assert bulge["gini"] > disk["gini"]
    assert bulge["concentration"] > disk["concentration"] + 0.5
    assert disk["sersic_n"] == pytest.approx(1.0, abs=0.3)
    assert bulge["sersic_n"] > 2.5
    assert disk["rhalf_circ"] == pytest.approx(4.0, rel=0.25)


def test_segmentation_keeps_the_central_source_and_masks_a_neighbour():
    image = _galsim_galaxy(n=1.0, noise=0.2)
    image[5:9, 5:9] += 50.0  # a bright neighbour in the corner
    source = segment_central_source(image)
    assert source.segmap[32, 32] == 1
    assert source.segmap[6, 6] == 0 and source.mask[6, 6]
    assert source.background_rms == pytest.approx(0.2, rel=0.2)


def test_bad_images_raise_errors_naming_the_image():
    with pytest.raises(ImageShapeError, match="cutout-7"):
        measure_morphology(np.zeros((2, 8, 8)), name="cutout-7")
    with pytest.raises(EmptyImageError, match="cutout-8"):
        measure_morphology(np.full((16, 16), np.nan), name="cutout-8")
    with pytest.raises(InputFileError, match="cutout-9.*zero scatter"):
        measure_morphology(np.zeros((16, 16)), name="cutout-9")
    with pytest.raises(ConfigError, match="unknown colour"):
        measure_morphology(_galsim_galaxy(1.0), quantities=("colour",))


def test_pure_noise_has_no_source():
    noise = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    with pytest.raises(NoSourcesError, match="noise-stamp"):
        segment_central_source(noise, nsigma=5.0, name="noise-stamp")


def test_catalog_flags_failures_with_nan_and_keeps_order(tmp_path):
    images = [
        _galsim_galaxy(1.0, seed=1),
        np.zeros((32, 32), np.float32),
        _galsim_galaxy(4.0, seed=2)[None],
    ]
    table = morphometry_catalog(images, ids=["a", "b", "c"], output=tmp_path / "morph.csv")
    assert list(table["id"]) == ["a", "b", "c"]
    assert list(table["measured"]) == [True, False, True]
    assert np.isnan(table["gini"][1]) and table["flag"][1] == 4
    assert "zero scatter" in table["error"][1]
    assert np.isfinite(table["gini"][0]) and table["error"][0] == ""
    assert (tmp_path / "morph.csv").is_file()


@pytest.mark.slow  # worker processes import statmorph afresh: several seconds on a busy machine
def test_catalog_in_parallel_processes_equals_serial():
    images = [_galsim_galaxy(n, seed=s) for s, n in enumerate((1.0, 2.0, 4.0))]
    serial = morphometry_catalog(images, quantities=("gini", "m20"))
    parallel = morphometry_catalog(images, quantities=("gini", "m20"), n_workers=2)
    np.testing.assert_allclose(parallel["gini"], serial["gini"])
    np.testing.assert_allclose(parallel["m20"], serial["m20"])


def test_catalog_band_out_of_range_names_the_image():
    with pytest.raises(ConfigError, match="g1: band 3"):
        morphometry_catalog([np.zeros((2, 8, 8))], ids=["g1"], band=3)
