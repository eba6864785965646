"""The eight simulated morphological classes and how each one is built.

Every builder turns a random generator into a :class:`GalaxyModel`: a list of
pre-PSF GalSim profiles, each with its flux in every band, plus the true
parameters that go into the catalog.  Profiles are normalised so that the
galaxy's intrinsic (pre-dust) r-band flux is 1; the renderer scales them to the
requested flux or signal-to-noise ratio.

Geometry conventions: sizes are in arcsec, position angles in degrees counter-
clockwise from the +x axis of the image, axis ratios are minor/major.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import galsim
import numpy as np
from scipy import optimize, special

SIMULATED_CLASSES: tuple[str, ...] = (
    "elliptical",
    "lenticular",
    "spiral",
    "barred_spiral",
    "edge_on",
    "irregular",
    "merger",
    "star",
)

#: Effective wavelengths (nm) of the bands whose colours are modelled (SDSS/HSC/LSST ugrizy).
BAND_WAVELENGTHS_NM: dict[str, float] = {
    "u": 355.0,
    "g": 475.0,
    "r": 622.0,
    "i": 763.0,
    "z": 905.0,
    "y": 1000.0,
}

# Magnitude offsets m_band - m_r of each stellar population, close to the SDSS
# colours of nearby galaxies (red sequence g-r ~ 0.75, blue cloud g-r ~ 0.4).
_POPULATION_COLOURS: dict[str, dict[str, float]] = {
    "old": {"u": 2.5, "g": 0.75, "r": 0.0, "i": -0.40, "z": -0.70, "y": -0.80},
    "intermediate": {"u": 1.9, "g": 0.60, "r": 0.0, "i": -0.32, "z": -0.55, "y": -0.62},
    "young": {"u": 1.3, "g": 0.40, "r": 0.0, "i": -0.20, "z": -0.30, "y": -0.35},
    "starburst": {"u": 0.8, "g": 0.20, "r": 0.0, "i": -0.10, "z": -0.15, "y": -0.18},
}
# Stars span the main sequence: each star's colour is drawn between these two.
_HOT_STAR = {"u": 0.6, "g": 0.05, "r": 0.0, "i": -0.05, "z": -0.05, "y": -0.05}
_COOL_STAR = {"u": 3.4, "g": 1.40, "r": 0.0, "i": -0.90, "z": -1.40, "y": -1.60}
# Galaxy-to-galaxy scatter of every colour (mag).
_COLOUR_SCATTER_MAG = 0.05

# Truncating Sersic profiles at a fixed multiple of the half-light radius keeps
# their FFTs small, and quantising n lets GalSim reuse its per-n lookup tables
# (a new n costs ~0.1 s, a cached one ~5 ms).
_SERSIC_TRUNCATION = 8.0
_SERSIC_N_STEP = 0.25
# Arrays drawn for InterpolatedImage are sampled this many times finer than the
# output pixels so that the PSF, not the array grid, limits the resolution.
_ARRAY_OVERSAMPLING = 2


@dataclass(frozen=True)
class StampFrame:
    """What a builder needs to know about the stamp it draws into.

    Parameters
    ----------
    size : int
        Stamp side (pixels).
    pixel_scale : float
        Pixel scale (arcsec / pixel).
    bands : tuple of str
        Band names, keys of :data:`BAND_WAVELENGTHS_NM`.
    """

    size: int
    pixel_scale: float
    bands: tuple[str, ...]

    def random_radius(self, rng: np.random.Generator, smallest: float, largest: float) -> float:
        """Draw a radius (arcsec) log-uniformly between two fractions of the stamp side.

        Tying sizes to the stamp keeps every class framed alike at any stamp size.
        """
        fraction = np.exp(rng.uniform(np.log(smallest), np.log(largest)))
        return float(fraction * self.size * self.pixel_scale)


@dataclass
class GalaxyModel:
    """A galaxy before the PSF: profiles with per-band fluxes, and its true parameters.

    Parameters
    ----------
    components : list of (galsim.GSObject, ndarray)
        Each profile is drawn once and added to every band with the weight in
        the array (shape ``(n_bands,)``, flux in that band per unit profile flux).
    params : dict
        True parameters for the catalog (column name -> value).
    """

    components: list[tuple[galsim.GSObject, np.ndarray]] = field(default_factory=list)
    params: dict[str, float | bool] = field(default_factory=dict)

    def add(self, profile: galsim.GSObject, band_fluxes: np.ndarray) -> None:
        """Append a profile with its flux in each band."""
        self.components.append((profile, np.asarray(band_fluxes, dtype=np.float64)))


def population_band_fluxes(
    population: str | dict[str, float], bands: tuple[str, ...], rng: np.random.Generator
) -> np.ndarray:
    """Flux in each band of a stellar population whose r-band flux is 1.

    Parameters
    ----------
    population : str or dict
        A key of the population table (``old``, ``intermediate``, ``young``,
        ``starburst``) or a dict of magnitude offsets ``m_band - m_r``.
    bands : tuple of str
        Band names.
    rng : numpy.random.Generator
        Source of the galaxy-to-galaxy colour scatter.

    Returns
    -------
    ndarray
        Shape ``(len(bands),)``.
    """
    offsets = _POPULATION_COLOURS[population] if isinstance(population, str) else population
    magnitudes = np.array([offsets[band] for band in bands])
    magnitudes = magnitudes + rng.normal(0.0, _COLOUR_SCATTER_MAG, len(bands))
    return 10.0 ** (-0.4 * magnitudes)


def _random_position_angle(rng: np.random.Generator) -> float:
    return float(rng.uniform(0.0, 180.0))


def _sersic(n: float, half_light_radius: float) -> galsim.Sersic:
    return galsim.Sersic(
        n=n,
        half_light_radius=half_light_radius,
        trunc=_SERSIC_TRUNCATION * half_light_radius,
        flux_untruncated=False,
    )


def _quantised_sersic_index(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.round(rng.uniform(low, high) / _SERSIC_N_STEP) * _SERSIC_N_STEP)


def _oriented(profile: galsim.GSObject, q: float, position_angle: float) -> galsim.GSObject:
    return profile.shear(q=q, beta=position_angle * galsim.degrees)


@functools.lru_cache(maxsize=256)
def _sersic_shape(n: float, truncated: bool) -> tuple[float, float]:
    """Scale radius and truncation radius, in half-light radii, of a GalSim Sersic profile."""
    profile = _sersic(n, 1.0) if truncated else galsim.Sersic(n=n, half_light_radius=1.0)
    return profile.scale_radius, (_SERSIC_TRUNCATION if truncated else np.inf)


def _enclosed_fraction(n: float, truncated: bool, radius: float) -> float:
    """Fraction of a unit-half-light-radius Sersic profile's flux inside ``radius``."""
    scale, trunc = _sersic_shape(n, truncated)
    inside = special.gammainc(2 * n, (min(radius, trunc) / scale) ** (1 / n))
    total = special.gammainc(2 * n, (trunc / scale) ** (1 / n)) if np.isfinite(trunc) else 1.0
    return inside / total


