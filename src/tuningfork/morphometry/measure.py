"""statmorph measurements for one galaxy or a whole collection.

statmorph marks a quantity it could not measure with -99; here such values
become NaN, and a row that could not be measured at all has
``measured = False`` plus the reason in ``error``, so that no sentinel can
leak into an average.  Every row also reports the sky level subtracted, the
sky rms used for the weights and a sky quality flag, because the Sersic fit
in particular is only as good as the sky under it.
"""

from __future__ import annotations

import copy
import multiprocessing
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import statmorph
from statmorph import statmorph as _statmorph_module

from ..errors import ConfigError, ImageShapeError, InputFileError
from .segmentation import label_nearest_centre, segment_central_source
from .sky import estimate_sky

#: statmorph's own list of scalar outputs, so the wrapper follows its releases.
ALL_QUANTITIES: tuple[str, ...] = tuple(_statmorph_module._quantity_names)
#: Outputs that exist only with ``include_doublesersic=True``.
DOUBLESERSIC_QUANTITIES: tuple[str, ...] = tuple(_statmorph_module._doublesersic_quantity_names)
#: The morphological parameter planes of the validation (Gini-M20, CAS),
#: Sersic index and half-light radius (``rhalf_circ``, pixels).
DEFAULT_QUANTITIES: tuple[str, ...] = (
    "gini",
    "m20",
    "concentration",
    "asymmetry",
    "smoothness",
    "sersic_n",
    "rhalf_circ",
    "gini_m20_bulge",
    "gini_m20_merger",
    "sn_per_pixel",
)
_STATMORPH_INVALID = -99.0
# Enough queued galaxies to keep every worker busy without holding a whole
# survey's pixels in memory at once.
_TASKS_PER_WORKER = 4


def _check_quantities(quantities: Sequence[str], include_doublesersic: bool) -> None:
    known = set(ALL_QUANTITIES) | (set(DOUBLESERSIC_QUANTITIES) if include_doublesersic else set())
    unknown = [q for q in quantities if q not in known]
    if unknown:
        hint = (
            " (double-Sersic quantities need include_doublesersic=True)"
            if any(q in DOUBLESERSIC_QUANTITIES for q in unknown)
            else ""
        )
        raise ConfigError(f"morphometry quantities: unknown {', '.join(unknown)}{hint}")


def _flag_names(include_doublesersic: bool) -> tuple[str, ...]:
    return ("flag", "flag_sersic") + (("flag_doublesersic",) if include_doublesersic else ())


#: Columns that report the sky handling of every measured galaxy.
SKY_COLUMNS: tuple[str, ...] = ("sky_level", "sky_rms", "sky_flag")


def read_mask(path: str | Path) -> np.ndarray:
    """Read a FITS (or other image) mask: nonzero marks a bad pixel.

    Parameters
    ----------
    path : str or Path
        Mask file holding one 2-D image.

    Returns
    -------
    ndarray
        bool map, True on the pixels to ignore.

    Raises
    ------
    MissingFileError, CorruptFileError, ImageShapeError
        If the file is missing, unreadable or not a single 2-D image.
    """
    from ..data.readers import read_image

    pixels = read_image(path, require_finite=False)
    if pixels.shape[0] != 1:
        raise ImageShapeError(path, f"a mask must be one 2-D image, got {pixels.shape[0]} planes")
    # NaN in a mask means "no valid value": treat it as bad, not as good.
    return ~np.isfinite(pixels[0]) | (pixels[0] != 0)


def read_psf(path: str | Path) -> np.ndarray:
    """Read a PSF image and normalise it to unit sum.

    Parameters
    ----------
    path : str or Path
        File holding one 2-D PSF image.

    Returns
    -------
    ndarray
        float64 PSF with sum 1.

    Raises
    ------
    MissingFileError, CorruptFileError, ImageShapeError, InputFileError
        If the file is missing, unreadable, not one 2-D image or not a
        finite image of positive sum.
    """
    from ..data.readers import read_image

    pixels = read_image(path, require_finite=False)
    if pixels.shape[0] != 1:
        raise ImageShapeError(path, f"a PSF must be one 2-D image, got {pixels.shape[0]} planes")
    return _normalised_psf(pixels[0], str(path))


