"""How good is a generator: fidelity, conditioning and physical plausibility.

* **Fidelity**: the Frechet distance between Gaussian fits of real and
  generated embeddings (the FID recipe of Heusel et al. 2017), with a
  tuningfork encoder instead of a downloaded Inception network.  The
  distance is biased upwards for small samples, so the same distance between
  two disjoint halves of the real galaxies is reported beside it as the
  floor a perfect generator would reach at that sample size.
* **Conditioning**: a classifier trained on real galaxies labels the
  generated ones; the share that gets the requested class is the
  conditional accuracy.
* **Physical plausibility**: statmorph measurements (Sersic index,
  concentration, Gini, M20, asymmetry) of generated and real galaxies of each
  class, compared with a two-sample Kolmogorov-Smirnov test.

Real galaxies go through the generator's preprocessing and back
(:meth:`DiffusionScaling.to_data`), so both sets are compared in the same
units and at the same resolution.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..data import GalaxyCollection
from ..errors import ConfigError, FeatureError
from .folder import Generator, load_generator
from .sample import generate

#: statmorph quantities compared between real and generated galaxies.
KS_QUANTITIES = ("sersic_n", "concentration", "gini", "m20", "asymmetry")
#: Fewest finite measurements per set for a KS statistic, by default.
MIN_KS_VALUES = 5

Classifier = Callable[[np.ndarray], Sequence[str]]


def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Frechet distance between Gaussian fits of two sets of vectors.

    ``|mu1 - mu2|^2 + Tr(C1 + C2 - 2 (C1 C2)^(1/2))``.

    Parameters
    ----------
    first, second : ndarray
        (n1, d) and (n2, d) embeddings, at least two rows each.

    Returns
    -------
    float
        The distance (in squared embedding units).

    Raises
    ------
    FeatureError
        Fewer than two rows, different dimensions, or non-finite values.
    """
    from scipy import linalg

    a, b = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise FeatureError(f"frechet_distance: embeddings must be (n, d) with equal d, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise FeatureError(f"frechet_distance: need at least 2 embeddings per set, got {len(a)} and {len(b)}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise FeatureError("frechet_distance: embeddings contain NaN or infinite values")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    root = linalg.sqrtm(cov_a @ cov_b)
    if not np.all(np.isfinite(root)):
        # Near-singular covariances (fewer vectors than dimensions): the
        # usual remedy of the FID reference code is a small diagonal offset.
        offset = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root.real)
    return float(max(distance, 0.0))


def real_in_data_units(generator: Generator, collection: GalaxyCollection) -> np.ndarray:
    """Real galaxies as the generator sees them, mapped back to data units.

    Parameters
    ----------
    generator : Generator
        Supplies the preprocessing and its inverse.
    collection : GalaxyCollection
        Real galaxies.

    Returns
    -------
    ndarray
        float32 (n, bands, H, W) at the generator's resolution.
    """
    from ..preprocessing import Preprocessor

    scaling = generator.scaling
    stretched = collection.read_images(Preprocessor(scaling.preprocess))
    return scaling.to_data(scaling.to_model(stretched))


def morphometry_ks(
    real: np.ndarray,
    real_groups: Sequence[str],
    generated: np.ndarray,
    generated_groups: Sequence[str],
    quantities: Sequence[str] = KS_QUANTITIES,
    n_workers: int = 1,
    min_values: int = MIN_KS_VALUES,
) -> Table:
    """Two-sample KS statistics of statmorph quantities, real vs generated, per group.

    Parameters
    ----------
    real, generated : ndarray
        (n, bands, H, W) images in the same (data) units; bands are averaged.
    real_groups, generated_groups : sequence of str
        Group (class or condition) of each image.
    quantities : sequence of str
        statmorph outputs to compare.
    n_workers : int
        Processes measuring the galaxies.
    min_values : int
        Fewest finite measurements in each set for a KS statistic.

    Returns
    -------
    astropy.table.Table
        One row per group and quantity: ``group``, ``quantity``,
        ``n_real``/``n_generated`` (finite measurements), ``real_median``,
        ``generated_median``, ``ks_statistic``, ``ks_pvalue`` (NaN and
        ``ks_valid = False`` with fewer than ``min_values`` values).
    """
    from scipy.stats import ks_2samp

    from ..morphometry import morphometry_catalog

    measured = {
        "real": morphometry_catalog(list(real), quantities=quantities, n_workers=n_workers),
        "generated": morphometry_catalog(list(generated), quantities=quantities, n_workers=n_workers),
    }
    groups = {"real": np.asarray(real_groups, dtype=str), "generated": np.asarray(generated_groups, dtype=str)}
    rows = []
    for group in dict.fromkeys(groups["generated"]):
        for quantity in quantities:
            values = {}
            for kind, table in measured.items():
                column = np.asarray(table[quantity], dtype=np.float64)[groups[kind] == group]
                values[kind] = column[np.isfinite(column)]
            valid = min(len(v) for v in values.values()) >= min_values
            statistic, pvalue = ks_2samp(values["real"], values["generated"]) if valid else (np.nan, np.nan)
            rows.append({
                "group": group,
                "quantity": quantity,
                "n_real": len(values["real"]),
                "n_generated": len(values["generated"]),
                "real_median": float(np.median(values["real"])) if len(values["real"]) else np.nan,
                "generated_median": float(np.median(values["generated"])) if len(values["generated"]) else np.nan,
                "ks_statistic": float(statistic),
                "ks_pvalue": float(pvalue),
                "ks_valid": valid,
            })
    return Table(rows=rows)