def composite_half_light_radius(parts: list[tuple[float, float, float, bool]]) -> float:
    """Half-light radius of a sum of concentric, circularised Sersic profiles.

    Parameters
    ----------
    parts : list of (n, half_light_radius, flux_fraction, truncated)
        Each component's Sersic index, half-light radius (any unit), share of
        the flux (summing to 1) and whether it is truncated like :func:`_sersic`.

    Returns
    -------
    float
        The radius (same unit) that encloses half of the total flux.
    """

    def excess(radius: float) -> float:
        return (
            sum(
                fraction * _enclosed_fraction(n, truncated, radius / hlr)
                for n, hlr, fraction, truncated in parts
            )
            - 0.5
        )

    largest = max(hlr for _, hlr, _, _ in parts)
    return float(optimize.brentq(excess, 1e-6 * largest, 50.0 * largest, xtol=1e-6 * largest))


def _scale_to_half_light_radius(
    target: float, parts: list[tuple[float, float, float, bool]]
) -> float:
    """Factor that gives components of relative sizes ``parts`` a total half-light radius ``target``."""
    return target / composite_half_light_radius(parts)


def _array_profile(array: np.ndarray, grid_scale: float, flux: float) -> galsim.InterpolatedImage:
    """A pre-PSF profile sampled on a fine grid, normalised to ``flux``."""
    # The grid is finer than the stamp and covers the galaxy, so the default
    # (slow) search for the profile's extent is not needed.
    return galsim.InterpolatedImage(
        galsim.ImageD(np.ascontiguousarray(array), scale=grid_scale),
        flux=flux,
        calculate_stepk=False,
        calculate_maxk=False,
    )


