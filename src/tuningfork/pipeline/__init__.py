"""The morphology catalog at survey scale: every stage, shard by shard, on Dask distributed.

This layer sits above the methods: it composes them (reading, preprocessing,
classification) into resumable per-shard tasks.  Nothing below imports it.
"""

from __future__ import annotations

import lazy_loader

# Submodules load on first use, so that `tuningfork --help` can read the
# defaults of :mod:`.manifest` without importing Dask and torch.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "catalog": ["CatalogResult", "build_catalog", "expert_ranks", "merge_parts", "resolve_config"],
        "cluster": ["ModelPlugin", "open_client"],
        "config": ["PipelineConfig", "load_pipeline_config"],
        "local": ["cached_model", "default_workers", "one_core"],
        "manifest": ["SHARD_SIZE", "Manifest", "Shard", "build_manifest"],
        "shard": ["ShardPlan", "failures_path", "part_path", "run_shard", "vectors_path"],
    },
)
