"""Tests of the preprocessing steps, PreprocessConfig and Preprocessor."""

from __future__ import annotations

import json

import galsim
import numpy as np
import pytest
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from PIL import Image

from tuningfork.errors import ConfigError, EmptyImageError, ImageShapeError
from tuningfork.preprocessing import (
    PreprocessConfig,
    Preprocessor,
    asinh_stretch,
    center_crop,
    estimate_background,
    fill_masked,
    fill_nonfinite,
    nonfinite_mask,
    normalise,
    resize,
    stretch,
    subtract_background,
)
from tuningfork.preprocessing.background import clipped_median_and_std


def galsim_galaxy(
    size: int = 64, sky: float = 0.0, noise: float = 0.0, seed: int = 1
) -> np.ndarray:
    """A 3-band GalSim Sersic galaxy (bands differ in flux) centred on the stamp."""
    profile = galsim.Sersic(n=1.5, half_light_radius=size / 10).shear(
        q=0.6, beta=35 * galsim.degrees
    )
    plane = profile.drawImage(nx=size, ny=size, scale=1.0).array * 1000.0
    bands = np.stack([plane * 0.6, plane, plane * 1.4]) + sky
    rng = np.random.default_rng(seed)
    return (bands + rng.normal(0.0, noise, bands.shape)).astype(np.float32) if noise else bands


def centroid(plane: np.ndarray) -> tuple[float, float]:
    weights = np.clip(plane, 0, None)
    rows, cols = np.indices(plane.shape)
    return float((rows * weights).sum() / weights.sum()), float(
        (cols * weights).sum() / weights.sum()
    )


@pytest.fixture(scope="module")
def sdss_fits(shared_data):
    folder = shared_data / "sdss-fits"
    image = fits.getdata(folder / "ic3478rss_256.fits").astype(np.float32)[None]
    mask = fits.getdata(folder / "ic3478rss_256_mask.fits")
    return image, mask


@pytest.fixture(scope="module")
def gz2_jpeg(shared_data):
    path = min((shared_data / "gz2-spirals" / "images").glob("*.jpg"))
    return np.moveaxis(np.asarray(Image.open(path)), -1, 0)


# ----------------------------------------------------------------- config


def test_config_round_trips_through_dict_and_json():
    config = PreprocessConfig(
        subtract_background=False,
        crop_fraction=0.5,
        output_size=48,
        stretch="asinh",
        asinh_q=3,
        stretch_softening=0.02,
        normalisation="zscore",
        clip_percentiles=[1, 99],
        nan_fill=0,
        polar=True,
        polar_radii=16,
        polar_angles=40,
        polar_extension=0.25,
    )
    assert PreprocessConfig.from_dict(config.to_dict()) == config
    assert PreprocessConfig.from_json(config.to_json()) == config
    assert (
        PreprocessConfig.from_dict(json.loads(json.dumps(config.to_dict()))).to_dict()
        == config.to_dict()
    )
    assert PreprocessConfig.from_dict(PreprocessConfig().to_dict()) == PreprocessConfig()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"stretch": "cubic"}, "unknown stretch 'cubic'"),
        ({"output_size": -8}, "output_size must be a positive integer"),
        ({"crop_pixels": 0}, "crop_pixels must be a positive integer"),
        ({"colour": "red"}, "unknown key(s) 'colour'"),
        ({"normalisation": "max"}, "unknown normalisation 'max'"),
        (
            {"crop_pixels": 100, "crop_fraction": 0.5},
            "at most one of crop_pixels and crop_fraction",
        ),
        ({"clip_percentiles": [99, 1]}, "clip_percentiles"),
        ({"nan_fill": "mean"}, "nan_fill"),
        ({"asinh_q": 0}, "asinh_q must be a positive number"),
        ({"polar_extension": 1.5}, "polar_extension"),
        ({"polar": "yes"}, "polar must be true or false"),
    ],
)
def test_config_rejects_bad_settings_with_one_line_message(settings, expected):
    with pytest.raises(ConfigError) as error:
        PreprocessConfig.from_dict(settings)
    message = str(error.value)
    assert expected in message
    assert message.startswith("PreprocessConfig:") and "\n" not in message


