"""Decoding PNG/JPEG files at the reduced resolution the preprocessing allows (PreprocessConfig.decode_scale)."""

from __future__ import annotations

import galsim
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from PIL import Image

from tuningfork.data import GalaxyCollection
from tuningfork.data.readers import read_image, read_image_scaled
from tuningfork.errors import CorruptFileError
from tuningfork.preprocessing import PreprocessConfig, Preprocessor


def galaxy_rgb(size: int = 424) -> np.ndarray:
    """A Sersic galaxy with sky noise as an 8-bit RGB array."""
    profile = galsim.Sersic(n=2.0, half_light_radius=6.0).shear(q=0.6, beta=30 * galsim.degrees)
    image = profile.drawImage(nx=size, ny=size, scale=0.396).array
    rng = np.random.default_rng(1)
    grey = image / image.max() + rng.normal(0.05, 0.01, image.shape)
    return (np.clip(np.stack([grey, grey * 0.9, grey * 0.8], axis=-1), 0, 1) * 255).astype(np.uint8)


@pytest.mark.parametrize(
    ("config", "size", "expected"),
    [
        (PreprocessConfig(output_size=64), 424, 2),  # 424 / 4 = 106 < 2 * 64
        (PreprocessConfig(output_size=32), 424, 4),
        (PreprocessConfig(output_size=64, crop_pixels=92), 424, 1),
        (PreprocessConfig(output_size=32, crop_pixels=200), 424, 2),
        (PreprocessConfig(output_size=32, crop_pixels=201), 424, 1),  # 201 / 2 is not a whole pixel count
        (PreprocessConfig(output_size=16, crop_fraction=0.5), 424, 4),
        (PreprocessConfig(output_size=None), 424, 1),
        (PreprocessConfig(output_size=8, polar=True), 424, 1),
        (PreprocessConfig(output_size=8), 4096, 8),
    ],
)
def test_decode_scale_keeps_twice_the_output_in_the_crop(config, size, expected):
    assert config.decode_scale(size, size) == expected


def test_jpeg_decodes_reduced_and_close_to_the_full_decode(tmp_path):
    path = tmp_path / "galaxy.jpg"
    Image.fromarray(galaxy_rgb()).save(path, quality=90)
    reduced, scale = read_image_scaled(path, lambda height, width: 2)
    full = read_image(path)
    assert scale == 2 and reduced.shape == (3, 212, 212) and reduced.dtype == np.float32
    blocks = full.reshape(3, 212, 2, 212, 2).mean(axis=(2, 4))
    assert np.abs(reduced - blocks).mean() < 0.01
    assert np.abs(reduced.mean() - full.mean()) < 0.005


def test_png_reduces_by_exact_block_means_and_fits_is_never_reduced(tmp_path):
    pixels = galaxy_rgb(64)
    Image.fromarray(pixels).save(tmp_path / "galaxy.png")
    reduced, scale = read_image_scaled(tmp_path / "galaxy.png", lambda height, width: 4)
    blocks = read_image(tmp_path / "galaxy.png").reshape(3, 16, 4, 16, 4).mean(axis=(2, 4))
    assert scale == 4 and reduced.shape == (3, 16, 16)
    assert np.abs(reduced - blocks).max() <= 1 / 255 + 1e-6  # PIL rounds each block mean to 8 bits
    fits.PrimaryHDU(pixels[..., 0].astype(np.float32)).writeto(tmp_path / "galaxy.fits")
    image, scale = read_image_scaled(tmp_path / "galaxy.fits", lambda height, width: 4)
    assert scale == 1 and image.shape == (1, 64, 64)


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_jpegs_decode_to_the_pixels_pil_gives(tmp_path, scale):
    # simplejpeg decodes grey and RGB JPEGs (the same libjpeg-turbo reduction as
    # PIL's draft); CMYK is left to PIL's conversion.  Each must match PIL's pixels.
    rng = np.random.default_rng(scale)
    images = {"rgb.jpg": Image.fromarray(galaxy_rgb(200)),
              "grey.jpg": Image.fromarray(galaxy_rgb(200)[..., 0]),
              "cmyk.jpg": Image.fromarray(rng.integers(0, 256, (90, 70, 4), dtype=np.uint8), "CMYK")}
    for name, image in images.items():
        image.save(tmp_path / name, quality=90)
        decoded, used = read_image_scaled(tmp_path / name, lambda height, width: scale)
        with Image.open(tmp_path / name) as opened:
            opened.draft(opened.mode, (-(-opened.size[0] // scale), -(-opened.size[1] // scale)))
            converted = opened.convert("L" if opened.mode == "L" else "RGB")
            done = round(image.size[0] / converted.size[0])
            # Where PIL's draft reduces less than asked (CMYK), block means make up the rest.
            expected = np.asarray(converted if done == scale else converted.reduce(scale // done))
        expected = expected[None] if expected.ndim == 2 else np.moveaxis(expected, -1, 0)[::-1]
        assert used == scale, name
        np.testing.assert_array_equal(decoded, expected / np.float32(255), err_msg=name)


def test_corrupt_jpeg_still_names_the_file(tmp_path):
    path = tmp_path / "broken.jpg"
    Image.fromarray(galaxy_rgb(128)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[:300])
    with pytest.raises(CorruptFileError, match="broken.jpg"):
        read_image_scaled(path, lambda height, width: 2)
    # Cut inside the scan, after a header that parses: the decoder itself must refuse it.
    path.write_bytes(data[: len(data) * 2 // 3])
    for scale in (1, 2):
        with pytest.raises(CorruptFileError, match="broken.jpg"):
            read_image_scaled(path, lambda height, width, scale=scale: scale)


def test_batches_of_reduced_jpegs_match_the_full_decode_and_the_crop(tmp_path):
    files = []
    for index in range(4):
        path = tmp_path / f"g{index}.jpg"
        Image.fromarray(np.roll(galaxy_rgb(), 3 * index, axis=0)).save(path, quality=90)
        files.append(str(path))
    Table({"id": [f"g{i}" for i in range(4)], "file": files}).write(tmp_path / "catalog.csv")
    collection = GalaxyCollection.open(tmp_path / "catalog.csv")
    for config in (PreprocessConfig(output_size=32, crop_pixels=200), PreprocessConfig(output_size=32)):
        preprocessor = Preprocessor(config)
        assert config.decode_scale(424, 424) > 1
        reduced = collection.read_images(preprocessor)
        whole = np.stack([preprocessor(read_image(file)) for file in files])
        assert reduced.shape == whole.shape == (4, 3, 32, 32)
        # Same field of view and values within the JPEG and resampling noise.
        assert np.abs(reduced - whole).mean() < 0.02
        assert np.corrcoef(reduced.ravel(), whole.ravel())[0, 1] > 0.99
