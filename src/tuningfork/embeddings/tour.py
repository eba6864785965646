"""The embeddings stop of ``tuningfork demo``: pretrain, embed, search, outliers."""

from __future__ import annotations

from pathlib import Path

from ..data import GalaxyCollection, write_table
from ..models import AstroPTEncoder
from ..preprocessing import PreprocessConfig
from .embed import extract_embeddings
from .outliers import outlier_scores
from .plots import neighbours_mosaic, outliers_mosaic
from .pretrain import pretrain
from .search import open_or_build_index


def embeddings_tour(
    catalog: str | Path, out: str | Path, console=None, epochs: int = 3, seed: int = 0
) -> dict[str, Path]:
    """Pretrain a tiny AstroPT on a sample, then query its embeddings.

    Runs in well under a minute on a laptop CPU for a few hundred 64 px
    galaxies: the model is the ``tiny`` size at 32 px.

    Parameters
    ----------
    catalog : str or Path
        Any data set :meth:`GalaxyCollection.open` reads (e.g. the demo's
        simulated sample).
    out : str or Path
        Folder for the model and every output; rewritten on every run.
    console : rich.console.Console, optional
        Where to report progress.
    epochs : int
        Pretraining epochs.
    seed : int
        Seed of pretraining and of the outlier detectors.

    Returns
    -------
    dict of str to Path
        ``model``, ``embeddings``, ``neighbours`` (table), ``neighbours_mosaic``,
        ``outliers`` (table) and ``outliers_mosaic``.
    """
    out = Path(out)
    collection = GalaxyCollection.open(catalog)
    preprocess = PreprocessConfig(output_size=32, stretch="asinh", normalisation="none")
    model = pretrain(
        collection,
        out / "astropt-tiny",
        size="tiny",
        preprocess=preprocess,
        patch_size=4,
        max_epochs=epochs,
        batch_size=32,
        learning_rate=1e-3,
        seed=seed,
        overwrite=True,
    )
    embeddings = extract_embeddings(
        collection, AstroPTEncoder.from_folder(model), out / "embeddings.parquet", overwrite=True
    )
    index = open_or_build_index(embeddings, rebuild=True)
    query = embeddings.ids[0]
    neighbours = index.neighbours(query, k=9)
    paths = {
        "model": model,
        "embeddings": embeddings.path,
        "neighbours": write_table(out / "similar.csv", neighbours),
        "neighbours_mosaic": out / "similar.png",
    }
    neighbours_mosaic(collection, neighbours, paths["neighbours_mosaic"])
    scores = outlier_scores(embeddings.vectors, embeddings.ids, seed=seed)
    paths["outliers"] = write_table(out / "outliers.csv", scores)
    paths["outliers_mosaic"] = out / "outliers.png"
    outliers_mosaic(collection, scores, paths["outliers_mosaic"], top=16)
    if console is not None:
        console.print(
            f"  AstroPT: tiny model pretrained on {len(collection)} galaxies ({model}); "
            f"neighbours of {query} in similar.png, top outliers in outliers.png"
        )
    return paths