def test_config_rejects_text_that_is_not_json():
    with pytest.raises(ConfigError, match="not valid JSON"):
        PreprocessConfig.from_json("{stretch: asinh")


# ------------------------------------------------------------- background


def test_background_subtraction_zeroes_real_sdss_sky(sdss_fits):
    image, mask = sdss_fits
    _, sky_before, noise = sigma_clipped_stats(image[0], mask=mask > 0)
    assert sky_before > 0.5 * noise  # the raw frame does carry sky

    subtracted = subtract_background(image, mask=mask, max_pixels=None)
    _, sky_after, _ = sigma_clipped_stats(subtracted[0], mask=mask > 0)
    assert abs(sky_after) < 0.05 * noise
    assert subtracted.dtype == np.float32


def test_background_subsampling_agrees_with_full_estimate(sdss_fits):
    image, mask = sdss_fits
    full, noise = estimate_background(image, mask=mask)
    sampled, _ = estimate_background(image, mask=mask, max_pixels=1024)
    assert abs(sampled[0] - full[0]) < 0.2 * noise[0]


def test_background_honours_mask():
    rng = np.random.default_rng(3)
    image = rng.normal(10.0, 1.0, (2, 40, 40)).astype(np.float32)
    image[:, :, :20] += 50.0  # a large contaminated half, too big for clipping to remove
    mask = np.zeros((40, 40), bool)
    mask[:, :20] = True
    unmasked, _ = estimate_background(image)
    masked, _ = estimate_background(image, mask=mask)
    np.testing.assert_allclose(masked, 10.0, atol=0.2)
    assert np.all(unmasked > 12.0)


@pytest.mark.parametrize("sigma, maxiters", [(3.0, 5), (2.0, 10), (3.0, 1)])
def test_batched_clipping_matches_astropy_sigma_clipped_stats(sigma, maxiters):
    from astropy.stats import sigma_clipped_stats

    rng = np.random.default_rng(11)
    planes = rng.normal(1000.0, 2.0, (12, 900))
    planes[:, :60] += rng.exponential(30.0, (12, 60))  # a source in every row
    planes[3, ::7] = np.nan                               # bad pixels
    planes[4, 5] = np.inf
    planes[5] = 7.0                                        # a constant row
    planes[6, 1:] = np.nan                                 # one usable pixel
    planes[7] = np.nan                                     # none usable
    planes[8, ::2] = rng.normal(1000.0, 2.0, 450).round()  # ties
    median, std = clipped_median_and_std(planes, sigma, maxiters)
    for row, (level, noise) in enumerate(zip(median, std, strict=True)):
        finite = planes[row][np.isfinite(planes[row])]
        if finite.size == 0:
            assert np.isnan(level) and np.isnan(noise)
            continue
        _, expected_median, expected_std = sigma_clipped_stats(finite, sigma=sigma, maxiters=maxiters)
        np.testing.assert_allclose([level, noise], [expected_median, expected_std], rtol=1e-9, atol=1e-9)


def test_background_rejects_mismatched_mask():
    with pytest.raises(ImageShapeError, match="mask: shape"):
        subtract_background(np.zeros((1, 10, 10)), mask=np.zeros((5, 5)))


# ---------------------------------------------------------------- stretch


@pytest.mark.parametrize("kind", ["linear", "asinh", "sqrt", "log"])
def test_stretch_is_strictly_increasing(kind):
    values = np.linspace(-20.0, 5000.0, 4001, dtype=np.float64).astype(np.float32)
    stretched = stretch(values.reshape(1, 1, -1), kind, q=8.0, softening=2.0).ravel()
    assert stretched.dtype == np.float32
    assert np.all(np.diff(stretched) > 0)


def test_asinh_stretch_matches_lupton_formula_for_one_band():
    values = np.linspace(-5, 500, 50, dtype=np.float32).reshape(1, 1, -1)
    expected = np.arcsinh(8.0 * values / 3.0) / 8.0
    np.testing.assert_allclose(
        asinh_stretch(values, q=8.0, softening=3.0), expected, rtol=1e-5, atol=1e-7
    )


