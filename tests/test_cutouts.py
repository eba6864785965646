"""Tests of survey cutouts and source detection (tuningfork.data.cutouts)."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from tuningfork.data import cutouts
from tuningfork.data.catalog import read_catalog
from tuningfork.errors import (
    CatalogError,
    ConfigError,
    CorruptFileError,
    EmptyCatalogError,
    ImageShapeError,
    InputFileError,
    MissingColumnError,
    MissingFileError,
    MissingWCSError,
    NoSourcesError,
)

FIELD_SHAPE = (180, 220)  # (H, W) pixels
STAMP = 32
# Source pixel positions (x, y); the last one sits 3 px from the left edge so its stamp is padded.
SOURCE_PIXELS = [(60.3, 50.6), (150.8, 120.2), (110.0, 90.4), (3.2, 100.7)]
EDGE_INDEX = 3


def _tan_wcs() -> WCS:
    """A real gnomonic WCS: 0.2 arcsec pixels centred near the COSMOS field."""
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = [FIELD_SHAPE[1] / 2, FIELD_SHAPE[0] / 2]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    return wcs


def _render_field(wcs: WCS, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """GalSim Sersic galaxies at known sky positions on a noisy sky.

    Returns the (H, W) float32 image and the sources' ra, dec in degrees.
    """
    ra, dec = wcs.pixel_to_world_values(*np.array(SOURCE_PIXELS).T)
    x, y = wcs.world_to_pixel_values(ra, dec)
    canvas = galsim.ImageF(FIELD_SHAPE[1], FIELD_SHAPE[0], scale=1.0)
    for index, (xi, yi) in enumerate(zip(x, y)):
        galaxy = galsim.Sersic(
            n=1.5, half_light_radius=2.0 + index * 0.5, flux=5000.0 + 1000 * index
        )
        # GalSim pixels are 1-based; the WCS and numpy ones 0-based.
        galaxy.drawImage(image=canvas, center=galsim.PositionD(xi + 1, yi + 1), add_to_image=True)
    canvas.addNoise(galsim.GaussianNoise(galsim.BaseDeviate(seed), sigma=1.0))
    return canvas.array.astype(np.float32), ra, dec


@pytest.fixture(scope="module")
def sky_field():
    """(image, wcs, ra, dec) of the synthetic field."""
    wcs = _tan_wcs()
    image, ra, dec = _render_field(wcs)
    return image, wcs, ra, dec


@pytest.fixture()
def fits_field(tmp_path, sky_field):
    """The synthetic field written to FITS with its WCS in the header."""
    image, wcs, _, _ = sky_field
    path = tmp_path / "field.fits"
    fits.PrimaryHDU(image, header=wcs.to_header()).writeto(path)
    return path


@pytest.fixture(scope="module")
def hdf_detections():
    """Detections on the real Hubble Deep Field, run once for the module."""
    image, _ = cutouts.load_hubble_deep_field()
    return image, cutouts.detect_sources(image)


def _peak(stamp: np.ndarray) -> tuple[int, int]:
    """(x, y) of the brightest pixel of a (bands, h, w) stamp."""
    summed = np.nan_to_num(stamp.sum(axis=0), nan=-np.inf)
    y, x = np.unravel_index(np.argmax(summed), summed.shape)
    return int(x), int(y)


# --- (1) stamps at sky positions ------------------------------------------------


def test_sky_stamps_are_centred_on_their_sources(sky_field):
    image, wcs, ra, dec = sky_field
    stamps = cutouts.cut_stamps_at_sky_positions(
        image, wcs, ra, dec, STAMP, ids=["a", "b", "c", "d"]
    )
    assert len(stamps) == 4 and stamps.n_outside == 0
    assert list(stamps.table["id"]) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(stamps.table["ra"], ra)
    np.testing.assert_allclose(stamps.table["x"], [p[0] for p in SOURCE_PIXELS], atol=1e-6)
    centre = (STAMP - 1) / 2
    for stamp, row in zip(stamps.images, stamps.table):
        assert stamp.dtype == np.float32 and stamp.shape == (1, STAMP, STAMP)
        peak_x, peak_y = _peak(stamp)
        assert abs(peak_x - centre) <= 1 and abs(peak_y - centre) <= 1
        assert abs(peak_x - row["x_stamp"]) <= 1 and abs(peak_y - row["y_stamp"]) <= 1
    assert stamps.wcs[0].has_celestial
    # The stamp WCS maps the source's sky position to its stamp position.
    stamp_x, _ = stamps.wcs[0].world_to_pixel_values(ra[0], dec[0])
    assert stamp_x == pytest.approx(stamps.table["x_stamp"][0], abs=1e-6)


def test_edge_stamp_is_padded_masked_and_flagged(sky_field):
    image, wcs, ra, dec = sky_field
    original = image.copy()
    stamps = cutouts.cut_stamps_at_sky_positions(image, wcs, ra, dec, STAMP)
    np.testing.assert_array_equal(image, original)  # the caller's field is untouched
    edge_row = stamps.table[EDGE_INDEX]
    stamp, mask = stamps.images[EDGE_INDEX], stamps.masks[EDGE_INDEX]
    assert edge_row["edge"] and 0 < edge_row["frac_outside"] < 0.5
    assert mask.shape == stamp.shape[1:] and mask.any()
    np.testing.assert_array_equal(np.isnan(stamp[0]), mask)
    assert edge_row["frac_outside"] == pytest.approx(mask.mean())
    # The source at x = 3.2 leaves the left ~12 columns of a 32 px stamp outside the field.
    assert mask[:, 0].all() and not mask[:, -1].any()
    for index in range(EDGE_INDEX):
        assert not stamps.table["edge"][index] and stamps.table["frac_outside"][index] == 0
        assert np.isfinite(stamps.images[index]).all() and not stamps.masks[index].any()


def test_multiband_stamps_cut_every_band_alike(sky_field):
    image, wcs, ra, dec = sky_field
    cube = np.stack([image, 0.5 * image, image + 10.0])
    stamps = cutouts.cut_stamps_at_sky_positions(cube, wcs, ra, dec, STAMP)
    for stamp in stamps.images:
        assert stamp.shape == (3, STAMP, STAMP)
        np.testing.assert_allclose(stamp[1], 0.5 * stamp[0], rtol=1e-6)
        np.testing.assert_allclose(stamp[2], stamp[0] + 10.0, rtol=1e-6)


def test_positions_outside_the_field_are_left_out_and_counted(sky_field):
    image, wcs, ra, dec = sky_field
    far_ra, far_dec = np.append(ra, ra[0] + 1.0), np.append(dec, dec[0])
    stamps = cutouts.cut_stamps_at_sky_positions(image, wcs, far_ra, far_dec, STAMP)
    assert len(stamps) == 4 and stamps.n_outside == 1 and stamps.outside_ids == ["4"]

    kept = cutouts.cut_stamps_at_sky_positions(
        image, wcs, far_ra, far_dec, STAMP, keep_outside=True
    )
    assert len(kept) == 5 and kept.n_outside == 1
    assert kept.table["edge"][4] and kept.table["frac_outside"][4] == 1.0
    assert np.isnan(kept.images[4]).all() and kept.masks[4].all()


def test_pixel_stamps_take_per_source_sizes(sky_field):
    image, _, _, _ = sky_field
    x, y = np.array(SOURCE_PIXELS[:2]).T
    stamps = cutouts.cut_stamps_at_pixels(image, x, y, [21, 40])
    assert [s.shape[1:] for s in stamps.images] == [(21, 21), (40, 40)]
    assert "ra" not in stamps.table.colnames


def test_stamp_sizes_scale_with_semimajor_and_are_clipped():
    sizes = cutouts.stamp_sizes([0.5, 5.0, np.nan, 100.0], min_size=16, max_size=128)
    np.testing.assert_array_equal(sizes, [16, 60, 16, 128])


def test_cutout_field_with_fits_and_catalog_file(tmp_path, fits_field, sky_field):
    _, _, ra, dec = sky_field
    catalog = tmp_path / "positions.csv"
    Table({"ID": ["g1", "g2", "g3", "g4"], "RA": ra, "DEC": dec, "mag": [20.0, 21, 22, 23]}).write(
        catalog
    )
    stamps = cutouts.cutout_field(fits_field, catalog=catalog, size=STAMP, out_dir=tmp_path / "out")
    assert list(stamps.table["id"]) == ["g1", "g2", "g3", "g4"]
    np.testing.assert_allclose(stamps.table["mag"], [20, 21, 22, 23])  # input columns travel along
    written = read_catalog(tmp_path / "out" / cutouts.CATALOG_NAME)
    assert list(written["id"]) == ["g1", "g2", "g3", "g4"]
    assert all((tmp_path / "out" / name).is_file() for name in written["file"])


def test_cutout_field_detects_the_injected_galaxies_in_a_fits_field(fits_field, sky_field):
    _, _, ra, dec = sky_field
    stamps = cutouts.cutout_field(fits_field, extended_only=False)
    assert len(stamps) == len(SOURCE_PIXELS)
    # Every injected galaxy was found, at its sky position.
    for source_ra, source_dec in zip(ra, dec):
        separation = np.hypot(
            (stamps.table["ra"] - source_ra) * np.cos(np.radians(source_dec)),
            stamps.table["dec"] - source_dec,
        )
        assert separation.min() * 3600 < 0.2  # arcsec: one pixel
    assert {"semimajor", "extended", "flux"} <= set(stamps.table.colnames)


def test_cutout_field_keeps_galaxies_and_drops_stars():
    canvas = galsim.ImageF(120, 100, scale=1.0)
    galaxy = galsim.Sersic(n=1.0, half_light_radius=6.0, flux=20000.0).shear(
        e=0.3, beta=0.5 * galsim.radians
    )
    star = galsim.Gaussian(fwhm=3.0, flux=5000.0)  # the PSF that detect_sources assumes
    galaxy.drawImage(image=canvas, center=galsim.PositionD(40, 50), add_to_image=True)
    star.drawImage(image=canvas, center=galsim.PositionD(90, 40), add_to_image=True)
    canvas.addNoise(galsim.GaussianNoise(galsim.BaseDeviate(3), sigma=1.0))
    everything = cutouts.detect_sources(canvas.array)
    assert len(everything) == 2 and sorted(everything["extended"]) == [False, True]
    stamps = cutouts.cutout_field(canvas.array)
    assert len(stamps) == 1
    assert stamps.table["x"][0] == pytest.approx(
        39, abs=0.5
    )  # GalSim's (40, 50) is numpy's (39, 49)
    assert stamps.table["y"][0] == pytest.approx(49, abs=0.5)


# --- (2) the real Hubble Deep Field -------------------------------------------------


def test_hdf_detection_finds_a_plausible_number_of_sources(hdf_detections):
    image, sources = hdf_detections
    assert image.shape == (3, 872, 1000) and image.dtype == np.float32
    assert 100 <= len(sources) <= 2000
    assert np.all(sources["flux"] > 0)
    assert np.all(
        (sources["x"] >= 0) & (sources["x"] < 1000) & (sources["y"] >= 0) & (sources["y"] < 872)
    )


def test_hdf_extended_flag_separates_large_from_compact(hdf_detections):
    _, sources = hdf_detections
    extended = np.asarray(sources["extended"])
    assert 0.1 < extended.mean() < 0.9
    assert np.median(sources["semimajor"][extended]) > 1.5 * np.median(
        sources["semimajor"][~extended]
    )
    assert np.median(sources["area"][extended]) > 2 * np.median(sources["area"][~extended])


def test_hdf_stamps_are_centred_on_their_sources(hdf_detections):
    image, sources = hdf_detections
    galaxies = sources[sources["extended"]]
    sizes = cutouts.stamp_sizes(galaxies["semimajor"])
    stamps = cutouts.cut_stamps_at_pixels(
        image, galaxies["x"], galaxies["y"], sizes, properties=galaxies
    )
    assert len(stamps) == len(galaxies)
    offsets = []
    for stamp, row in zip(stamps.images, stamps.table):
        light = np.nan_to_num(stamp.sum(axis=0))
        light = np.clip(light - np.median(light), 0, None)
        yy, xx = np.indices(light.shape)
        centre = (light.shape[1] - 1) / 2, (light.shape[0] - 1) / 2
        # Within twice the semimajor axis, neighbours rarely pull the centroid.
        near = np.hypot(xx - centre[0], yy - centre[1]) < max(2 * row["semimajor"], 3)
        weights = light * near
        offsets.append(np.hypot((weights * xx).sum() / weights.sum() - centre[0],
                                (weights * yy).sum() / weights.sum() - centre[1]))  # fmt: skip
    assert np.median(offsets) < 0.5 and np.percentile(offsets, 90) < 1.5


# --- (3) writing -----------------------------------------------------------------------


def test_write_stamps_fits_files_match_the_catalog(tmp_path, sky_field):
    image, wcs, ra, dec = sky_field
    stamps = cutouts.cut_stamps_at_sky_positions(
        image, wcs, ra, dec, STAMP, ids=["a", "b", "c", "d/e"]
    )
    catalog_path = cutouts.write_stamps(stamps, tmp_path)
    assert catalog_path == tmp_path / "catalog.csv"
    written = read_catalog(catalog_path)
    assert list(written["id"]) == ["a", "b", "c", "d/e"]
    assert written["file"][3] == "d_e.fits"  # ids become safe file names
    for row, stamp, mask in zip(written, stamps.images, stamps.masks):
        with fits.open(tmp_path / row["file"]) as hdul:
            np.testing.assert_array_equal(hdul[0].data, stamp[0])
            np.testing.assert_array_equal(hdul["MASK"].data.astype(bool), mask)
            header = hdul[0].header
            assert header["ID"] == row["id"] and header["XSRC"] == pytest.approx(row["x"])
            assert header["EDGE"] == (str(row["edge"]) == "True")
            assert WCS(header).has_celestial
        assert (tmp_path / row["preview"]).is_file()
    assert str(written["edge"][3]) == "True" and written["frac_outside"][3] > 0


def test_write_stamps_npy_writes_masks_alongside(tmp_path, sky_field):
    image, wcs, ra, dec = sky_field
    stamps = cutouts.cut_stamps_at_sky_positions(image, wcs, ra, dec, STAMP)
    written = Table.read(cutouts.write_stamps(stamps, tmp_path, format="npy", also_png=False))
    assert "preview" not in written.colnames
    np.testing.assert_array_equal(np.load(tmp_path / written["file"][3]), stamps.images[3])
    np.testing.assert_array_equal(np.load(tmp_path / written["mask_file"][3]), stamps.masks[3])


def test_failed_write_keeps_earlier_output(tmp_path, sky_field, monkeypatch):
    image, wcs, ra, dec = sky_field
    stamps = cutouts.cut_stamps_at_sky_positions(image, wcs, ra, dec, STAMP)
    catalog_path = cutouts.write_stamps(stamps, tmp_path, also_png=False)
    first_stamp = (tmp_path / "0.fits").read_bytes()
    first_catalog = catalog_path.read_text()

    def write_half_then_fail(self, path, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"SIMPLE  = T half-written")
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", write_half_then_fail)
    brighter = cutouts.cut_stamps_at_sky_positions(image * 2, wcs, ra, dec, STAMP)
    with pytest.raises(OSError, match="disk full"):
        cutouts.write_stamps(brighter, tmp_path, also_png=False)
    assert (tmp_path / "0.fits").read_bytes() == first_stamp
    assert catalog_path.read_text() == first_catalog
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


# --- (3b) one galaxy, one stamp: deblending and provenance --------------------------


PSF = galsim.Gaussian(fwhm=3.0)  # the PSF that detect_sources assumes


def _knotty_spiral_field(seed: int, size: int = 400, flux: float = 6e4) -> np.ndarray:
    """A face-on spiral (exponential disc, de Vaucouleurs bulge, star-forming knots) in noise."""
    canvas = galsim.ImageF(size, size, scale=1.0)
    disc = galsim.Exponential(half_light_radius=25.0, flux=0.5 * flux)
    knots = galsim.RandomKnots(
        npoints=40, half_light_radius=25.0, flux=0.35 * flux, rng=galsim.BaseDeviate(seed)
    )
    bulge = galsim.DeVaucouleurs(half_light_radius=3.0, flux=0.15 * flux)
    galsim.Convolve(disc + knots + bulge, PSF).drawImage(image=canvas, add_to_image=True)
    canvas.addNoise(galsim.GaussianNoise(galsim.BaseDeviate(seed + 1), sigma=1.0))
    return canvas.array.astype(np.float32)


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_knotty_spiral_gives_one_stamp_by_default(seed):
    field = _knotty_spiral_field(seed)
    # photutils' deblending at its defaults cuts the spiral into knots (9-16 pieces here).
    assert len(cutouts.cutout_field(field, deblend=True)) >= 5
    stamps = cutouts.cutout_field(field)
    assert len(stamps) == 1
    row = stamps.table[0]
    assert np.hypot(row["x"] - 199.5, row["y"] - 199.5) < 3
    assert row["size"] >= 120  # the stamp holds the whole disc, not a knot


def test_well_separated_galaxies_give_two_stamps_and_deblend_splits_touching_ones():
    def pair(separation: float) -> np.ndarray:
        canvas = galsim.ImageF(300, 300, scale=1.0)
        galaxy = galsim.Convolve(galsim.Exponential(half_light_radius=6.0, flux=2e4), PSF)
        for dx in (-separation / 2, separation / 2):
            galaxy.drawImage(image=canvas, add_to_image=True, offset=(dx, 0))
        canvas.addNoise(galsim.GaussianNoise(galsim.BaseDeviate(5), sigma=1.0))
        return canvas.array.astype(np.float32)

    apart = cutouts.cutout_field(pair(80.0))
    assert len(apart) == 2
    assert sorted(np.round(apart.table["x"] - 149.5)) == [-40, 40]
    touching = pair(24.0)
    # Their isophotes merge at 3 sigma: one segment unless deblending is asked for.
    assert len(cutouts.cutout_field(touching)) == 1
    assert len(cutouts.cutout_field(touching, deblend=True, contrast=0.01, nlevels=64)) == 2


def test_deblending_settings_are_checked():
    with pytest.raises(ConfigError, match="contrast"):
        cutouts.detect_sources(np.zeros((64, 64), np.float32), deblend=True, contrast=2.0)


def test_real_cosmos_spiral_field_gives_one_stamp(shared_data):
    # No large COSMOS field is shipped: the largest knotty face-on spiral stamp
    # (HDU 36, 144 px) is embedded in a 543 px field of its own noise level.
    folder = shared_data / "cosmos-f814w"
    catalog = Table.read(folder / "real_galaxy_catalog_26_extension_example.fits")
    (variance,) = catalog["NOISE_VARIANCE"][catalog["GAL_HDU"] == 36]
    spiral = fits.getdata(folder / "real_galaxy_images_extension.fits", 36).astype(np.float32)
    field = np.random.default_rng(0).normal(0, np.sqrt(variance), (543, 543)).astype(np.float32)
    start = (543 - spiral.shape[0]) // 2
    field[start : start + spiral.shape[0], start : start + spiral.shape[1]] = spiral
    assert len(cutouts.cutout_field(field, deblend=True)) >= 4  # nucleus and arm knots
    stamps = cutouts.cutout_field(field)
    assert len(stamps) == 1
    assert np.hypot(stamps.table["x"][0] - 271, stamps.table["y"][0] - 271) < 10
    assert stamps.table["size"][0] >= 144


def test_stamps_carry_the_field_provenance_cards_without_raw_warnings(tmp_path, sky_field):
    import warnings

    image, wcs, ra, dec = sky_field
    header = wcs.to_header()
    # Non-standard cards that make astropy's WCS emit FITSFixedWarning.
    header["RADECSYS"] = "FK5"
    header["DATE-OBS"] = "2004-01-02"
    header.remove("MJDREF", ignore_missing=True)
    path = tmp_path / "hst.fits"
    fits.HDUList(
        [fits.PrimaryHDU(header=fits.Header([("TELESCOP", "HST"), ("INSTRUME", "ACS")])),
         fits.ImageHDU(image, header=header, name="SCI")]
    ).writeto(path)  # fmt: skip
    with fits.open(path, mode="update") as hdul:
        hdul["SCI"].header["FILTER"] = ("F814W", "element selected from filter wheel")
        hdul["SCI"].header["EXPTIME"] = (2028.0, "exposure duration (seconds)")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stamps = cutouts.cutout_field(path, catalog=Table({"ra": ra, "dec": dec}), size=STAMP,
                                      out_dir=tmp_path / "out", also_png=False)  # fmt: skip
    written = read_catalog(tmp_path / "out" / cutouts.CATALOG_NAME)
    for name in written["file"]:
        stamp_header = fits.getheader(tmp_path / "out" / name)
        assert stamp_header["TELESCOP"] == "HST" and stamp_header["INSTRUME"] == "ACS"
        assert stamp_header["FILTER"] == "F814W" and stamp_header["EXPTIME"] == 2028.0
        assert stamp_header.comments["EXPTIME"] == "exposure duration (seconds)"
    assert stamps.cards["FILTER"][0] == "F814W"
    # An array field has no header to copy.
    assert cutouts.cutout_field(image, catalog=Table({"x": [60.3], "y": [50.6]})).cards == {}


def test_field_with_several_images_asks_for_hdu(tmp_path, sky_field):
    image = sky_field[0]
    path = tmp_path / "chips.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(image, name="SCI1"),
                  fits.ImageHDU(image, name="SCI2")]).writeto(path)  # fmt: skip
    with pytest.raises(InputFileError, match="--hdu") as error:
        cutouts.cutout_field(path)
    _one_line_naming(error.value, "chips.fits")
    assert len(cutouts.cutout_field(path, hdu="SCI2", extended_only=False)) == len(SOURCE_PIXELS)


# --- (4) errors ---------------------------------------------------------------------------


def _one_line_naming(error: Exception, name: str) -> None:
    message = str(error)
    assert "\n" not in message and name in message


def test_missing_image_file(tmp_path):
    with pytest.raises(MissingFileError) as error:
        cutouts.cutout_field(tmp_path / "nowhere.fits")
    _one_line_naming(error.value, "nowhere.fits")


def test_corrupt_fits(tmp_path):
    path = tmp_path / "broken.fits"
    path.write_bytes(b"SIMPLE  =                    T" + b" " * 20)
    with pytest.raises(CorruptFileError) as error:
        cutouts.cutout_field(path)
    _one_line_naming(error.value, "broken.fits")


def test_fits_without_wcs_with_sky_catalog(tmp_path, sky_field):
    image, _, ra, dec = sky_field
    path = tmp_path / "plain.fits"
    fits.PrimaryHDU(image).writeto(path)
    with pytest.raises(MissingWCSError) as error:
        cutouts.cutout_field(path, catalog=Table({"ra": ra, "dec": dec}))
    _one_line_naming(error.value, "plain.fits")
    with pytest.raises(MissingWCSError):
        cutouts.cut_stamps_at_sky_positions(image, None, ra, dec, STAMP)


def test_catalog_without_positions(tmp_path, fits_field):
    catalog = tmp_path / "names.csv"
    Table({"id": ["a", "b"], "mag": [20.0, 21.0]}).write(catalog)
    with pytest.raises(MissingColumnError) as error:
        cutouts.cutout_field(fits_field, catalog=catalog)
    _one_line_naming(error.value, "names.csv")
    assert "'ra'" in str(error.value)


def test_empty_catalog(tmp_path, fits_field):
    catalog = tmp_path / "empty.csv"
    catalog.write_text("id,ra,dec\n")
    with pytest.raises(EmptyCatalogError) as error:
        cutouts.cutout_field(fits_field, catalog=catalog)
    _one_line_naming(error.value, "empty.csv")


def test_all_positions_outside_is_a_clear_error(fits_field, sky_field):
    _, _, ra, dec = sky_field
    with pytest.raises(CatalogError, match="all 4 positions lie outside"):
        cutouts.cutout_field(fits_field, catalog=Table({"ra": ra + 1.0, "dec": dec}))


def test_empty_detection_is_a_clear_error():
    noise = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    with pytest.raises(NoSourcesError) as error:
        cutouts.detect_sources(noise, nsigma=50.0, name="noise.fits")
    _one_line_naming(error.value, "noise.fits")


def test_bad_image_shape():
    with pytest.raises(ImageShapeError):
        cutouts.cut_stamps_at_pixels(np.zeros((2, 3, 4, 5), np.float32), [1.0], [1.0], 8)
