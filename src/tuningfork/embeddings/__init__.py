"""Foundation embeddings: a self-supervised patch transformer and what uses it.

The causal patch transformer (AstroPT) and its patch sequences live in
:mod:`tuningfork.models`, with every other network and the one encoder
contract (:func:`tuningfork.models.load_encoder`).

* :mod:`.pretrain`: the Lightning pretraining loop, saving a model folder.
* :mod:`.embed`: batched extraction to Parquet + NPY, and query images.
* :mod:`.search`: faiss similarity search saved beside the embeddings.
* :mod:`.outliers`: isolation forest, kNN distance and LOF, rank-averaged.
* :mod:`.probes`: few-label linear and kNN probes with accuracy or photo-z metrics.
* :mod:`.plots`: neighbour and outlier mosaics, probe curves.
"""

from ..models import embed_arrays
from .embed import embed_query_image, extract_embeddings
from .outliers import outlier_scores
from .pretrain import pretrain
from .probes import classification_metrics, label_subsets, regression_metrics, run_probes
from .search import SimilarityIndex, index_path_for, recall_at_k
from .store import EmbeddingSet, load_embeddings

__all__ = [
    "EmbeddingSet",
    "SimilarityIndex",
    "classification_metrics",
    "embed_arrays",
    "embed_query_image",
    "extract_embeddings",
    "index_path_for",
    "label_subsets",
    "load_embeddings",
    "outlier_scores",
    "pretrain",
    "recall_at_k",
    "regression_metrics",
    "run_probes",
]