def test_asinh_stretch_keeps_colours_of_real_jpeg(gz2_jpeg):
    image = gz2_jpeg.astype(np.float32)
    stretched = asinh_stretch(image, q=10.0, softening=5.0)
    bright = image.mean(axis=0) > 20
    np.testing.assert_allclose(
        stretched[0][bright] / stretched[1][bright], image[0][bright] / image[1][bright], rtol=1e-4
    )
    # The compression is real: the dynamic range shrinks.
    assert stretched.max() / np.median(stretched[:, bright]) < image.max() / np.median(
        image[:, bright]
    )


def test_stretch_rejects_unknown_kind():
    with pytest.raises(ConfigError, match="unknown kind 'gamma'"):
        stretch(np.ones((1, 4, 4)), "gamma")


# ------------------------------------------------------------ normalise


def test_minmax_maps_every_band_to_unit_range_with_clipping():
    rng = np.random.default_rng(0)
    image = (
        rng.normal(0, 1, (3, 32, 32)).astype(np.float32)
        * np.array([1, 10, 100], np.float32)[:, None, None]
    )
    image[1, 0, 0] = 1e6  # a hot pixel must not set the scale
    out = normalise(image, "minmax", (1.0, 99.0))
    assert out.min() == 0.0 and out.max() == 1.0
    for band in out:
        assert 0.4 < np.median(band) < 0.6
        assert np.mean(band == 1.0) < 0.02


@pytest.mark.parametrize("percentiles", [(0.5, 99.5), (0.0, 100.0), (10.0, 90.0)])
def test_minmax_bounds_are_numpys_percentiles(percentiles):
    rng = np.random.default_rng(4)
    batch = rng.lognormal(0.0, 1.0, (5, 3, 17, 23)).astype(np.float32)
    low, high = np.percentile(batch.reshape(5, 3, -1), percentiles, axis=-1)
    expected = np.clip((batch - low[..., None, None]) / (high - low)[..., None, None], 0.0, 1.0)
    np.testing.assert_allclose(normalise(batch, "minmax", percentiles), expected, rtol=1e-5, atol=1e-6)


def test_zscore_gives_zero_mean_unit_std_and_constant_band_zero():
    rng = np.random.default_rng(1)
    image = np.stack([rng.normal(5, 3, (16, 16)), np.full((16, 16), 7.0)]).astype(np.float32)
    out = normalise(image, "zscore")
    np.testing.assert_allclose(out[0].mean(), 0, atol=1e-5)
    np.testing.assert_allclose(out[0].std(), 1, atol=1e-4)
    assert np.all(out[1] == 0)
    assert np.all(normalise(image, "minmax")[1] == 0)
    np.testing.assert_array_equal(normalise(image, "none"), image)


def test_normalise_rejects_bad_method_and_percentiles():
    with pytest.raises(ConfigError, match="unknown method"):
        normalise(np.ones((1, 4, 4)), "l2")
    with pytest.raises(ConfigError, match="clip_percentiles"):
        normalise(np.ones((1, 4, 4)), "minmax", (50, 10))


# -------------------------------------------------------------- geometry


def test_center_crop_shapes_and_keeps_source_centred():
    image = galsim_galaxy(65)
    by_pixels = center_crop(image, pixels=33)
    by_fraction = center_crop(image, fraction=0.5)
    assert by_pixels.shape == (3, 33, 33)
    assert by_fraction.shape == (3, 32, 32)
    assert center_crop(image, pixels=(21, 41)).shape == (3, 21, 41)
    peak = np.unravel_index(np.argmax(by_pixels[1]), by_pixels[1].shape)
    assert peak == (16, 16)


def test_center_crop_rejects_oversized_crop_naming_image():
    with pytest.raises(
        ImageShapeError, match=r"galaxy_7\.fits: crop 80x80 is larger than the image 64x64"
    ):
        center_crop(np.zeros((1, 64, 64)), pixels=80, name="galaxy_7.fits")
    with pytest.raises(ConfigError, match="exactly one"):
        center_crop(np.zeros((1, 64, 64)))


