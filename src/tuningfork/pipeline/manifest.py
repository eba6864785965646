"""The manifest: a data set's ids cut into shards whose ids do not depend on the run.

A shard is a contiguous run of the collection's rows.  Its id is a hash of
the ordered ids it holds, so the same input cut the same way gives the same
shard ids on every run and every machine: that is what lets a rerun
recognise the parts an earlier run finished.  The fingerprint hashes the
whole ordered id list, so a folder written for other galaxies is never
resumed by mistake.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..data import GalaxyCollection, write_table
from ..errors import CatalogError, ConfigError, EmptyCatalogError

MANIFEST_FILE = "manifest.parquet"
#: Galaxies per shard by default: a part of a few hundred kB, and minutes of work at most per task.
SHARD_SIZE = 1000


def _digest(ids: Sequence[str]) -> str:
    # The separator cannot occur inside an id read from a catalog line, so
    # ("ab", "c") and ("a", "bc") hash differently.
    return hashlib.sha256("\n".join(ids).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Shard:
    """One unit of work: rows ``start:stop`` of the collection.

    Attributes
    ----------
    shard_id : str
        16 hex digits of the SHA-256 of the shard's ordered ids.
    start, stop : int
        Rows of the collection.
    """

    shard_id: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Manifest:
    """A collection cut into shards.

    Attributes
    ----------
    shards : list of Shard
        In collection order; they cover it without overlap.
    fingerprint : str
        SHA-256 of the collection's ordered ids.
    count : int
        Galaxies in all.
    """

    shards: list[Shard]
    fingerprint: str
    count: int

    def write(self, folder: str | Path) -> Path:
        """Write ``manifest.parquet`` (one row per shard) into ``folder``, atomically.

        Parameters
        ----------
        folder : str or Path

        Returns
        -------
        Path
            The written file.
        """
        from astropy.table import Table

        table = Table({
            "shard_id": [shard.shard_id for shard in self.shards],
            "start": [shard.start for shard in self.shards],
            "stop": [shard.stop for shard in self.shards],
        })
        table.meta["fingerprint"] = self.fingerprint
        return write_table(Path(folder) / MANIFEST_FILE, table)


def build_manifest(collection: GalaxyCollection, shard_size: int) -> Manifest:
    """Cut a collection into shards of ``shard_size`` galaxies (the last may be smaller).

    Parameters
    ----------
    collection : GalaxyCollection
    shard_size : int
        Galaxies per shard.

    Returns
    -------
    Manifest

    Raises
    ------
    EmptyCatalogError
        The collection has no galaxies.
    CatalogError
        Two galaxies share an id (the catalog is keyed by id).
    ConfigError
        ``shard_size`` is not a positive integer.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ConfigError(f"{collection.name}: shard size must be a positive integer, got {shard_size!r}")
    ids = collection.ids
    if not ids:
        raise EmptyCatalogError(collection.name)
    repeated = [name for name, times in Counter(ids).items() if times > 1]
    if repeated:
        raise CatalogError(f"{collection.name}: {len(repeated)} ids occur more than once (e.g. '{repeated[0]}'); "
                           "a catalog is keyed by id")
    shards = [
        Shard(_digest(ids[start:start + shard_size])[:16], start, min(start + shard_size, len(ids)))
        for start in range(0, len(ids), shard_size)
    ]
    return Manifest(shards, _digest(ids), len(ids))
