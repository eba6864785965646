"""Labelled galaxies rendered with GalSim, for training and testing without survey data.

Eight classes (:data:`SIMULATED_CLASSES`): elliptical, lenticular, spiral,
barred_spiral, edge_on, irregular, merger and star, with a Moffat or
Kolmogorov PSF, Gaussian, Poisson or HST COSMOS correlated noise, and optional
multi-band colours.

>>> from tuningfork.simulation import simulate, write_sample
>>> sample = simulate(16, bands=("g", "r", "i"), workers=1)  # doctest: +SKIP
>>> write_sample(sample, "sims")  # doctest: +SKIP
"""

from .classes import BAND_WAVELENGTHS_NM, SIMULATED_CLASSES
from .render import NOISE_KINDS, PSF_KINDS
from .sample import IMAGE_FORMATS, SimulatedSample, simulate, write_sample

__all__ = [
    "BAND_WAVELENGTHS_NM",
    "IMAGE_FORMATS",
    "NOISE_KINDS",
    "PSF_KINDS",
    "SIMULATED_CLASSES",
    "SimulatedSample",
    "simulate",
    "write_sample",
]
