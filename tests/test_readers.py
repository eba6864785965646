"""Tests of tuningfork.data.readers: every image format and every bad input."""

from __future__ import annotations

import gzip

import galsim
import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from tuningfork.data.readers import (
    file_suffix,
    image_format,
    is_fits_table,
    read_bands,
    read_image,
    stored_dtype,
    to_bands_first,
)
from tuningfork.errors import (
    ConfigError,
    CorruptFileError,
    EmptyImageError,
    ImageShapeError,
    InputFileError,
    MissingFileError,
    UnsupportedFormatError,
)


def galaxy(size: int = 32, flux: float = 1000.0) -> np.ndarray:
    """A GalSim exponential disc, float32 (size, size)."""
    profile = galsim.Exponential(half_light_radius=1.0, flux=flux)
    return profile.drawImage(nx=size, ny=size, scale=0.2).array.astype(np.float32)


def assert_one_line_naming(error: pytest.ExceptionInfo, path) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message


# ------------------------------------------------------------------ real data
def test_real_sdss_fits_keeps_physical_values(shared_data):
    path = shared_data / "sdss-fits" / "ic3478rss_256.fits"
    image = read_image(path)
    assert image.shape == (1, 256, 256)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image[0], fits.getdata(path).astype(np.float32))
    assert stored_dtype(path) == "float32"


def test_real_integer_mask_is_not_rescaled(shared_data):
    path = shared_data / "sdss-fits" / "ic3478rss_256_mask.fits"
    image = read_image(path)
    np.testing.assert_array_equal(image[0], fits.getdata(path).astype(np.float32))
    assert stored_dtype(path) == "int32"


def test_real_cosmos_extension_by_number(shared_data):
    path = shared_data / "cosmos-f814w" / "real_galaxy_images_extension.fits"
    image = read_image(path, hdu=3)
    assert image.shape == (1, 32, 32)
    np.testing.assert_allclose(image[0], fits.getdata(path, ext=3).astype(np.float32))
    assert read_image(path).shape == (1, 54, 54)  # the primary HDU by default


def test_real_cosmos_hdu_out_of_range(shared_data):
    path = shared_data / "cosmos-f814w" / "real_galaxy_images_extension.fits"
    with pytest.raises(InputFileError, match="no HDU 500") as error:
        read_image(path, hdu=500)
    assert_one_line_naming(error, path)


def test_real_catalog_is_a_table_not_an_image(shared_data):
    catalog = shared_data / "cosmos-f814w" / "real_galaxy_catalog_26_extension_example.fits"
    assert is_fits_table(catalog)
    assert not is_fits_table(shared_data / "sdss-fits" / "n3073rss_small.fits")
    with pytest.raises(ImageShapeError, match="no HDU holds image data"):
        read_image(catalog)
    with pytest.raises(ImageShapeError, match="holds a table"):
        read_image(catalog, hdu=1)


def test_real_jpeg_is_rgb_scaled(shared_data):
    path = shared_data / "gz2-spirals" / "images" / "101654.jpg"
    image = read_image(path)
    assert image.shape == (3, 424, 424)
    assert image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.max() > 0.5  # the galaxy centre is bright
    assert stored_dtype(path) == "uint8"


def test_real_truncated_jpeg(shared_data, tmp_path):
    data = (shared_data / "gz2-spirals" / "images" / "101654.jpg").read_bytes()
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError) as error:
        read_image(broken)
    assert_one_line_naming(error, broken)


# ------------------------------------------------------------------ FITS layouts
def test_primary_without_data_uses_first_image_extension(tmp_path):
    pixels = galaxy()
    path = tmp_path / "ext.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(pixels, name="SCI")]).writeto(path)
    np.testing.assert_array_equal(read_image(path)[0], pixels)
    np.testing.assert_array_equal(read_image(path, hdu="SCI")[0], pixels)
    with pytest.raises(InputFileError, match="no HDU 'WHT'"):
        read_image(path, hdu="WHT")
    with pytest.raises(ImageShapeError, match="holds no data"):
        read_image(path, hdu=0)