def _normalised_psf(psf: np.ndarray, name: str) -> np.ndarray:
    kernel = np.array(psf, dtype=np.float64)
    if kernel.ndim != 2:
        raise ImageShapeError(name, f"a PSF must be 2-D, got shape {kernel.shape}")
    if not np.isfinite(kernel).all() or not kernel.sum() > 0:
        raise InputFileError(name, "a PSF must be finite with a positive sum")
    # Files differ (peak 1, sum 1...); statmorph convolves the model with the
    # PSF as given, so an unnormalised one would scale the fitted amplitude
    # and bias the fit's starting point.
    return kernel / kernel.sum()


def _bad_pixels(mask: np.ndarray | None, shape: tuple[int, ...], name: str, mask_name: str | None):
    if mask is None:
        return np.zeros(shape, dtype=bool)
    bad = np.array(mask, dtype=bool)
    if bad.shape != shape:
        # Name the mask file when there is one: it is the file to fix.
        raise ImageShapeError(
            mask_name or name, f"mask shape {bad.shape} differs from image {name} {shape}"
        )
    return bad


def _check_sky(sky) -> float | None:
    if sky is None or (isinstance(sky, str) and sky == "auto"):
        return None
    try:
        level = float(sky)
    except (TypeError, ValueError):
        raise ConfigError(f"morphometry: sky must be 'auto' or a number, got {sky!r}") from None
    if not np.isfinite(level):
        raise ConfigError(f"morphometry: sky must be finite, got {sky!r}")
    return level


