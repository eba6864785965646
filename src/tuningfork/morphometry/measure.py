"""statmorph measurements for one galaxy or a whole collection.

statmorph marks a quantity it could not measure with -99; here such values
become NaN, and a row that could not be measured at all has
``measured = False`` plus the reason in ``error``, so that no sentinel can
leak into an average.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import statmorph
from statmorph import statmorph as _statmorph_module

from ..errors import ConfigError, ImageShapeError, InputFileError
from .segmentation import label_nearest_centre, segment_central_source

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


def _sky_rms(pixels: np.ndarray, ignore: np.ndarray, name: str) -> float:
    from astropy.stats import sigma_clipped_stats

    _, _, rms = sigma_clipped_stats(pixels, mask=ignore, sigma=3.0)
    if not rms > 0:
        raise InputFileError(name, "sky has zero scatter; pass gain or weightmap")
    return float(rms)


def measure_morphology(
    image: np.ndarray,
    *,
    segmap: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    gain: float | None = None,
    weightmap: np.ndarray | None = None,
    psf: np.ndarray | None = None,
    quantities: Sequence[str] = DEFAULT_QUANTITIES,
    include_doublesersic: bool = False,
    name: str = "image",
    **statmorph_options,
) -> dict[str, float | int]:
    """Measure one galaxy with statmorph.

    Parameters
    ----------
    image : ndarray
        2-D image.  Without ``segmap`` the sky is estimated and subtracted
        and the central source found with photutils
        (:func:`segment_central_source`); with ``segmap`` the image must
        already be sky-subtracted, as statmorph expects.
    segmap : ndarray, optional
        Integer segmentation map; the segment nearest the centre is measured.
    mask : ndarray, optional
        bool map of pixels to ignore (non-finite pixels are always ignored).
    gain : float, optional
        Electrons per image unit, for statmorph's Poisson noise model.
    weightmap : ndarray, optional
        Per-pixel 1-sigma uncertainty, in image units.  Without ``gain`` and
        ``weightmap``, a uniform map of the sigma-clipped sky rms is used
        (right for background-dominated faint galaxies and for images, such
        as JPEG composites, whose gain is unknown).
    psf : ndarray, optional
        PSF image for the Sersic fits.
    quantities : sequence of str
        statmorph outputs to return (see :data:`ALL_QUANTITIES`).
    include_doublesersic : bool
        Also fit statmorph's bulge + disk model.
    name : str
        Name of the image (file or id), used in error messages.
    **statmorph_options
        Passed to :class:`statmorph.SourceMorphology` (e.g. ``cutout_extent``).

    Returns
    -------
    dict
        The requested quantities (NaN where statmorph could not measure
        them) and statmorph's integer flags ``flag`` and ``flag_sersic``
        (0 good, 1 suspect, 2 bad, 4 catastrophic).

    Raises
    ------
    ImageShapeError, EmptyImageError, InputFileError, ConfigError
        For a non 2-D image, an image without finite pixels or source, a
        segmentation map of the wrong shape, or unknown quantities.
    """
    _check_quantities(quantities, include_doublesersic)
    # Keep float32 as float32: statmorph's results depend on the precision,
    # and the wrapper must give exactly what statmorph gives.
    pixels = np.array(image, dtype=np.result_type(np.asarray(image).dtype, np.float32))
    if pixels.ndim != 2:
        raise ImageShapeError(name, f"morphometry needs a 2-D image, got shape {pixels.shape}")
    ignore = np.zeros(pixels.shape, dtype=bool) if mask is None else np.array(mask, dtype=bool)
    if ignore.shape != pixels.shape:
        raise ImageShapeError(name, f"mask shape {ignore.shape} differs from image {pixels.shape}")

    if segmap is None:
        source = segment_central_source(pixels, name=name)
        pixels, segmap, ignore, label = source.image, source.segmap, ignore | source.mask, 1
        sky_rms = source.background_rms
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
        sky_rms = None
    if gain is None and weightmap is None:
        if sky_rms is None:
            sky_rms = _sky_rms(pixels, ignore | (segmap > 0), name)
        weightmap = np.full(pixels.shape, sky_rms)

    morph = statmorph.SourceMorphology(
        pixels,
        segmap,
        label,
        mask=ignore if ignore.any() else None,
        gain=gain,
        weightmap=weightmap,
        psf=psf,
        include_doublesersic=include_doublesersic,
        **statmorph_options,
    )
    values: dict[str, float | int] = {}
    for quantity in quantities:
        value = float(morph[quantity])
        values[quantity] = np.nan if value == _STATMORPH_INVALID else value
    for flag in _flag_names(include_doublesersic):
        values[flag] = int(morph[flag])
    return values


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
        row["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        return row


def _iter_galaxies(
    source, ids: Sequence[str] | None, band: int | None
) -> Iterator[tuple[str, np.ndarray]]:
    if hasattr(source, "iter_batches"):
        for batch in source.iter_batches(32):
            for galaxy_id, image in zip(batch.ids, batch.images):
                yield str(galaxy_id), _as_2d(image, band, str(galaxy_id))
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
    quantities: Sequence[str] = DEFAULT_QUANTITIES,
    include_doublesersic: bool = False,
    n_workers: int = 1,
    output: str | Path | None = None,
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
    quantities : sequence of str
        statmorph outputs to keep.
    include_doublesersic : bool
        Also fit the bulge + disk model.
    n_workers : int
        Worker processes; 1 measures in this process.
    output : str or Path, optional
        Write the catalog there (CSV, Parquet or FITS), atomically.
    **statmorph_options
        Passed to :class:`statmorph.SourceMorphology`.

    Returns
    -------
    astropy.table.Table
        One row per galaxy, in input order: ``id``, ``measured``, the
        quantities (NaN when not measured), statmorph's flags and ``error``
        (empty when measured).
    """
    from astropy.table import Table

    from ..data.writers import write_table

    _check_quantities(quantities, include_doublesersic)
    if n_workers < 1:
        raise ConfigError(f"morphometry: n_workers must be at least 1, got {n_workers}")
    options = dict(
        quantities=tuple(quantities),
        include_doublesersic=include_doublesersic,
        gain=gain,
        **statmorph_options,
    )
    galaxies = _iter_galaxies(source, ids, band)
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
    columns = ["id", "measured", *quantities, *_flag_names(include_doublesersic), "error"]
    table = Table(rows=[[row[c] for c in columns] for row in rows], names=columns)
    if output is not None:
        write_table(output, table)
    return table