def test_resize_shape_centring_and_flux_level():
    image = galsim_galaxy(128)
    small = resize(image, 48)
    assert small.shape == (3, 48, 48) and small.dtype == np.float32
    row, col = centroid(small[1])
    assert abs(row - 23.5) < 0.05 and abs(col - 23.5) < 0.05
    # Bilinear averaging keeps the mean surface brightness.
    np.testing.assert_allclose(small.mean(axis=(1, 2)), image.mean(axis=(1, 2)), rtol=0.02)
    assert resize(image, (32, 16)).shape == (3, 32, 16)


@pytest.mark.parametrize("shape, size", [((3, 212, 212), 64), ((2, 50, 70), (64, 64)), ((1, 64, 64), (33, 47)),
                                         ((3, 40, 40), (90, 60))])
def test_resize_matches_torch_antialiased_bilinear(shape, size):
    # The network's training preprocessing was torch's; the PIL resampling that replaced it must agree.
    import torch
    from torch.nn import functional

    image = np.random.default_rng(0).normal(5.0, 100.0, shape).astype(np.float32)
    out = (size, size) if isinstance(size, int) else size
    expected = functional.interpolate(torch.from_numpy(image)[None], size=out, mode="bilinear", antialias=True,
                                      align_corners=False)[0].numpy()
    np.testing.assert_allclose(resize(image, size), expected, atol=1e-4 * np.abs(image).max())


def test_resize_spreads_a_non_finite_pixel_only_over_the_kernels_that_cover_it():
    import torch
    from torch.nn import functional

    image = np.ones((1, 20, 20), np.float32)
    image[0, 10, 10], image[0, 0, 3] = np.nan, np.inf
    expected = functional.interpolate(torch.from_numpy(image)[None], size=(10, 10), mode="bilinear", antialias=True,
                                      align_corners=False)[0].numpy()
    out = resize(image, 10)
    np.testing.assert_array_equal(~np.isfinite(out), ~np.isfinite(expected))
    assert 0 < (~np.isfinite(out)).sum() < 10
    np.testing.assert_allclose(out[np.isfinite(out)], 1.0, rtol=1e-6)


def test_resize_is_anti_aliased():
    checkerboard = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.float32)[None]
    small = resize(checkerboard, 16)
    # Without a low-pass filter, point sampling would return only 0s or 1s.
    np.testing.assert_allclose(small, 0.5, atol=0.05)


# ----------------------------------------------------------- non-finite


def test_fill_nonfinite_counts_and_fills_with_value_or_median():
    image = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
    image[0, 1, 1] = np.nan
    image[0, 2, 2] = np.inf
    image[1, 0, 0] = -np.inf
    filled, count = fill_nonfinite(image, fill=-1.0)
    assert count == 3
    assert np.isfinite(filled).all()
    assert filled[0, 1, 1] == -1.0 and filled[1, 0, 0] == -1.0

    by_median, _ = fill_nonfinite(image, fill="median")
    finite_band0 = image[0][np.isfinite(image[0])]
    assert by_median[0, 2, 2] == np.median(finite_band0)
    assert nonfinite_mask(image).sum() == 3


def test_fill_masked_rejects_unknown_fill():
    with pytest.raises(ConfigError, match="fill 'mean'"):
        fill_masked(np.ones((1, 3, 3)), np.zeros((3, 3), bool), fill="mean")


# ---------------------------------------------------------- preprocessor


def test_preprocessor_output_shape_dtype_and_range():
    config = PreprocessConfig(
        crop_pixels=96, output_size=32, stretch="asinh", stretch_softening=1.0
    )
    out = Preprocessor(config)(galsim_galaxy(128, sky=20.0, noise=1.0))
    assert out.shape == (3, 32, 32) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    row, col = centroid(out[1] - np.median(out[1]))
    assert abs(row - 15.5) < 0.5 and abs(col - 15.5) < 0.5


def test_preprocessor_on_real_jpeg_crops_resizes_and_centres(gz2_jpeg):
    prep = Preprocessor(PreprocessConfig(crop_pixels=207, output_size=69))
    out = prep(gz2_jpeg, source="gz2.jpg")
    assert out.shape == (3, 69, 69) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    brightest = np.unravel_index(np.argmax(resize(out.mean(axis=0)[None], 23)[0]), (23, 23))
    assert abs(brightest[0] - 11) <= 2 and abs(brightest[1] - 11) <= 2


