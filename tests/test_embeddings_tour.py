"""The embeddings stop of the demo runs end to end on a small simulated sample."""

import torch
from astropy.table import Table

from tuningfork.embeddings.tour import embeddings_tour
from tuningfork.simulation import simulate, write_sample

torch.set_num_threads(1)


def test_tour_writes_model_embeddings_and_mosaics(tmp_path):
    sample = simulate(40, size=32, bands=("g", "r"), seed=4, workers=1)
    catalog = write_sample(sample, tmp_path / "sims", formats=("fits",))
    paths = embeddings_tour(catalog, tmp_path / "tour", epochs=1)
    assert (paths["model"] / "weights.safetensors").is_file()
    neighbours = Table.read(paths["neighbours"])
    assert str(neighbours["id"][0]) == str(sample.catalog["id"][0])
    assert len(Table.read(paths["outliers"])) == 40
    assert (
        paths["neighbours_mosaic"].stat().st_size > 0
        and paths["outliers_mosaic"].stat().st_size > 0
    )
