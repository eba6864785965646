"""Stamps per galaxy from ``cutout_field``: one galaxy should give one stamp.

Counts the stamps cut around detections in fields whose true number of
galaxies is known:

* a real HST COSMOS F814W face-on knotty spiral (``GAL_HDU`` 36, 144 px, and
  the 106 px ``GAL_HDU`` 8) of ``../shared/data/cosmos-f814w``, embedded in a
  543 px field of the stamp's own noise level (the data set ships stamps, not
  fields); 1 galaxy each;
* 20 GalSim face-on spirals (exponential disc, de Vaucouleurs bulge, 40
  ``RandomKnots`` star-forming knots) in 400 px noisy fields; 1 galaxy each;
* pairs of GalSim exponential galaxies (half-light radius 6 px) 18 to 80 px
  apart; 2 galaxies each.

Each field is cut with the default (no deblending, detached fragments folded
into their galaxy), with photutils deblending at its defaults (contrast
0.001, 32 levels: the old default) and with aggressive deblending.

Writes ``benchmarks/results/deblend.json`` and ``benchmarks/results/deblend.md``.

Usage: ``python benchmarks/bench_deblend.py``
"""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

import galsim
import numpy as np
from astropy.io import fits
from astropy.table import Table

from tuningfork.data.cutouts import cutout_field

RESULTS = Path(__file__).resolve().parent / "results"
COSMOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "cosmos-f814w"
PSF = galsim.Gaussian(fwhm=3.0)
SETTINGS = {
    "default (no deblend)": {},
    "--deblend (contrast 0.001, 32 levels)": {"deblend": True},
    "--deblend --contrast 0.0001 --nlevels 64": {"deblend": True, "contrast": 1e-4, "nlevels": 64},
}


def machine_info() -> dict:
    """CPU count, 1-minute load average now and platform, for a results file."""
    return {"cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
            "platform": platform.platform(), "python": sys.version.split()[0]}  # fmt: skip


def cosmos_field(hdu: int, side: int = 543) -> np.ndarray:
    """A real COSMOS stamp at the centre of a field of its own Gaussian noise."""
    catalog = Table.read(COSMOS / "real_galaxy_catalog_26_extension_example.fits")
    (variance,) = catalog["NOISE_VARIANCE"][catalog["GAL_HDU"] == hdu]
    stamp = fits.getdata(COSMOS / "real_galaxy_images_extension.fits", hdu).astype(np.float32)
    field = np.random.default_rng(0).normal(0, np.sqrt(variance), (side, side)).astype(np.float32)
    start = (side - stamp.shape[0]) // 2
    field[start : start + stamp.shape[0], start : start + stamp.shape[1]] = stamp
    return field


def spiral_field(seed: int, side: int = 400, flux: float = 6e4) -> np.ndarray:
    """A GalSim face-on spiral with star-forming knots in unit Gaussian noise."""
    canvas = galsim.ImageF(side, side, scale=1.0)
    disc = galsim.Exponential(half_light_radius=25.0, flux=0.5 * flux)
    knots = galsim.RandomKnots(npoints=40, half_light_radius=25.0, flux=0.35 * flux,
                               rng=galsim.BaseDeviate(seed))  # fmt: skip
    bulge = galsim.DeVaucouleurs(half_light_radius=3.0, flux=0.15 * flux)
    galsim.Convolve(disc + knots + bulge, PSF).drawImage(image=canvas, add_to_image=True)
    canvas.addNoise(galsim.GaussianNoise(galsim.BaseDeviate(seed + 1), sigma=1.0))
    return canvas.array.astype(np.float32)


def pair_field(separation: float, side: int = 300) -> np.ndarray:
    """Two equal GalSim exponential galaxies ``separation`` pixels apart."""
    canvas = galsim.ImageF(side, side, scale=1.0)
    galaxy = galsim.Convolve(galsim.Exponential(half_light_radius=6.0, flux=2e4), PSF)
    for dx in (-separation / 2, separation / 2):
        galaxy.drawImage(image=canvas, add_to_image=True, offset=(dx, 0))
    canvas.addNoise(galsim.GaussianNoise(galsim.BaseDeviate(5), sigma=1.0))
    return canvas.array.astype(np.float32)


def main() -> None:
    info = machine_info()
    groups = {f"COSMOS F814W spiral (HDU {hdu}) in 543 px noise": ([cosmos_field(hdu)], 1)
              for hdu in (36, 8)}  # fmt: skip
    groups["GalSim knotty face-on spirals (20 seeds)"] = ([spiral_field(s) for s in range(1, 21)], 1)
    for separation in (18, 24, 36, 80):
        groups[f"GalSim pair {separation} px apart"] = ([pair_field(separation)], 2)
    rows = []
    for name, (fields, truth) in groups.items():
        row = {"field": name, "galaxies": truth}
        for setting, options in SETTINGS.items():
            counts = [len(cutout_field(field, **options)) for field in fields]
            row[setting] = {"mean_stamps": float(np.mean(counts)), "min": min(counts),
                            "max": max(counts), "exact": float(np.mean(np.array(counts) == truth))}  # fmt: skip
        rows.append(row)
        print(row, flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "deblend.json").write_text(json.dumps({"machine": info, "rows": rows}, indent=2))
    lines = [
        "# Stamps per field from `cutout_field` (detection, extended sources)",
        "",
        (f"{info['cpus']} CPUs (1-min load average {info['load_average']} at start), Python "
         f"{info['python']}. Cells: mean stamps per field (min-max) / fraction of fields with "
         "exactly the true number of galaxies. The default keeps a face-on spiral whole; the "
         "cost is that galaxies touching at the 3-sigma isophote share one stamp unless "
         "`--deblend` is given."),
        "",
        "| field | galaxies | " + " | ".join(SETTINGS) + " |",
        "|---|---|" + "---|" * len(SETTINGS),
    ]
    for row in rows:
        cells = [f"{row[s]['mean_stamps']:.2f} ({row[s]['min']}-{row[s]['max']}) / {row[s]['exact']:.2f}"
                 for s in SETTINGS]  # fmt: skip
        lines.append(f"| {row['field']} | {row['galaxies']} | " + " | ".join(cells) + " |")
    (RESULTS / "deblend.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
