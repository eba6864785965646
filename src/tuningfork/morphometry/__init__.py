"""Non-parametric morphology (Gini, M20, CAS, Sersic...) with statmorph.

:func:`segment_central_source` finds the galaxy at the centre of a cutout with
photutils; :func:`measure_morphology` runs statmorph on one image;
:func:`morphometry_catalog` does it for a whole collection across processes;
:func:`estimate_sky` measures the sky that is subtracted first.
"""

from .measure import (
    ALL_QUANTITIES,
    DEFAULT_QUANTITIES,
    DOUBLESERSIC_QUANTITIES,
    SKY_COLUMNS,
    measure_morphology,
    morphometry_catalog,
    read_mask,
    read_psf,
)
from .segmentation import CentralSource, segment_central_source
from .sky import SkyEstimate, estimate_sky

__all__ = [
    "ALL_QUANTITIES",
    "DEFAULT_QUANTITIES",
    "DOUBLESERSIC_QUANTITIES",
    "SKY_COLUMNS",
    "CentralSource",
    "SkyEstimate",
    "estimate_sky",
    "measure_morphology",
    "morphometry_catalog",
    "read_mask",
    "read_psf",
    "segment_central_source",
]