def _split_half_distance(embeddings: np.ndarray, rng: np.random.Generator) -> float:
    """Frechet distance between two random disjoint halves (NaN when too few)."""
    if len(embeddings) < 4:
        return np.nan
    order = rng.permutation(len(embeddings))
    half = len(order) // 2
    return frechet_distance(embeddings[order[:half]], embeddings[order[half : 2 * half]])


def _embedder(encoder) -> Callable[[np.ndarray], np.ndarray]:
    from ..models import embed_arrays, load_encoder

    model = load_encoder(encoder) if isinstance(encoder, (str, Path)) else encoder
    return lambda images: embed_arrays(model, images)


def evaluate_generator(
    generator: Generator | str | Path,
    real: GalaxyCollection,
    *,
    encoder=None,
    classifier: Classifier | None = None,
    n_per_condition: int = 64,
    guidance: float = 2.0,
    steps: int = 25,
    sampler: str = "ddim",
    seed: int = 0,
    morphometry: bool = True,
    n_workers: int = 1,
    output: str | Path | None = None,
    overwrite: bool = False,
) -> tuple[Table, Table | None]:
    """Measure a generator against real galaxies, per condition.

    Parameters
    ----------
    generator : Generator, str or Path
        The generator or its model folder.
    real : GalaxyCollection
        Real galaxies (held out from the generator's training if possible);
        with class conditioning, their label column holds the classes.
    encoder : Encoder, str or Path, optional
        A tuningfork encoder (:func:`tuningfork.models.load_encoder`:
        an AstroPT or autoencoder model folder, or an ``Encoder``) for the
        Frechet distance; skipped without one.
    classifier : callable, optional
        Maps data-unit images (n, bands, H, W) to class names; trained on
        real data (see :func:`tuningfork.generation.augment.folder_classifier`).
        Gives the conditional accuracy of class generators.
    n_per_condition : int
        Real and generated galaxies per condition (fewer real ones when a
        class has fewer).
    guidance, steps, sampler, seed
        Sampling settings (:func:`tuningfork.generation.generate`).
    morphometry : bool
        Compare statmorph quantities with KS tests (the slowest part).
    n_workers : int
        Processes for statmorph.
    output : str or Path, optional
        Write the per-condition table there (CSV, Parquet or FITS), and the
        KS table beside it as ``<stem>_ks<suffix>``.
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).

    Returns
    -------
    summary : astropy.table.Table
        One row per condition (classes; one ``all`` row for feature
        generators, conditioned on real galaxies' feature vectors):
        ``condition``, ``n_real``, ``n_generated``, ``frechet_distance``,
        ``frechet_real_halves``, ``conditional_accuracy`` (NaN where not
        measured).
    ks : astropy.table.Table or None
        :func:`morphometry_ks` output, or None without morphometry.
    """
    from ..data.writers import check_output, write_table

    if output is not None:
        check_output(output, overwrite=overwrite)
    if not isinstance(generator, Generator):
        generator = load_generator(generator)
    if n_per_condition < 2:
        raise ConfigError(f"{generator.name}: n_per_condition must be at least 2, got {n_per_condition}")
    space = generator.conditions
    rng = np.random.default_rng(seed)
    if space.kind == "class":
        codes = real.labels()
        real_classes = np.asarray(real.class_names)[codes]
        groups = [name for name in space.names if np.any(real_classes == name)]
        if not groups:
            raise ConfigError(f"{real.name}: none of the generator's classes ({', '.join(space.names)}) occurs")
        chosen = np.concatenate([
            rng.permutation(np.flatnonzero(real_classes == name))[:n_per_condition] for name in groups
        ])
        real_groups = real_classes[chosen]
        sample = generate(generator, groups, n=n_per_condition, guidance=guidance, steps=steps, seed=seed,
                          sampler=sampler)
        generated_groups = np.asarray(sample.catalog["label"], dtype=str)
    else:
        from .train import training_conditions

        chosen = np.sort(rng.permutation(len(real))[:n_per_condition])
        _, conditions = training_conditions(real.subset(chosen), space.names)
        real_groups = np.full(len(chosen), "all")
        sample = generate(generator, conditions, n=1, guidance=guidance, steps=steps, seed=seed, sampler=sampler)
        generated_groups = np.full(len(sample), "all")
    real_images = real_in_data_units(generator, real.subset(chosen))
    embed = _embedder(encoder) if encoder is not None else None
    real_vectors = embed(real_images) if embed else None
    generated_vectors = embed(sample.images) if embed else None
    predicted = np.asarray(classifier(sample.images), dtype=str) if classifier is not None else None

    rows = []
    for group in dict.fromkeys(generated_groups):
        in_real, in_generated = real_groups == group, generated_groups == group
        fid = floor = accuracy = np.nan
        if embed and in_real.sum() >= 2:
            fid = frechet_distance(real_vectors[in_real], generated_vectors[in_generated])
            floor = _split_half_distance(real_vectors[in_real], rng)
        if predicted is not None and space.kind == "class":
            accuracy = float(np.mean(predicted[in_generated] == group))
        rows.append({
            "condition": str(group),
            "n_real": int(in_real.sum()),
            "n_generated": int(in_generated.sum()),
            "frechet_distance": fid,
            "frechet_real_halves": floor,
            "conditional_accuracy": accuracy,
        })
    summary = Table(rows=rows)
    ks = (
        morphometry_ks(real_images, real_groups, sample.images, generated_groups, n_workers=n_workers)
        if morphometry
        else None
    )
    if output is not None:
        output = Path(output)
        write_table(output, summary)
        if ks is not None:
            write_table(output.with_name(f"{output.stem}_ks{output.suffix}"), ks)
    return summary, ks