def measure_morphology(
    image: np.ndarray,
    *,
    segmap: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    gain: float | None = None,
    weightmap: np.ndarray | None = None,
    psf: np.ndarray | None = None,
    sky: float | str | None = None,
    quantities: Sequence[str] = DEFAULT_QUANTITIES,
    include_doublesersic: bool = False,
    name: str = "image",
    mask_name: str | None = None,
    **statmorph_options,
) -> dict[str, float | int | str]:
    """Measure one galaxy with statmorph.

    Parameters
    ----------
    image : ndarray
        2-D image (not modified).
    segmap : ndarray, optional
        Integer segmentation map; the segment nearest the centre is measured.
        Without it the central source is found with photutils
        (:func:`segment_central_source`).
    mask : ndarray, optional
        Map of bad pixels to ignore, nonzero = bad (e.g. a survey's mask of
        stars and defects; non-finite pixels are always ignored).
    gain : float, optional
        Electrons per image unit, for statmorph's Poisson noise model (for
        bright galaxies this matters: uniform weights over-weight the
        outskirts relative to a photon-noise-limited core).
    weightmap : ndarray, optional
        Per-pixel 1-sigma uncertainty, in image units.  Without ``gain`` and
        ``weightmap``, a uniform map of the sky rms is used (right for
        background-dominated faint galaxies and for images, such as JPEG
        composites, whose gain is unknown).
    psf : ndarray, optional
        PSF image for the Sersic fits; normalised to unit sum here.
    sky : float or "auto", optional
        Sky level to subtract: ``"auto"`` measures it on the source-free
        pixels (:func:`~tuningfork.morphometry.sky.estimate_sky`), a number is
        a known level, ``0`` declares the image already sky-subtracted.
        Default: ``"auto"`` without ``segmap``, ``0`` with it (a given
        segmentation map comes with a prepared, sky-subtracted image, as
        statmorph expects).
    quantities : sequence of str
        statmorph outputs to return (see :data:`ALL_QUANTITIES`).
    include_doublesersic : bool
        Also fit statmorph's two-component model (e.g. bulge + disk; pass
        ``doublesersic_model_args`` to fix the disk's index to 1).
    name : str
        Name of the image (file or id), used in error messages.
    mask_name : str, optional
        Name of the mask file, for the error of a mask of the wrong shape.
    **statmorph_options
        Passed to :class:`statmorph.SourceMorphology` (e.g. ``cutout_extent``).

    Returns
    -------
    dict
        The requested quantities (NaN where statmorph could not measure
        them); statmorph's integer flags ``flag`` and ``flag_sersic`` (0
        good, 1 suspect, 2 bad, 4 catastrophic); ``sky_level`` and
        ``sky_rms`` (image units) and ``sky_flag`` (0 trusted, 1 suspect: too
        little source-free sky, or the galaxy reaches the cutout edge); and
        ``warnings``, statmorph's warnings joined by ``"; "`` (empty if none).

    Raises
    ------
    ImageShapeError, EmptyImageError, InputFileError, ConfigError
        For a non 2-D image, an image without finite pixels or source, a
        mask, segmentation map or PSF of the wrong shape, a sky without
        scatter, or unknown quantities.
    """
    _check_quantities(quantities, include_doublesersic)
    level = _check_sky("auto" if sky is None and segmap is None else 0.0 if sky is None else sky)
    # Keep float32 as float32: statmorph's results depend on the precision,
    # and the wrapper must give exactly what statmorph gives.
    pixels = np.array(image, dtype=np.result_type(np.asarray(image).dtype, np.float32))
    if pixels.ndim != 2:
        raise ImageShapeError(name, f"morphometry needs a 2-D image, got shape {pixels.shape}")
    ignore = _bad_pixels(mask, pixels.shape, name, mask_name)
    if psf is not None:
        psf = _normalised_psf(psf, f"{name} PSF")

    if segmap is None:
        source = segment_central_source(pixels, mask=ignore, sky=level, name=name)
        pixels, segmap, ignore, label = source.image, source.segmap, ignore | source.mask, 1
        sky_level, sky_rms, sky_flag = source.background, source.background_rms, source.sky_flag
    else:
        segmap = np.asarray(segmap)
        if segmap.shape != pixels.shape:
            raise ImageShapeError(
                name, f"segmap shape {segmap.shape} differs from image {pixels.shape}"
            )
        if not (segmap > 0).any():
            raise InputFileError(name, "segmentation map holds no source")
        invalid = ~np.isfinite(pixels)
        pixels[invalid] = 0.0
        ignore |= invalid
        label = label_nearest_centre(segmap)
        sky_flag = 0
        if level is None:
            estimate = estimate_sky(pixels, mask=ignore | (segmap > 0), name=name)
            level, sky_flag = estimate.level, estimate.flag
        if level != 0.0:
            pixels -= level
        sky_level = level
        # The pixels outside the given segments are the sky.
        sky_rms = _sky_rms(pixels, ignore | (segmap > 0), name)
    if gain is None and weightmap is None:
        weightmap = np.full(pixels.shape, sky_rms)

    with warnings.catch_warnings(record=True) as caught:
        # statmorph's warnings describe this galaxy: they go into its row,
        # not as raw lines on the console (one per galaxy of a survey).
        warnings.simplefilter("always")
        morph = statmorph.SourceMorphology(
            pixels,
            segmap,
            label,
            mask=ignore if ignore.any() else None,
            gain=gain,
            weightmap=weightmap,
            psf=psf,
            include_doublesersic=include_doublesersic,
            # statmorph writes its starting guesses into the model-argument
            # dicts it is given: a copy keeps the caller's (and the next
            # galaxy's) untouched.
            **copy.deepcopy(statmorph_options),
        )
        values: dict[str, float | int | str] = {}
        for quantity in quantities:
            value = float(morph[quantity])
            values[quantity] = np.nan if value == _STATMORPH_INVALID else value
        for flag in _flag_names(include_doublesersic):
            values[flag] = int(morph[flag])
    values["sky_level"] = float(sky_level)
    values["sky_rms"] = float(sky_rms)
    values["sky_flag"] = int(sky_flag)
    values["warnings"] = _warning_text(caught)
    return values