def _fine_grid(frame: StampFrame, half_extent: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Coordinates (arcsec) of an oversampled square grid reaching ``half_extent`` from the centre."""
    grid_scale = frame.pixel_scale / _ARRAY_OVERSAMPLING
    # Beyond 1.5 half-stamps no light can reach the stamp, even after the
    # inclination shear stretches the grid along the major axis.
    largest_half_extent = 1.5 * 0.5 * frame.size * frame.pixel_scale
    n_side = 2 * int(np.ceil(min(half_extent, largest_half_extent) / grid_scale))
    coords = (np.arange(n_side) - (n_side - 1) / 2) * grid_scale
    x, y = np.meshgrid(coords, coords)
    return x, y, grid_scale


def _mean_arm_pattern(sharpness: float) -> float:
    """Azimuthal mean of ``((1 + cos m theta) / 2) ** sharpness``, for any m."""
    return float(special.gamma(sharpness + 0.5) / (np.sqrt(np.pi) * special.gamma(sharpness + 1.0)))


def _spiral_disk(
    frame: StampFrame,
    scale_length: float,
    n_arms: int,
    pitch_deg: float,
    winding: int,
    arm_start: float,
    arm_phase: float,
    amplitude: float,
    sharpness: float,
    flux: float,
) -> galsim.InterpolatedImage:
    """A face-on exponential disk whose light is gathered into logarithmic spiral arms.

    The arm modulation is normalised to an azimuthal mean of one at every
    radius, so the disk keeps its exponential radial profile (and half-light
    radius) whatever the arms look like.  Arms pass through ``(arm_start,
    arm_phase)`` and fade inside ``arm_start``, where a bulge or bar dominates.
    """
    x, y, grid_scale = _fine_grid(frame, 8.0 * scale_length)
    radius = np.hypot(x, y)
    theta = np.arctan2(y, x)
    safe_radius = np.maximum(radius, 0.05 * scale_length)
    arm_angle = arm_phase + winding * np.log(safe_radius / arm_start) / np.tan(
        np.radians(pitch_deg)
    )
    pattern = (0.5 * (1.0 + np.cos(n_arms * (theta - arm_angle)))) ** sharpness
    strength = amplitude * (1.0 - np.exp(-((radius / arm_start) ** 2)))
    modulation = 1.0 - strength + strength * pattern / _mean_arm_pattern(sharpness)
    return _array_profile(np.exp(-radius / scale_length) * modulation, grid_scale, flux)


def _build_elliptical(
    rng: np.random.Generator, gs_rng: galsim.BaseDeviate, frame: StampFrame
) -> GalaxyModel:
    hlr = frame.random_radius(rng, 1 / 32, 1 / 10)
    n = _quantised_sersic_index(rng, 2.5, 6.0)
    q = float(rng.uniform(0.5, 1.0))
    angle = _random_position_angle(rng)
    model = GalaxyModel(
        params={"half_light_radius_arcsec": hlr, "sersic_n": n, "q": q, "position_angle_deg": angle}
    )
    model.add(_oriented(_sersic(n, hlr), q, angle), population_band_fluxes("old", frame.bands, rng))
    return model


def _build_lenticular(
    rng: np.random.Generator, gs_rng: galsim.BaseDeviate, frame: StampFrame
) -> GalaxyModel:
    hlr = frame.random_radius(rng, 1 / 24, 1 / 9)
    bulge_fraction = float(rng.uniform(0.3, 0.7))
    bulge_size = float(rng.uniform(0.2, 0.5))
    q = float(rng.uniform(0.3, 1.0))
    bulge_q = float(max(q, rng.uniform(0.6, 1.0)))
    angle = _random_position_angle(rng)
    disk_hlr = _scale_to_half_light_radius(
        hlr, [(4.0, bulge_size, bulge_fraction, True), (1.0, 1.0, 1.0 - bulge_fraction, False)]
    )
    model = GalaxyModel(
        params={
            "half_light_radius_arcsec": hlr,
            "bulge_to_total": bulge_fraction,
            "q": q,
            "position_angle_deg": angle,
        }
    )
    model.add(
        _oriented(_sersic(4.0, bulge_size * disk_hlr), bulge_q, angle).withFlux(bulge_fraction),
        population_band_fluxes("old", frame.bands, rng),
    )
    model.add(
        _oriented(galsim.Exponential(half_light_radius=disk_hlr), q, angle).withFlux(
            1.0 - bulge_fraction
        ),
        population_band_fluxes("intermediate", frame.bands, rng),
    )
    return model


def _build_disk_galaxy(rng: np.random.Generator, frame: StampFrame, barred: bool) -> GalaxyModel:
    """A moderately inclined disk with spiral arms, a small bulge and optionally a bar."""
    hlr = frame.random_radius(rng, 1 / 16, 1 / 8)
    n_arms = 2 if barred else int(rng.choice([2, 3, 4], p=[0.6, 0.25, 0.15]))
    pitch = float(rng.uniform(10.0, 30.0))
    winding = int(rng.choice([-1, 1]))
    q = float(rng.uniform(0.6, 1.0))
    angle = _random_position_angle(rng)
    spin = float(rng.uniform(0.0, 2 * np.pi))
    bulge_fraction = float(rng.uniform(0.03, 0.12) if barred else rng.uniform(0.05, 0.3))
    bulge_size = float(rng.uniform(0.15, 0.35))
    bar_fraction = float(rng.uniform(0.15, 0.3)) if barred else 0.0
    bar_semi_major = float(rng.uniform(0.6, 1.1))  # in disk half-light radii
    bar_q = float(rng.uniform(0.18, 0.3))
    disk_fraction = 1.0 - bulge_fraction - bar_fraction

    # A Gaussian (Sersic n = 0.5) with half-light radius h sheared to axis ratio
    # q_bar has semi-major half-light radius h / sqrt(q_bar); the bar "ends" at
    # twice that, where its surface brightness has dropped to ~6 %.
    bar_hlr = 0.5 * bar_semi_major * np.sqrt(bar_q)
    parts = [(4.0, bulge_size, bulge_fraction, True), (1.0, 1.0, disk_fraction, False)]
    if barred:
        parts.append((0.5, bar_hlr, bar_fraction, False))
    disk_hlr = _scale_to_half_light_radius(hlr, parts)
    arm_start = (bar_semi_major if barred else 0.5) * disk_hlr

    model = GalaxyModel(
        params={
            "half_light_radius_arcsec": hlr,
            "bulge_to_total": bulge_fraction,
            "q": q,
            "position_angle_deg": angle,
            "n_arms": float(n_arms),
            "pitch_angle_deg": pitch,
            "arm_winding": float(winding),
            "bar_length_arcsec": 2.0 * bar_semi_major * disk_hlr if barred else np.nan,
        }
    )
    disk = _spiral_disk(
        frame,
        scale_length=disk_hlr * galsim.Exponential(half_light_radius=1.0).scale_radius,
        n_arms=n_arms,
        pitch_deg=pitch,
        winding=winding,
        arm_start=arm_start,
        arm_phase=spin,
        amplitude=float(rng.uniform(0.6, 0.95)),
        sharpness=float(rng.uniform(2.0, 4.0)),
        flux=disk_fraction,
    )
    model.add(_oriented(disk, q, angle), population_band_fluxes("young", frame.bands, rng))
    model.add(
        _oriented(_sersic(4.0, bulge_size * disk_hlr).withFlux(bulge_fraction), q, angle),
        population_band_fluxes("old", frame.bands, rng),
    )
    if barred:
        bar = galsim.Gaussian(half_light_radius=bar_hlr * disk_hlr, flux=bar_fraction)
        bar = bar.shear(q=bar_q, beta=spin * galsim.radians)
        model.add(
            _oriented(bar, q, angle), population_band_fluxes("intermediate", frame.bands, rng)
        )
    return model


def _build_spiral(
    rng: np.random.Generator, gs_rng: galsim.BaseDeviate, frame: StampFrame
) -> GalaxyModel:
    return _build_disk_galaxy(rng, frame, barred=False)


def _build_barred_spiral(
    rng: np.random.Generator, gs_rng: galsim.BaseDeviate, frame: StampFrame
) -> GalaxyModel:
    return _build_disk_galaxy(rng, frame, barred=True)


def _dusty_band_profiles(
    parts: list[tuple[galsim.GSObject, np.ndarray]],
    frame: StampFrame,
    disk: galsim.InclinedExponential,
    inclination_deg: float,
    tau_r: float,
    lane_width: float,
) -> list[galsim.GSObject]:
    """One profile per band of an edge-on galaxy (major axis along x) behind a midplane dust lane.

    Attenuation is multiplicative, which GalSim profiles cannot express: the
    light of every part is drawn on a fine grid, dimmed by the lane (which also
    crosses the bulge, as in the Sombrero galaxy) and turned back into a profile.
    """
    x, y, grid_scale = _fine_grid(frame, 8.0 * disk.scale_radius)
    drawings = [
        profile.drawImage(nx=x.shape[1], ny=x.shape[0], scale=grid_scale, method="no_pixel").array
        for profile, _ in parts
    ]
    # A disk tilted away from exactly edge-on shows its lane on the near side.
    lane_offset = lane_width * (90.0 - inclination_deg) / 6.0
    optical_depth = np.exp(-np.abs(x) / (2.0 * disk.scale_radius)) * np.exp(
        -0.5 * ((y - lane_offset) / lane_width) ** 2
    )
    profiles = []
    for band_index, band in enumerate(frame.bands):
        # Dust dims blue light more: tau scales roughly as 1 / wavelength.
        tau = tau_r * BAND_WAVELENGTHS_NM["r"] / BAND_WAVELENGTHS_NM[band]
        light = sum(drawing * fluxes[band_index] for drawing, (_, fluxes) in zip(drawings, parts))
        attenuated = light * np.exp(-tau * optical_depth)
        profiles.append(_array_profile(attenuated, grid_scale, float(attenuated.sum())))
    return profiles


def _build_edge_on(
    rng: np.random.Generator, gs_rng: galsim.BaseDeviate, frame: StampFrame
) -> GalaxyModel:
    hlr = frame.random_radius(rng, 1 / 14, 1 / 7)
    inclination = float(rng.uniform(84.0, 90.0))
    thickness = float(rng.uniform(0.08, 0.2))  # scale height / scale length
    bulge_fraction = float(rng.uniform(0.05, 0.35))
    bulge_size = float(rng.uniform(0.2, 0.45))
    bulge_q = float(rng.uniform(0.6, 0.9))
    has_dust = bool(rng.uniform() < 0.5)
    dust_tau_r = float(rng.uniform(2.0, 6.0))
    lane_thickness = float(rng.uniform(0.7, 1.5))  # in disk scale heights
    angle = _random_position_angle(rng)
    disk_fraction = 1.0 - bulge_fraction
    disk_hlr = _scale_to_half_light_radius(
        hlr, [(4.0, bulge_size, bulge_fraction, True), (1.0, 1.0, disk_fraction, False)]
    )
    # Projected axis ratio of an oblate spheroid of intrinsic flattening `thickness`.
    cos_i = np.cos(np.radians(inclination))
    q = float(np.sqrt(cos_i**2 + thickness**2 * (1.0 - cos_i**2)))

    model = GalaxyModel(
        params={
            "half_light_radius_arcsec": hlr,
            "bulge_to_total": bulge_fraction,
            "q": q,
            "position_angle_deg": angle,
            "dust_lane": has_dust,
        }
    )
    disk = galsim.InclinedExponential(
        inclination * galsim.degrees,
        half_light_radius=disk_hlr,
        scale_h_over_r=thickness,
        flux=disk_fraction,
    )
    bulge = (
        _sersic(4.0, bulge_size * disk_hlr)
        .shear(q=bulge_q, beta=0.0 * galsim.degrees)
        .withFlux(bulge_fraction)
    )
    parts = [
        (disk, population_band_fluxes("young", frame.bands, rng)),
        (bulge, population_band_fluxes("old", frame.bands, rng)),
    ]
    rotation = angle * galsim.degrees
    if has_dust:
        profiles = _dusty_band_profiles(
            parts, frame, disk, inclination, dust_tau_r, lane_thickness * disk.scale_height
        )
        for band_index, profile in enumerate(profiles):
            model.add(profile.rotate(rotation), np.eye(len(frame.bands))[band_index])
    else:
        for profile, fluxes in parts:
            model.add(profile.rotate(rotation), fluxes)
    return model


def _build_irregular(
    rng: np.random.Generator, gs_rng: galsim.BaseDeviate, frame: StampFrame
) -> GalaxyModel:
    hlr = frame.random_radius(rng, 1 / 20, 1 / 9)
    n_knots = int(rng.integers(8, 41))
    knot_fraction = float(rng.uniform(0.5, 0.8))
    disk_size = float(rng.uniform(0.8, 1.3))  # relative to the knot distribution
    q = float(rng.uniform(0.4, 1.0))
    angle = _random_position_angle(rng)
    knots_q = float(rng.uniform(0.5, 1.0))
    knots_angle = _random_position_angle(rng)
    knots_hlr = _scale_to_half_light_radius(
        hlr, [(1.0, 1.0, knot_fraction, False), (1.0, disk_size, 1.0 - knot_fraction, False)]
    )
    # An off-centre knot distribution makes the galaxy lopsided.
    knots_shift = rng.normal(0.0, 0.2 * knots_hlr, 2)
    model = GalaxyModel(
        params={
            "half_light_radius_arcsec": hlr,
            "q": q,
            "position_angle_deg": angle,
            "n_knots": float(n_knots),
        }
    )
    knots = galsim.RandomKnots(n_knots, half_light_radius=knots_hlr, flux=knot_fraction, rng=gs_rng)
    model.add(
        _oriented(knots, knots_q, knots_angle).shift(*knots_shift),
        population_band_fluxes("starburst", frame.bands, rng),
    )
    disk = galsim.Exponential(half_light_radius=disk_size * knots_hlr, flux=1.0 - knot_fraction)
    model.add(_oriented(disk, q, angle), population_band_fluxes("young", frame.bands, rng))
    return model


def _tidal_tail(
    rng: np.random.Generator,
    start: np.ndarray,
    direction: float,
    length: float,
    blob_size: float,
    flux: float,
) -> galsim.GSObject:
    """A curved chain of Gaussian blobs leaving ``start`` (arcsec) along ``direction`` (rad)."""
    n_blobs = 10
    curvature = float(rng.uniform(0.8, 1.6))
    steps = np.linspace(0.1, 1.0, n_blobs)
    weights = 1.0 - 0.6 * steps
    weights = flux * weights / weights.sum()
    blobs = []
    for step, weight in zip(steps, weights):
        heading = direction + curvature * step
        offset = start + length * step * np.array([np.cos(heading), np.sin(heading)])
        blobs.append(galsim.Gaussian(sigma=blob_size * (1.0 + step), flux=weight).shift(*offset))
    return galsim.Add(blobs)


def _build_merger(
    rng: np.random.Generator, gs_rng: galsim.BaseDeviate, frame: StampFrame
) -> GalaxyModel:
    hlr = frame.random_radius(rng, 1 / 28, 1 / 12)
    companion_size = float(rng.uniform(0.5, 1.0))
    flux_ratio = float(rng.uniform(0.3, 1.0))
    tail_fraction = float(rng.uniform(0.1, 0.3))
    separation = float(rng.uniform(0.8, 2.5)) * hlr * (1.0 + companion_size)
    separation = min(separation, 0.4 * frame.size * frame.pixel_scale)
    axis = float(rng.uniform(0.0, 2 * np.pi))
    unit = np.array([np.cos(axis), np.sin(axis)])
    galaxy_fraction = 1.0 - tail_fraction
    fluxes = galaxy_fraction * np.array([1.0, flux_ratio]) / (1.0 + flux_ratio)
    # Put the light-weighted centre of the pair at the stamp centre.
    positions = [
        -separation * fluxes[1] / fluxes.sum() * unit,
        separation * fluxes[0] / fluxes.sum() * unit,
    ]
    sizes = [hlr, hlr * companion_size]
    indices = [_quantised_sersic_index(rng, 1.0, 4.0) for _ in range(2)]
    axis_ratios = [float(rng.uniform(0.5, 1.0)) for _ in range(2)]
    angles = [_random_position_angle(rng) for _ in range(2)]
    tidal_shear = float(rng.uniform(0.05, 0.25))
    orbit_sense = float(rng.choice([-1.0, 1.0]))

    model = GalaxyModel(
        params={
            "half_light_radius_arcsec": hlr,
            "sersic_n": indices[0],
            "q": axis_ratios[0],
            "position_angle_deg": angles[0],
            "companion_separation_arcsec": separation,
            "companion_flux_ratio": flux_ratio,
        }
    )
    tails = []
    for member in range(2):
        # Tides stretch each galaxy along the line joining the pair.
        body = _oriented(
            _sersic(indices[member], sizes[member]), axis_ratios[member], angles[member]
        )
        body = body.shear(g=tidal_shear, beta=axis * galsim.radians).withFlux(fluxes[member])
        population = str(rng.choice(["old", "young"]))
        model.add(
            body.shift(*positions[member]), population_band_fluxes(population, frame.bands, rng)
        )
        away_from_partner = axis + (np.pi if member == 0 else 0.0)
        tails.append(
            _tidal_tail(
                rng,
                positions[member],
                away_from_partner + orbit_sense * float(rng.uniform(-0.5, 0.5)),
                length=float(rng.uniform(2.0, 4.0)) * sizes[member],
                blob_size=0.3 * sizes[member],
                flux=tail_fraction * fluxes[member] / galaxy_fraction,
            )
        )
    model.add(galsim.Add(tails), population_band_fluxes("young", frame.bands, rng))
    return model


def _build_star(
    rng: np.random.Generator, gs_rng: galsim.BaseDeviate, frame: StampFrame
) -> GalaxyModel:
    temperature = float(rng.uniform())
    colour = {
        band: (1 - temperature) * _HOT_STAR[band] + temperature * _COOL_STAR[band]
        for band in _HOT_STAR
    }
    model = GalaxyModel(params={"half_light_radius_arcsec": 0.0})
    model.add(galsim.DeltaFunction(), population_band_fluxes(colour, frame.bands, rng))
    return model


#: One builder per class: ``builder(rng, galsim_rng, frame) -> GalaxyModel``.
BUILDERS: dict[
    str, Callable[[np.random.Generator, galsim.BaseDeviate, StampFrame], GalaxyModel]
] = {
    "elliptical": _build_elliptical,
    "lenticular": _build_lenticular,
    "spiral": _build_spiral,
    "barred_spiral": _build_barred_spiral,
    "edge_on": _build_edge_on,
    "irregular": _build_irregular,
    "merger": _build_merger,
    "star": _build_star,
}
