"""Foundation embeddings: a self-supervised patch transformer and what uses it.

* :mod:`.patches`: images to patch sequences (spiral from the centre) and back.
* :mod:`.astropt`: the causal patch transformer with optional SED tokens.
* :mod:`.pretrain`: the Lightning pretraining loop, saving a model folder.
* :mod:`.embed`: one :class:`Encoder` interface (AstroPT, timm, model
  folders) and batched extraction to Parquet + NPY.
* :mod:`.search`: faiss similarity search saved beside the embeddings.
* :mod:`.outliers`: isolation forest, kNN distance and LOF, rank-averaged.
* :mod:`.probes`: few-label linear and kNN probes with accuracy or photo-z metrics.
* :mod:`.plots`: neighbour and outlier mosaics, probe curves.
"""

from .astropt import MODEL_SIZES, AstroPT, AstroPTConfig, load_astropt, save_astropt
from .embed import (
    AstroPTEncoder,
    Encoder,
    FeatureEncoder,
    embed_arrays,
    extract_embeddings,
    load_encoder,
)
from .outliers import outlier_scores
from .patches import image_to_patches, patch_order, patches_to_image
from .pretrain import pretrain
from .probes import classification_metrics, label_subsets, regression_metrics, run_probes
from .search import SimilarityIndex, index_path_for, recall_at_k
from .store import EmbeddingSet, load_embeddings

__all__ = [
    "MODEL_SIZES",
    "AstroPT",
    "AstroPTConfig",
    "AstroPTEncoder",
    "EmbeddingSet",
    "Encoder",
    "FeatureEncoder",
    "SimilarityIndex",
    "classification_metrics",
    "embed_arrays",
    "extract_embeddings",
    "image_to_patches",
    "index_path_for",
    "label_subsets",
    "load_astropt",
    "load_embeddings",
    "load_encoder",
    "outlier_scores",
    "patch_order",
    "patches_to_image",
    "pretrain",
    "recall_at_k",
    "regression_metrics",
    "run_probes",
    "save_astropt",
]