def _warning_text(caught) -> str:
    messages = []
    for record in caught:
        text = str(record.message).splitlines()[0] if str(record.message) else ""
        if text == "Image is not background-subtracted.":
            # statmorph tests the sky on one 32-px box of the cutout outside
            # the segment; where the galaxy fills the cutout, that box holds
            # galaxy light, not sky.  Keep statmorph's words (and its flag 2)
            # and say what else it can mean.
            text = (
                "Image is not background-subtracted (statmorph's sky box is not at zero: "
                "sky left in the image, or galaxy light where the galaxy fills the cutout)"
            )
        if text and text not in messages:
            messages.append(text)
    return "; ".join(messages)


def _sky_rms(pixels: np.ndarray, ignore: np.ndarray, name: str) -> float:
    from astropy.stats import sigma_clipped_stats

    _, _, rms = sigma_clipped_stats(pixels, mask=ignore, sigma=3.0)
    if not rms > 0:
        raise InputFileError(name, "sky has zero scatter; pass gain or weightmap")
    return float(rms)


def _as_2d(image: np.ndarray, band: int | None, name: str) -> np.ndarray:
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        return array
    if array.ndim != 3:
        raise ImageShapeError(name, f"expected (bands, H, W) or (H, W), got shape {array.shape}")
    if band is None:
        # An equal-weight sum keeps every band's light in a colour composite.
        return array.mean(axis=0)
    if not 0 <= band < array.shape[0]:
        raise ConfigError(f"{name}: band {band} requested but the image has {array.shape[0]} bands")
    return array[band]