@pytest.mark.parametrize("suffix", [".fits", ".fit", ".fts", ".fits.gz"])
def test_fits_suffixes_and_cube(tmp_path, suffix):
    cube = np.stack([galaxy(), 2 * galaxy(), 3 * galaxy()])
    path = tmp_path / f"cube{suffix}"
    fits.PrimaryHDU(cube).writeto(path)
    image = read_image(path)
    assert image.shape == (3, 32, 32)
    np.testing.assert_allclose(image, cube)


@pytest.mark.parametrize("shape", [(16,), (2, 3, 16, 16)])
def test_fits_with_wrong_dimensions(tmp_path, shape):
    path = tmp_path / "bad.fits"
    fits.PrimaryHDU(np.ones(shape, dtype=np.float32)).writeto(path)
    with pytest.raises(ImageShapeError, match=f"{len(shape)} dimensions") as error:
        read_image(path)
    assert_one_line_naming(error, path)


def test_truncated_fits_raises(tmp_path):
    whole = tmp_path / "whole.fits"
    fits.PrimaryHDU(np.tile(galaxy(), (4, 4))).writeto(whole)
    data = whole.read_bytes()
    for cut in (len(data) // 2, 2880 + 10):
        truncated = tmp_path / f"cut{cut}.fits"
        truncated.write_bytes(data[:cut])
        with pytest.raises(CorruptFileError) as error:
            read_image(truncated)
        assert_one_line_naming(error, truncated)


def test_truncated_gzipped_fits_raises(tmp_path):
    whole = tmp_path / "whole.fits"
    fits.PrimaryHDU(galaxy(128)).writeto(whole)
    packed = gzip.compress(whole.read_bytes())
    truncated = tmp_path / "cut.fits.gz"
    truncated.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(CorruptFileError):
        read_image(truncated)


@pytest.mark.parametrize("suffix", [".fits", ".png", ".jpg", ".npy"])
def test_corrupt_bytes(tmp_path, suffix):
    path = tmp_path / f"junk{suffix}"
    path.write_bytes(b"this is not an image at all " * 50)
    with pytest.raises(CorruptFileError) as error:
        read_image(path)
    assert_one_line_naming(error, path)


def test_all_nan_fits(tmp_path):
    path = tmp_path / "blank.fits"
    fits.PrimaryHDU(np.full((8, 8), np.nan, dtype=np.float32)).writeto(path)
    with pytest.raises(EmptyImageError) as error:
        read_image(path)
    assert_one_line_naming(error, path)
    assert np.isnan(read_image(path, require_finite=False)).all()


def test_missing_and_unknown_files(tmp_path):
    with pytest.raises(MissingFileError, match="not found") as error:
        read_image(tmp_path / "absent.fits")
    assert_one_line_naming(error, tmp_path / "absent.fits")
    odd = tmp_path / "galaxy.tiffx"
    odd.write_bytes(b"\0" * 10)
    with pytest.raises(UnsupportedFormatError, match=".tiffx"):
        read_image(odd)


# ------------------------------------------------------------------ PNG / NPY
def test_png_grey_rgba_and_16_bit(tmp_path):
    grey = (np.arange(64 * 48) % 256).astype(np.uint8).reshape(48, 64)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    image = read_image(tmp_path / "grey.png")
    assert image.shape == (1, 48, 64)
    np.testing.assert_allclose(image[0], grey / 255.0, atol=1e-6)

    rgba = np.zeros((20, 30, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 7
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png")
    assert image.shape == (3, 20, 30)
    # Red is the reddest band, so it comes last (bands run blue to red).
    np.testing.assert_allclose(image[:, 0, 0], [0.0, 0.0, 1.0])

    deep = np.full((10, 12), 65535, dtype=np.uint16)
    deep[0, 0] = 0
    Image.fromarray(deep).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (1, 10, 12)
    assert image[0, 0, 0] == 0.0 and image[0, 1, 1] == pytest.approx(1.0)


def test_npy_single_images(tmp_path):
    np.save(tmp_path / "flat.npy", galaxy())
    assert read_image(tmp_path / "flat.npy").shape == (1, 32, 32)
    colour = np.stack([galaxy()] * 3, axis=-1)  # channels last, as most libraries store RGB
    np.save(tmp_path / "colour.npy", colour)
    image = read_image(tmp_path / "colour.npy")
    assert image.shape == (3, 32, 32)
    np.testing.assert_array_equal(image[1], colour[..., 1])
    np.save(tmp_path / "line.npy", np.ones(5))
    with pytest.raises(ImageShapeError):
        read_image(tmp_path / "line.npy")
    with pytest.raises(UnsupportedFormatError, match="only FITS"):
        read_image(tmp_path / "flat.npy", hdu=1)


def test_to_bands_first_copies_and_scales():
    pixels = np.full((6, 5, 3), 255, dtype=np.uint8)
    image = to_bands_first(pixels, "memory")
    assert image.shape == (3, 6, 5) and image.dtype == np.float32
    image[:] = 0
    assert (pixels == 255).all()
    floats = galaxy(8)
    copied = to_bands_first(floats, "memory")
    copied[:] = -1
    assert (floats >= 0).all()


# ------------------------------------------------------------------ bands
def test_read_bands_stacks_files(tmp_path):
    paths = []
    for index, band in enumerate("gri"):
        paths.append(tmp_path / f"gal_{band}.fits")
        fits.PrimaryHDU(galaxy() * (index + 1)).writeto(paths[-1])
    image = read_bands(paths)
    assert image.shape == (3, 32, 32)
    np.testing.assert_allclose(image[2], 3 * galaxy())


def test_read_bands_shape_mismatch_names_file(tmp_path):
    first, second = tmp_path / "g.fits", tmp_path / "r.fits"
    fits.PrimaryHDU(galaxy(32)).writeto(first)
    fits.PrimaryHDU(galaxy(30)).writeto(second)
    with pytest.raises(ImageShapeError, match="30x30") as error:
        read_bands([first, second])
    assert_one_line_naming(error, second)
    with pytest.raises(ConfigError):
        read_bands([])


def test_suffix_helpers():
    assert file_suffix("a/b.FITS.gz") == ".fits.gz"
    assert file_suffix("b.JPG") == ".jpg"
    assert file_suffix("noext") == ""
    assert image_format("x.fts") == "fits"
    assert image_format("x.jpeg") == "raster"
    with pytest.raises(UnsupportedFormatError, match="no suffix"):
        image_format("noext")


# ------------------------------------------------------------------ broken files say one line
@pytest.mark.parametrize("keep", [1000, 2880 + 100])
def test_truncated_fits_gives_the_error_and_no_raw_warnings(tmp_path, keep):
    import warnings

    from typer.testing import CliRunner

    from tuningfork.cli import app

    whole = tmp_path / "whole.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(galaxy(64))]).writeto(whole)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(whole.read_bytes()[:keep])
    with warnings.catch_warnings():
        # astropy's "Header size is not multiple of 2880" VerifyWarning used to escape.
        warnings.simplefilter("error")
        with pytest.raises(CorruptFileError) as error:
            read_image(truncated)
        result = CliRunner().invoke(app, ["info", str(truncated)])
    assert_one_line_naming(error, truncated)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "WARNING" not in result.output


def test_galaxy_hdus_lists_images_but_not_their_masks(tmp_path):
    from tuningfork.data.readers import galaxy_hdus

    path = tmp_path / "mef.fits"
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(galaxy(), name="SCI"), fits.ImageHDU(galaxy(), name="ERR"),
         fits.BinTableHDU.from_columns([fits.Column("a", "E", array=[1.0])]), fits.ImageHDU(galaxy())]
    ).writeto(path)  # fmt: skip
    assert galaxy_hdus(path) == [(1, "SCI"), (4, "")]
