"""Sampling a generator: seeded DDIM or DPM-Solver with classifier-free guidance.

Samples are drawn in model space and mapped back to data units through the
inverse of the generator's preprocessing, then written as FITS (data units)
and PNG (display stretch) files with a catalog of the conditions used and
one mosaic per condition.  The same seed, conditions and settings give the
same pixels.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from astropy.table import Table

from ..errors import ConfigError
from ..models.conditions import Condition
from ..simulation.sample import IMAGE_FORMATS, write_images
from .folder import Generator, load_generator

SAMPLERS = ("ddim", "dpm-solver")
#: Largest number of images shown in one condition's mosaic.
MOSAIC_MAX = 64


@dataclass
class GeneratedSample:
    """Generated galaxies and the conditions that made them.

    Parameters
    ----------
    images : ndarray
        float32 (n, bands, H, W) in data units (sky-subtracted flux per
        pixel at the generator's resolution).
    catalog : astropy.table.Table
        One row per image: ``id``; ``label`` (class conditioning) or one
        column per feature; ``condition`` (text); ``extrapolated`` (feature
        vector outside the training range); ``guidance``, ``steps``,
        ``sampler``, ``seed``.
    """

    images: np.ndarray
    catalog: Table

    def __len__(self) -> int:
        return len(self.images)


def _scheduler(generator: Generator, sampler: str, steps: int):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    if sampler not in SAMPLERS:
        raise ConfigError(f"{generator.name}: unknown sampler '{sampler}' (choose from {', '.join(SAMPLERS)})")
    if steps < 1:
        raise ConfigError(f"{generator.name}: steps must be at least 1, got {steps}")
    kind = DDIMScheduler if sampler == "ddim" else DPMSolverMultistepScheduler
    scheduler = kind.from_config(generator.schedule)
    scheduler.set_timesteps(steps)
    return scheduler


def sample_model_space(
    generator: Generator,
    conditions: Sequence[Condition],
    guidance: float = 2.0,
    steps: int = 25,
    seed: int = 0,
    sampler: str = "ddim",
    batch_size: int = 64,
    device: str = "cpu",
) -> np.ndarray:
    """Draw one image per condition, in model space.

    Parameters
    ----------
    generator : Generator
        A loaded generator.
    conditions : sequence
        Class names or feature vectors, one per image (checked here).
    guidance : float
        Classifier-free guidance scale (0 unconditional, 1 conditional).
    steps : int
        Sampler steps.
    seed : int
        Seed of the initial noise (and of DPM-Solver's none; DDIM is run
        with eta = 0, so the noise fixes the result).
    sampler : {'ddim', 'dpm-solver'}
        diffusers scheduler that integrates the reverse process.
    batch_size : int
        Images denoised at once.
    device : str
        Torch device.

    Returns
    -------
    ndarray
        float32 (n, bands, H, W), clipped to each band's training range.
    """
    checked = generator.conditions.check(conditions, generator.name)
    scheduler = _scheduler(generator, sampler, steps)
    config = generator.model.config
    shape = (len(checked), config.bands, config.image_size, config.image_size)
    # All the noise is drawn up front so that a sample does not depend on the batch size.
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    encoded = generator.conditions.encode(checked)
    model = generator.model.to(device).eval()
    parts = []
    with torch.inference_mode():
        for start in range(0, len(checked), batch_size):
            latents = noise[start : start + batch_size].to(device)
            condition = encoded[start : start + batch_size].to(device)
            scheduler.set_timesteps(steps)
            for timestep in scheduler.timesteps:
                predicted = model.guided(latents, timestep.to(device), condition, float(guidance))
                latents = scheduler.step(predicted, timestep, latents).prev_sample
            parts.append(latents.cpu())
    return generator.scaling.clip(torch.cat(parts).numpy())


def generate(
    generator: Generator | str | Path,
    conditions: Sequence[Condition] | str,
    n: int = 16,
    guidance: float = 2.0,
    steps: int = 25,
    seed: int = 0,
    sampler: str = "ddim",
    batch_size: int = 64,
    device: str = "cpu",
) -> GeneratedSample:
    """Generate ``n`` galaxies for each condition, in data units.

    Parameters
    ----------
    generator : Generator, str or Path
        A generator or its model folder.
    conditions : sequence or str
        Class names or feature vectors; or ``--condition`` text (a class
        name, comma-separated values, or a catalog of conditions).  Feature
        vectors outside the training range are allowed (extrapolation) and
        flagged in the catalog.
    n : int
        Images per condition.
    guidance, steps, seed, sampler, batch_size, device
        As in :func:`sample_model_space`.

    Returns
    -------
    GeneratedSample
    """
    if not isinstance(generator, Generator):
        generator = load_generator(generator)
    space = generator.conditions
    if isinstance(conditions, str):
        conditions = space.parse(conditions, generator.name)
    checked = space.check(conditions, generator.name)
    if n < 1:
        raise ConfigError(f"{generator.name}: n must be at least 1 image per condition, got {n}")
    repeated = [condition for condition in checked for _ in range(n)]
    model_images = sample_model_space(generator, repeated, guidance, steps, seed, sampler, batch_size, device)
    width = max(6, len(str(len(repeated) - 1)))
    columns: dict[str, object] = {"id": [f"gen{index:0{width}d}" for index in range(len(repeated))]}
    if space.kind == "class":
        columns["label"] = [str(condition) for condition in repeated]
    else:
        for position, name in enumerate(space.names):
            columns[name] = np.array([condition[position] for condition in repeated], dtype=np.float64)
    columns["condition"] = [space.label(condition) for condition in repeated]
    columns["extrapolated"] = np.array([space.extrapolated(condition) for condition in repeated])
    count = len(repeated)
    columns.update(
        guidance=np.full(count, float(guidance)),
        steps=np.full(count, int(steps)),
        sampler=[sampler] * count,
        seed=np.full(count, int(seed)),
    )
    return GeneratedSample(generator.scaling.to_data(model_images), Table(columns))


def _file_stem(text: str) -> str:
    """A condition label made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_") or "condition"


def write_generated(
    sample: GeneratedSample, out_dir: str | Path, formats: Sequence[str] = IMAGE_FORMATS, *,
    overwrite: bool = False,
) -> Path:
    """Write generated images, their catalog and one mosaic per condition.

    Parameters
    ----------
    sample : GeneratedSample
        Output of :func:`generate`.
    out_dir : str or Path
        Folder to fill: ``images/<id>.fits`` (data units), ``images/<id>.png``
        (display stretch), ``catalog.csv`` (its ``file`` column points at the
        FITS file when written, so the folder opens as a
        :class:`~tuningfork.data.GalaxyCollection`) and
        ``mosaic_<condition>.png`` (at most :data:`MOSAIC_MAX` images each).
    formats, overwrite
        As in :func:`tuningfork.simulation.write_sample`.

    Returns
    -------
    Path
        The catalog file.
    """
    from ..data.writers import check_output, write_table
    from ..plots import mosaic

    check_output(out_dir, kind="folder", overwrite=overwrite)
    out_dir = Path(out_dir)
    catalog = write_images(
        out_dir,
        sample.catalog,
        sample.images,
        formats,
        lambda row: {
            "COND": str(row["condition"])[:60],
            "GUIDANCE": float(row["guidance"]),
            "STEPS": int(row["steps"]),
            "SEED": int(row["seed"]),
        },
    )
    for condition in dict.fromkeys(catalog["condition"]):
        chosen = np.flatnonzero(catalog["condition"] == condition)[:MOSAIC_MAX]
        mosaic([sample.images[i] for i in chosen], out_dir / f"mosaic_{_file_stem(str(condition))}.png",
               suptitle=str(condition))
    return write_table(out_dir / "catalog.csv", catalog)