def _measure_row(galaxy_id: str, image: np.ndarray, options: dict) -> dict:
    """Measure one galaxy for the catalog, turning any failure into a flagged row."""
    quantities = options["quantities"]
    try:
        values = measure_morphology(image, name=galaxy_id, **options)
        return {"id": galaxy_id, "measured": True, **values, "error": ""}
    except Exception as error:  # noqa: BLE001
        # One unmeasurable galaxy (no source, a failed fit inside statmorph)
        # must not abort a survey-sized run: it becomes a flagged NaN row.
        row = {"id": galaxy_id, "measured": False}
        row.update({q: np.nan for q in quantities})
        # statmorph's own code for a measurement that failed outright.
        row.update({flag: 4 for flag in _flag_names(options["include_doublesersic"])})
        row.update(sky_level=np.nan, sky_rms=np.nan, sky_flag=4, warnings="")
        row["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        return row


def _check_mask_shapes(galaxies, mask, mask_name):
    """Pass the galaxies on, raising at once for one the mask does not fit."""
    for galaxy_id, image in galaxies:
        # A mask of the wrong shape is the user's mistake, not a galaxy's
        # failure: stop with one error instead of a catalog of failed rows.
        if mask is not None and np.shape(mask) != image.shape:
            raise ImageShapeError(
                mask_name or "mask",
                f"mask shape {np.shape(mask)} differs from image {galaxy_id} {image.shape}",
            )
        yield galaxy_id, image


def _iter_galaxies(
    source, ids: Sequence[str] | None, band: int | None
) -> Iterator[tuple[str, np.ndarray]]:
    if hasattr(source, "iter_batches"):
        # One galaxy at a time: raw stamps of a collection may differ in size.
        for galaxy in source:
            yield galaxy.id, _as_2d(galaxy.image, band, galaxy.id)
        return
    images = list(source) if not isinstance(source, np.ndarray) else source
    names = [str(i) for i in ids] if ids is not None else [str(i) for i in range(len(images))]
    if len(names) != len(images):
        raise ConfigError(f"morphometry: {len(names)} ids for {len(images)} images")
    for galaxy_id, image in zip(names, images):
        yield galaxy_id, _as_2d(image, band, galaxy_id)


def morphometry_catalog(
    source,
    ids: Sequence[str] | None = None,
    *,
    band: int | None = None,
    gain: float | None = None,
    mask: np.ndarray | str | Path | None = None,
    psf: np.ndarray | str | Path | None = None,
    sky: float | str = "auto",
    quantities: Sequence[str] = DEFAULT_QUANTITIES,
    include_doublesersic: bool = False,
    n_workers: int = 1,
    output: str | Path | None = None,
    overwrite: bool = False,
    **statmorph_options,
):
    """Measure every galaxy of a collection, in parallel processes.

    Parameters
    ----------
    source : GalaxyCollection or sequence of ndarray
        The galaxies: a :class:`tuningfork.data.GalaxyCollection` (raw,
        un-stretched images are read) or images shaped (H, W) or
        (bands, H, W).
    ids : sequence of str, optional
        Ids of the images when ``source`` is a sequence (default: 0, 1, ...).
    band : int, optional
        Band to measure; by default the mean of all bands.
    gain : float, optional
        Electrons per image unit (see :func:`measure_morphology`).
    mask : ndarray, str or Path, optional
        Bad-pixel map (nonzero = bad), or a FITS file holding one, applied
        to every image; each image must have its shape.
    psf : ndarray, str or Path, optional
        PSF image, or a file holding one, for the Sersic fits (normalised
        to unit sum).
    sky : float or "auto"
        ``"auto"`` measures and subtracts each image's sky; a number is a
        known level to subtract (``0``: already sky-subtracted).
    quantities : sequence of str
        statmorph outputs to keep.
    include_doublesersic : bool
        Also fit the bulge + disk model.
    n_workers : int
        Worker processes; 1 measures in this process.
    output : str or Path, optional
        Write the catalog there (CSV, Parquet or FITS), atomically.
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).
    **statmorph_options
        Passed to :class:`statmorph.SourceMorphology`.

    Returns
    -------
    astropy.table.Table
        One row per galaxy, in input order: ``id``, ``measured``, the
        quantities (NaN when not measured), statmorph's flags, ``sky_level``,
        ``sky_rms``, ``sky_flag`` (see :func:`measure_morphology`),
        ``warnings`` and ``error`` (empty when measured).

    Raises
    ------
    ImageShapeError
        If the mask's shape differs from an image's (naming the mask file).
    MissingFileError, CorruptFileError
        If a mask or PSF file is missing or unreadable.
    """
    from astropy.table import Table

    from ..data.writers import check_output, write_table

    if output is not None:
        check_output(output, overwrite=overwrite)
    _check_quantities(quantities, include_doublesersic)
    _check_sky(sky)
    mask_name = None
    if isinstance(mask, (str, Path)):
        mask_name, mask = str(mask), read_mask(mask)
    if isinstance(psf, (str, Path)):
        psf = read_psf(psf)
    if n_workers < 1:
        raise ConfigError(f"morphometry: n_workers must be at least 1, got {n_workers}")
    options = dict(
        quantities=tuple(quantities),
        include_doublesersic=include_doublesersic,
        gain=gain,
        mask=mask,
        mask_name=mask_name,
        psf=psf,
        sky=sky,
        **statmorph_options,
    )
    galaxies = _check_mask_shapes(_iter_galaxies(source, ids, band), mask, mask_name)
    if n_workers == 1:
        rows = [_measure_row(galaxy_id, image, options) for galaxy_id, image in galaxies]
    else:
        rows = []
        # Not plain fork: the parent may hold torch or BLAS threads, and a
        # forked copy of a threaded process can deadlock.  A fork server is
        # a clean process that imports statmorph once for all workers.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        with ProcessPoolExecutor(max_workers=n_workers, mp_context=context) as executor:
            pending = deque()
            for galaxy_id, image in galaxies:
                pending.append(executor.submit(_measure_row, galaxy_id, image, options))
                if len(pending) >= n_workers * _TASKS_PER_WORKER:
                    rows.append(pending.popleft().result())
            rows.extend(future.result() for future in pending)
    if not rows:
        raise ConfigError("morphometry: the source holds no galaxy")
    columns = [
        "id",
        "measured",
        *quantities,
        *_flag_names(include_doublesersic),
        *SKY_COLUMNS,
        "warnings",
        "error",
    ]
    table = Table(rows=[[row[c] for c in columns] for row in rows], names=columns)
    if output is not None:
        write_table(output, table)
    return table