def test_preprocessor_counts_and_fills_nonfinite_pixels():
    images = np.stack([galsim_galaxy(64, noise=0.5, seed=seed) for seed in range(3)])
    images[0, 0, 10:12, 10:12] = np.nan  # 4 pixels
    images[2, 1, 40, 40] = np.inf  # 1 pixel
    prep = Preprocessor(PreprocessConfig(output_size=None, nan_fill=-1.0, normalisation="none"))
    out = prep.batch(images)
    assert np.isfinite(out).all()
    assert np.all(out[0, 0, 10:12, 10:12] == -1.0) and out[2, 1, 40, 40] == -1.0
    assert prep.report() == {"images": 3, "images_with_nonfinite": 2, "nonfinite_pixels_filled": 5}
    prep(images[1])
    assert prep.report()["images"] == 4


def test_preprocessor_nan_does_not_spread_through_resize():
    image = galsim_galaxy(128, noise=0.5)
    image[:, 60, 60] = np.nan
    out = Preprocessor(PreprocessConfig(output_size=32))(image)
    clean = Preprocessor(PreprocessConfig(output_size=32))(
        np.nan_to_num(image, nan=float(np.nanmedian(image)))
    )
    assert np.isfinite(out).all()
    assert np.abs(out - clean).max() < 0.05


def test_preprocessor_rejects_all_nan_image_naming_it():
    with pytest.raises(EmptyImageError, match=r"^ngc1300\.fits: no finite pixel"):
        Preprocessor()(np.full((3, 16, 16), np.nan), source="ngc1300.fits")
    batch = np.ones((3, 1, 16, 16), np.float32)
    batch[1] = np.nan
    with pytest.raises(EmptyImageError, match=r"shard\[1\]: no finite pixel"):
        Preprocessor().batch(batch, source="shard")


def test_preprocessor_rejects_wrong_dimensions():
    with pytest.raises(ImageShapeError, match="stamp.png: expected"):
        Preprocessor()(np.ones((16, 16)), source="stamp.png")
    with pytest.raises(ImageShapeError, match="expected \\(N, bands"):
        Preprocessor().batch(np.ones((3, 16, 16)))


def test_preprocessor_batch_matches_single_images_and_accepts_uint8():
    images = np.stack([galsim_galaxy(48, noise=2.0, seed=seed) for seed in range(4)])
    prep = Preprocessor(
        PreprocessConfig(
            output_size=24,
            stretch="sqrt",
            polar=True,
            polar_radii=8,
            polar_angles=16,
            polar_extension=0.25,
        )
    )
    batch = prep.batch(images)
    assert batch.shape == (4, 3, 8, 20)
    for image, out in zip(images, batch):
        np.testing.assert_allclose(prep(image), out, atol=1e-6)
    as_bytes = np.clip(images, 0, 255).astype(np.uint8)
    assert prep.batch(as_bytes).dtype == np.float32


def test_sky_mask_changes_only_the_background_estimate():
    image = galsim_galaxy(64, sky=10.0, noise=1.0)
    mask = np.zeros((64, 64), bool)
    mask[:, :32] = True
    image_with_star = image.copy()
    image_with_star[:, :, :32] += 30.0
    config = PreprocessConfig(output_size=None, normalisation="none")
    out = Preprocessor(config)(image_with_star, mask=mask)
    assert abs(np.median(out[:, :, 40:])) < 0.5


def test_no_step_modifies_the_callers_array():
    image = galsim_galaxy(64, sky=5.0, noise=1.0)
    image[0, 3, 3] = np.nan
    original = image.copy()
    mask = np.zeros((64, 64), bool)
    subtract_background(image, mask=mask)
    stretch(image, "asinh")
    stretch(image, "linear")
    normalise(image, "minmax")
    normalise(image, "none")
    center_crop(image, pixels=32)
    resize(image, 64)
    fill_nonfinite(image)
    Preprocessor(PreprocessConfig(polar=True))(image, mask=mask)
    Preprocessor().batch(image[None])
    np.testing.assert_array_equal(image, original)
    # Outputs are new arrays even when a step has nothing to do.
    assert not np.shares_memory(stretch(image, "linear"), image)
    assert not np.shares_memory(resize(image, 64), image)
