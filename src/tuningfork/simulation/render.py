"""Drawing simulated galaxies: PSF, pixels, noise, and the parallel loop.

Each galaxy's random numbers come from ``SeedSequence(seed, spawn_key=(index,))``
alone, so a galaxy looks the same whichever worker draws it and however the
work is chunked.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import galsim
import numpy as np

from .classes import BUILDERS, StampFrame

PSF_KINDS: tuple[str, ...] = ("moffat", "kolmogorov")
NOISE_KINDS: tuple[str, ...] = ("gaussian", "poisson", "cosmos", "none")
# Typical of ground-based seeing profiles; fixed so that psf_fwhm alone sets the PSF.
_MOFFAT_BETA = 3.0
# Chunks several times smaller than n / workers keep both workers busy to the end.
_CHUNKS_PER_WORKER = 8
_MAX_CHUNK = 256


@dataclass(frozen=True)
class RenderConfig:
    """Everything a worker needs to draw any galaxy of a sample (picklable).

    Parameters
    ----------
    frame : StampFrame
        The stamp every class builder draws into: side (pixels), pixel
        scale (arcsec / pixel) and band names.
    psf : str
        One of :data:`PSF_KINDS`.
    psf_fwhm : (float, float)
        Range (arcsec) from which each galaxy's PSF FWHM is drawn uniformly;
        equal bounds give a fixed PSF.
    noise : str
        One of :data:`NOISE_KINDS`.
    noise_level : float
        Noise standard deviation per pixel (image units) for ``gaussian`` and
        ``cosmos``; sky level per pixel (counts) for ``poisson``.
    snr : (float, float) or None
        Range from which each galaxy's signal-to-noise ratio is drawn
        log-uniformly; None draws the flux from ``flux_range`` instead.
    flux_range : (float, float)
        Range of the r-band flux (image units) drawn log-uniformly when ``snr`` is None.
    seed : int
        Seed of the whole sample.
    """

    frame: StampFrame
    psf: str
    psf_fwhm: tuple[float, float]
    noise: str
    noise_level: float
    snr: tuple[float, float] | None
    flux_range: tuple[float, float]
    seed: int

    @property
    def noise_sigma(self) -> float:
        """Per-pixel noise standard deviation (image units) that defines the SNR."""
        return math.sqrt(self.noise_level) if self.noise == "poisson" else self.noise_level


@dataclass
class RenderedChunk:
    """Stamps of consecutive galaxies drawn by one worker.

    Parameters
    ----------
    indices : ndarray of int
        Positions of the galaxies in the sample.
    images : ndarray
        Noisy stamps, float32 ``(n, bands, size, size)``.
    noiseless : ndarray or None
        The same stamps before noise, or None when not requested.
    params : list of dict
        True parameters of each galaxy.
    """

    indices: np.ndarray
    images: np.ndarray
    noiseless: np.ndarray | None
    params: list[dict]


def make_psf(kind: str, fwhm: float) -> galsim.GSObject:
    """The point-spread function.

    Parameters
    ----------
    kind : str
        ``moffat`` (beta = 3) or ``kolmogorov`` (atmospheric turbulence).
    fwhm : float
        Full width at half maximum (arcsec).

    Returns
    -------
    galsim.GSObject
    """
    if kind == "moffat":
        return galsim.Moffat(beta=_MOFFAT_BETA, fwhm=fwhm)
    return galsim.Kolmogorov(fwhm=fwhm)


@functools.lru_cache(maxsize=4)
def _cosmos_noise(variance: float) -> galsim.BaseCorrelatedNoise:
    # Measured on HST ACS F814W blank sky; GalSim resamples its correlation
    # function onto our pixel scale when it draws.
    return galsim.getCOSMOSNoise(variance=variance)


def _add_noise(
    image: np.ndarray, config: RenderConfig, rng: np.random.Generator, gs_rng: galsim.BaseDeviate
) -> None:
    """Add noise to a noiseless stamp in place (the stamp is the renderer's own copy)."""
    # numpy draws white noise ~50 times faster than GalSim's deviates.
    if config.noise == "gaussian":
        image += rng.normal(0.0, config.noise_level, image.shape).astype(np.float32)
    elif config.noise == "poisson":
        # Ringing of the FFT can leave a tiny negative flux; no pixel can hold fewer than 0 counts.
        expected = np.clip(image, 0.0, None) + config.noise_level
        image[...] = rng.poisson(expected).astype(np.float32) - config.noise_level
    elif config.noise == "cosmos":
        noise = _cosmos_noise(config.noise_level**2).copy(rng=gs_rng)
        for band_image in image:
            galsim.ImageF(band_image, scale=config.frame.pixel_scale).addNoise(noise)


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def render_galaxy(
    index: int, label: str, config: RenderConfig
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Draw one galaxy of a sample.

    Parameters
    ----------
    index : int
        Position in the sample; with ``config.seed`` it fixes every random draw.
    label : str
        Class name, a key of :data:`tuningfork.simulation.classes.BUILDERS`.
    config : RenderConfig
        Stamp, PSF and noise settings.

    Returns
    -------
    image : ndarray
        Noisy stamp, float32 ``(bands, size, size)``.
    noiseless : ndarray
        The stamp before noise, float32.
    params : dict
        True parameters (catalog columns).
    """
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(index,)))
    gs_rng = galsim.BaseDeviate(int(rng.integers(1, 2**31)))
    frame = config.frame
    model = BUILDERS[label](rng, gs_rng, frame)

    psf_fwhm = float(rng.uniform(*config.psf_fwhm))
    psf = make_psf(config.psf, psf_fwhm)
    offset = rng.uniform(-0.5, 0.5, 2)
    # Each profile is convolved and drawn once; bands are weighted sums of the
    # drawings, which is exact because the PSF is the same in every band.
    drawings = np.stack(
        [
            galsim.Convolve(profile, psf)
            .drawImage(
                nx=frame.size, ny=frame.size, scale=frame.pixel_scale, offset=tuple(offset)
            )
            .array
            for profile, _ in model.components
        ]
    )
    band_weights = np.stack([weights for _, weights in model.components])
    noiseless = np.einsum("cb,chw->bhw", band_weights, drawings)
    band_fluxes = np.array([profile.flux for profile, _ in model.components]) @ band_weights

    # Matched-filter SNR of the band stack for unit r-band flux; scaling the
    # flux scales it linearly.
    unit_snr = math.sqrt(float(np.sum(noiseless**2))) / config.noise_sigma
    if config.snr is None:
        flux = _log_uniform(rng, config.flux_range)
    else:
        flux = _log_uniform(rng, config.snr) / unit_snr
    noiseless *= flux

    image = noiseless.astype(np.float32)
    _add_noise(image, config, rng, gs_rng)

    params = dict(model.params)
    params.update(
        flux=flux,
        snr=unit_snr * flux,
        psf_fwhm_arcsec=psf_fwhm,
        noise_sigma=config.noise_sigma if config.noise != "none" else 0.0,
        x_offset_pix=float(offset[0]),
        y_offset_pix=float(offset[1]),
        **{f"flux_{band}": flux * float(value) for band, value in zip(frame.bands, band_fluxes)},
    )
    return image, noiseless.astype(np.float32), params


def render_chunk(
    indices: np.ndarray, labels: list[str], config: RenderConfig, keep_noiseless: bool
) -> RenderedChunk:
    """Draw consecutive galaxies (the unit of work of one process).

    Parameters
    ----------
    indices : ndarray of int
        Positions of the galaxies in the sample.
    labels : list of str
        Their class names.
    config : RenderConfig
        Stamp, PSF and noise settings.
    keep_noiseless : bool
        Return the noiseless stamps too.

    Returns
    -------
    RenderedChunk
    """
    shape = (len(indices), len(config.frame.bands), config.frame.size, config.frame.size)
    images = np.empty(shape, dtype=np.float32)
    noiseless = np.empty(shape, dtype=np.float32) if keep_noiseless else None
    params = []
    for row, (index, label) in enumerate(zip(indices, labels)):
        image, clean, galaxy_params = render_galaxy(int(index), label, config)
        images[row] = image
        if noiseless is not None:
            noiseless[row] = clean
        params.append(galaxy_params)
    return RenderedChunk(np.asarray(indices), images, noiseless, params)


def render_all(
    labels: list[str],
    config: RenderConfig,
    workers: int,
    keep_noiseless: bool,
    on_chunk_done: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None, list[dict]]:
    """Draw a whole sample, in ``workers`` processes when more than one.

    Parameters
    ----------
    labels : list of str
        Class name of every galaxy, in sample order.
    config : RenderConfig
        Stamp, PSF and noise settings.
    workers : int
        Number of processes; 1 draws in the calling process.
    keep_noiseless : bool
        Return the noiseless stamps too.
    on_chunk_done : callable, optional
        Called with the number of galaxies of each finished chunk (progress).

    Returns
    -------
    images : ndarray
        float32 ``(n, bands, size, size)``.
    noiseless : ndarray or None
    params : list of dict
        True parameters, in sample order.
    """
    n = len(labels)
    chunk_size = max(1, min(_MAX_CHUNK, math.ceil(n / (workers * _CHUNKS_PER_WORKER))))
    starts = range(0, n, chunk_size)
    jobs = [
        (np.arange(start, min(start + chunk_size, n)), labels[start : start + chunk_size])
        for start in starts
    ]

    shape = (n, len(config.frame.bands), config.frame.size, config.frame.size)
    images = np.empty(shape, dtype=np.float32)
    noiseless = np.empty(shape, dtype=np.float32) if keep_noiseless else None
    params: list[dict] = [{} for _ in range(n)]

    def collect(chunk: RenderedChunk) -> None:
        images[chunk.indices] = chunk.images
        if noiseless is not None:
            noiseless[chunk.indices] = chunk.noiseless
        for index, galaxy_params in zip(chunk.indices, chunk.params):
            params[index] = galaxy_params
        if on_chunk_done is not None:
            on_chunk_done(len(chunk.indices))

    if workers == 1:
        for indices, chunk_labels in jobs:
            collect(render_chunk(indices, chunk_labels, config, keep_noiseless))
    else:
        with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [
                pool.submit(render_chunk, indices, chunk_labels, config, keep_noiseless)
                for indices, chunk_labels in jobs
            ]
            for future in concurrent.futures.as_completed(futures):
                collect(future.result())
    return images, noiseless, params
