"""Tests of tuningfork.data.collection: opening every kind of data set lazily."""

from __future__ import annotations

import pickle
import tracemalloc

import galsim
import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.table import MaskedColumn, Table

from tuningfork.data import GalaxyCollection, read_image, write_table
from tuningfork.errors import (
    CatalogError,
    ConfigError,
    CorruptFileError,
    EmptyImageError,
    ImageShapeError,
    InputFileError,
    MissingColumnError,
    MissingFileError,
    MissingImagesError,
    UnsupportedFormatError,
)


def galaxy(size: int = 24, flux: float = 500.0, radius: float = 1.0) -> np.ndarray:
    """A GalSim exponential disc, float32 (size, size)."""
    profile = galsim.Exponential(half_light_radius=radius, flux=flux)
    return profile.drawImage(nx=size, ny=size, scale=0.2).array.astype(np.float32)


@pytest.fixture
def fits_catalog(tmp_path):
    """Five GalSim galaxies as FITS files plus a CSV catalog naming them."""
    folder = tmp_path / "stamps"
    folder.mkdir()
    for index in range(5):
        fits.PrimaryHDU(galaxy(flux=100.0 * (index + 1))).writeto(folder / f"g{index}.fits")
    table = Table(
        {
            "objid": [f"g{index}" for index in range(5)],
            "path": [f"stamps/g{index}.fits" for index in range(5)],
            "class": ["disc", "disc", "bulge", "disc", "bulge"],
            "redshift": [0.1, 0.2, 0.3, 0.4, 0.5],
        }
    )
    return write_table(tmp_path / "catalog.csv", table)


def galaxy10_file(path, count=12, size=16):
    """An HDF5 file in the Galaxy10 layout: uint8 (N, H, W, 3) images and 'ans'."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as h5:
        h5["images"] = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
        h5["ans"] = np.arange(count) % 4
        h5["ra"] = np.linspace(150.0, 151.0, count)
        h5["dec"] = np.linspace(2.0, 2.5, count)
        h5["redshift"] = np.linspace(0.01, 0.2, count)
        h5["pxscale"] = np.full(3, 0.262)  # not per galaxy: must not become a column
    return path


# ------------------------------------------------------------------ real data
def test_real_gz2_catalog_collection(shared_data):
    collection = GalaxyCollection.open(shared_data / "gz2-spirals" / "catalog.csv")
    assert len(collection) == 2000
    assert collection.kind == "catalog"
    assert collection.class_names == ["non_spiral", "spiral"]
    assert np.bincount(collection.labels()).tolist() == [1000, 1000]
    first = collection[0]
    assert first.id == collection.ids[0] == "101654"
    assert first.image.shape == (3, 424, 424) and first.image.dtype == np.float32
    assert first.row["label"] == "non_spiral" and first.row["split"] == "train"
    np.testing.assert_array_equal(
        first.image, read_image(shared_data / "gz2-spirals" / "images" / "101654.jpg")
    )


def test_real_folder_with_catalog_and_crop(shared_data):
    collection = GalaxyCollection.open(shared_data / "gz2-spirals").subset(np.arange(5))
    batches = list(
        collection.iter_batches(batch_size=2, preprocess=lambda image: image[:, 100:-100, 100:-100])
    )
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert batches[0].images.shape == (2, 3, 224, 224)
    assert [galaxy_id for batch in batches for galaxy_id in batch.ids] == collection.ids


def test_real_gz1_merged_labels(shared_data):
    collection = GalaxyCollection.open(shared_data / "gz1" / "catalog.csv")
    merged = collection.labels("label_merged")
    assert len(np.unique(merged)) == 5
    assert len(collection.class_names) == 6
    assert "spiral_cw" in collection.class_names


def test_real_unlabelled_folder(shared_data):
    collection = GalaxyCollection.open(shared_data / "gz2-unlabelled" / "images")
    assert collection.kind == "directory" and len(collection) == 600
    assert collection.ids == sorted(collection.ids)
    assert collection.class_names == []
    with pytest.raises(MissingColumnError, match="label"):
        collection.labels()


def test_real_cosmos_catalog_reads_each_hdu(shared_data):
    path = shared_data / "cosmos-f814w" / "real_galaxy_catalog_26_extension_example.fits"
    collection = GalaxyCollection.open(path).subset(np.arange(6))
    # The stamps have different sizes: one by one they read, as one batch they cannot.
    images_file = shared_data / "cosmos-f814w" / "real_galaxy_images_extension.fits"
    for galaxy in collection:
        np.testing.assert_array_equal(galaxy.image, read_image(images_file, hdu=galaxy.row["GAL_HDU"]))
    with pytest.raises(ImageShapeError, match=r"real_galaxy_images_extension.fits\[\d+\]: image is .*output_size"):
        next(collection.iter_batches(batch_size=6))
    assert collection.schema.ra_column == "RA"


def test_real_single_fits_image(shared_data):
    collection = GalaxyCollection.open(shared_data / "sdss-fits" / "n3073rss_small.fits")
    assert collection.kind == "file" and collection.ids == ["n3073rss_small"]
    assert collection[0].image.shape == (1, 200, 150)
    summary = collection.describe()
    assert summary["source_dtype"] == "float32"
    assert summary["shapes"] == {"1x200x150": 1}


# ------------------------------------------------------------------ catalogs
def test_catalog_roles_and_labels(fits_catalog):
    collection = GalaxyCollection.open(fits_catalog)
    assert collection.ids == ["g0", "g1", "g2", "g3", "g4"]
    assert collection.class_names == ["bulge", "disc"]
    assert collection.labels().tolist() == [1, 1, 0, 1, 0]
    assert collection[-1].row["redshift"] == pytest.approx(0.5)
    assert collection[2].image.sum() == pytest.approx(galaxy(flux=300.0).sum())


def test_catalog_rows_with_missing_files(fits_catalog, tmp_path):
    for index in (1, 3, 4):
        (tmp_path / "stamps" / f"g{index}.fits").unlink()
    with pytest.raises(MissingImagesError, match="3 catalog rows") as error:
        GalaxyCollection.open(fits_catalog)
    assert [path.name for path in error.value.missing] == ["g1.fits", "g3.fits", "g4.fits"]
    assert "\n" not in str(error.value)
    with pytest.warns(UserWarning, match="skipped 3 rows"):
        collection = GalaxyCollection.open(fits_catalog, skip_missing=True)
    assert collection.ids == ["g0", "g2"]
    assert collection.skipped["id"].tolist() == ["g1", "g3", "g4"]
    assert collection.describe()["skipped"] == 3
    assert collection.class_names == ["bulge", "disc"]


def test_catalog_without_file_column(tmp_path):
    path = write_table(tmp_path / "positions.csv", Table({"id": ["a"], "ra": [1.0]}))
    with pytest.raises(MissingColumnError, match="no column 'file'"):
        GalaxyCollection.open(path)


def test_multiband_catalog_and_fits_table(tmp_path):
    for band, scale in zip("gri", (1.0, 2.0, 3.0)):
        for name in ("a", "b"):
            fits.PrimaryHDU(scale * galaxy()).writeto(tmp_path / f"{name}_{band}.fits")
    table = Table(
        {
            "id": ["a", "b"],
            **{f"file_{band}": [f"a_{band}.fits", f"b_{band}.fits"] for band in "gri"},
        }
    )
    path = write_table(tmp_path / "bands.fits", table)
    collection = GalaxyCollection.open(path)  # a FITS table, so a catalog, not an image
    assert collection.kind == "catalog"
    image = collection[1].image
    assert image.shape == (3, 24, 24)
    np.testing.assert_allclose(image[2], 3.0 * galaxy(), rtol=1e-6)
    assert collection.describe()["band_names"] == ["g", "r", "i"]


def test_parquet_catalog(fits_catalog, tmp_path):
    table = Table.read(fits_catalog)
    path = write_table(tmp_path / "catalog.parquet", table)
    collection = GalaxyCollection.open(path, label_column="class")
    assert collection.ids == ["g0", "g1", "g2", "g3", "g4"]
    assert collection.labels().tolist() == [1, 1, 0, 1, 0]


# ------------------------------------------------------------------ HDF5 / NPY / NPZ
def test_galaxy10_hdf5(tmp_path):
    path = galaxy10_file(tmp_path / "Galaxy10.h5")
    collection = GalaxyCollection.open(path)
    assert collection.kind == "hdf5" and len(collection) == 12
    assert set(collection.catalog.colnames) == {"id", "label", "ra", "dec", "redshift"}
    assert collection.labels().tolist() == (np.arange(12) % 4).tolist()
    assert collection.class_names == ["0", "1", "2", "3"]
    with h5py.File(path) as h5:
        # RGB channels come back blue first, like every band stack.
        expected = np.moveaxis(h5["images"][5], -1, 0)[::-1] / 255.0
    np.testing.assert_allclose(collection[5].image, expected, atol=1e-6)
    assert collection[5].row["redshift"] == pytest.approx(np.linspace(0.01, 0.2, 12)[5])
    assert collection.describe()["source_dtype"] == "uint8"


def test_plain_hdf5_and_out_of_order_subset(tmp_path):
    stack = np.stack([galaxy(flux=float(index + 1)) for index in range(6)])[:, None]
    path = tmp_path / "plain.hdf5"
    with h5py.File(path, "w") as h5:
        h5["images"] = stack
        h5["labels"] = np.array([b"E", b"S", b"E", b"S", b"E", b"S"])
        h5["ids"] = np.array([b"x0", b"x1", b"x2", b"x3", b"x4", b"x5"])
    collection = GalaxyCollection.open(path)
    assert collection.ids == ["x0", "x1", "x2", "x3", "x4", "x5"]
    picked = collection.subset([4, 1, 4])
    batch = next(picked.iter_batches())
    np.testing.assert_array_equal(batch.images, stack[[4, 1, 4]])
    assert picked.labels().tolist() == [0, 1, 0]


def test_hdf5_without_images_and_corrupt(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as h5:
        h5["spectra"] = np.ones((3, 10))
    with pytest.raises(MissingColumnError, match="'images'"):
        GalaxyCollection.open(path)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\0not hdf5" * 100)
    with pytest.raises(CorruptFileError, match="junk.h5"):
        GalaxyCollection.open(junk)


def test_npy_stacks(tmp_path):
    flat = np.stack([galaxy(flux=float(index + 1)) for index in range(7)])
    np.save(tmp_path / "flat.npy", flat)
    collection = GalaxyCollection.open(tmp_path / "flat.npy")
    assert collection.kind == "npy" and len(collection) == 7
    assert collection[3].image.shape == (1, 24, 24)
    banded = np.stack([flat, 2 * flat], axis=1)
    np.save(tmp_path / "banded.npy", banded)
    batch = next(GalaxyCollection.open(tmp_path / "banded.npy").iter_batches(batch_size=4))
    np.testing.assert_array_equal(batch.images, banded[:4])
    np.save(tmp_path / "single.npy", flat[0])
    assert GalaxyCollection.open(tmp_path / "single.npy").kind == "file"
    np.save(tmp_path / "line.npy", np.ones((2, 2, 2, 2, 2)))
    with pytest.raises(ImageShapeError, match="expected"):
        GalaxyCollection.open(tmp_path / "line.npy")


@pytest.mark.parametrize("save", [np.savez, np.savez_compressed])
def test_npz_with_labels_and_ids(tmp_path, save):
    images = np.stack([galaxy(flux=float(index + 1)) for index in range(4)])
    save(
        tmp_path / "set.npz",
        images=images,
        labels=np.array([0, 1, 1, 0]),
        ids=np.array(["a", "b", "c", "d"]),
    )
    collection = GalaxyCollection.open(tmp_path / "set.npz")
    assert collection.ids == ["a", "b", "c", "d"]
    assert collection.labels().tolist() == [0, 1, 1, 0]
    np.testing.assert_array_equal(collection[2].image[0], images[2])
    restored = pickle.loads(pickle.dumps(collection.shards(2)[1]))
    np.testing.assert_array_equal(restored[0].image[0], images[2])
    save(tmp_path / "nokey.npz", pixels=images)
    with pytest.raises(MissingColumnError, match="'images'"):
        GalaxyCollection.open(tmp_path / "nokey.npz")


# ------------------------------------------------------------------ arrays
def test_from_arrays_leaves_input_alone_and_checks_catalog():
    images = np.stack([galaxy() for _ in range(3)])
    before = images.copy()
    collection = GalaxyCollection.from_arrays(
        images, {"galaxy_id": [7, 8, 9], "label": ["a", "b", "a"]}
    )
    batch = next(collection.iter_batches(preprocess=lambda image: image * 0.0))
    assert batch.images.sum() == 0.0
    np.testing.assert_array_equal(images, before)
    assert collection.ids == ["7", "8", "9"]
    assert collection.labels().tolist() == [0, 1, 0]
    with pytest.raises(CatalogError, match="2 rows but there are 3 images"):
        GalaxyCollection.from_arrays(images, {"id": ["a", "b"]})


def test_ragged_images_read_one_by_one_and_batch_only_after_resizing():
    collection = GalaxyCollection.from_arrays([galaxy(16), galaxy(16), galaxy(20)])
    assert [item.image.shape for item in collection] == [(1, 16, 16), (1, 16, 16), (1, 20, 20)]
    with pytest.raises(ImageShapeError, match=r"<arrays>\[2\]: image is 1x20x20 but <arrays>\[0\] is 1x16x16"):
        next(collection.iter_batches())
    with pytest.raises(ImageShapeError, match="galaxy 2 is 1x20x20 but galaxy 0 is 1x16x16"):
        collection.read_images(batch_size=2)
    batch = next(collection.iter_batches(preprocess=lambda image: image[:, :8, :8]))
    assert isinstance(batch.images, np.ndarray) and batch.images.shape == (3, 1, 8, 8)
    assert collection.read_images(lambda image: image[:, :8, :8], batch_size=2).shape == (3, 1, 8, 8)


# ------------------------------------------------------------------ batches, shards, subsets
def test_shards_are_contiguous_disjoint_covering_and_picklable(fits_catalog):
    collection = GalaxyCollection.open(fits_catalog)
    shards = collection.shards(3)
    assert [shard.ids for shard in shards] == [["g0", "g1"], ["g2", "g3"], ["g4"]]
    restored = pickle.loads(pickle.dumps(shards[1]))
    np.testing.assert_array_equal(restored[0].image, collection[2].image)
    assert restored.labels().tolist() == [0, 1]  # codes agree with the whole collection
    assert sum(len(shard) for shard in collection.shards(8)) == 5
    with pytest.raises(ConfigError):
        collection.shards(0)


def test_a_shard_pickles_with_its_own_rows_not_the_whole_list(fits_catalog):
    # Workers keep the arguments of every shard task they ran: none may carry all paths.
    table = Table.read(fits_catalog)
    many = Table(np.repeat(table.as_array(), 400))
    many["objid"] = [f"r{index}" for index in range(len(many))]
    write_table(fits_catalog.parent / "many.csv", many)
    big = GalaxyCollection.open(fits_catalog.parent / "many.csv")
    whole = len(pickle.dumps(big))
    shard = big.subset(np.array([7, 3, 7, 1500]))
    packed = pickle.dumps(shard)
    assert len(packed) < whole / 50
    restored = pickle.loads(packed)
    assert restored.ids == ["r7", "r3", "r7", "r1500"]
    for index, row in enumerate([7, 3, 7, 1500]):
        np.testing.assert_array_equal(restored[index].image, big[row].image)


def test_an_arrays_shard_pickles_only_its_pixels():
    images = np.stack([galaxy(flux=float(index + 1)) for index in range(200)])
    collection = GalaxyCollection.from_arrays(images)
    restored = pickle.loads(pickle.dumps(collection.subset([150, 2])))
    assert len(pickle.dumps(collection.subset([150, 2]))) < images.nbytes / 50
    np.testing.assert_array_equal(restored.read_images(), images[[150, 2]][:, None])
    np.testing.assert_array_equal(collection.read_images(), images[:, None])


def test_hdf5_shards_pickle_without_handles(tmp_path):
    collection = GalaxyCollection.open(galaxy10_file(tmp_path / "g10.h5"))
    shard = pickle.loads(pickle.dumps(collection.shards(4)[3]))
    assert shard.ids == ["9", "10", "11"]
    np.testing.assert_array_equal(shard[0].image, collection[9].image)


def test_subset_mask_and_indexing(fits_catalog):
    collection = GalaxyCollection.open(fits_catalog)
    discs = collection.subset(collection.labels() == 1)
    assert discs.ids == ["g0", "g1", "g3"]
    assert [galaxy.id for galaxy in discs] == ["g0", "g1", "g3"]
    with pytest.raises(IndexError):
        collection[5]
    with pytest.raises(TypeError, match="subset"):
        collection["g0"]
    with pytest.raises(ConfigError):
        next(collection.iter_batches(batch_size=0))


def test_progress_bar_goes_to_stderr(fits_catalog, capsys):
    batches = list(GalaxyCollection.open(fits_catalog).iter_batches(batch_size=2, progress=True))
    assert len(batches) == 3
    assert capsys.readouterr().out == ""


def test_iteration_memory_is_bounded(tmp_path):
    count, size = 3000, 64
    stack = np.lib.format.open_memmap(
        tmp_path / "big.npy", mode="w+", dtype=np.float32, shape=(count, size, size)
    )
    stack[:] = 1.0
    stack.flush()
    del stack
    h5_path = tmp_path / "big.h5"
    with h5py.File(h5_path, "w") as h5:
        h5.create_dataset(
            "images", data=np.load(tmp_path / "big.npy", mmap_mode="r"), chunks=(64, size, size)
        )
    stack_bytes = count * size * size * 4  # 49 MB
    for path in (tmp_path / "big.npy", h5_path):
        collection = GalaxyCollection.open(path)
        tracemalloc.start()
        seen = sum(len(batch) for batch in collection.iter_batches(batch_size=64))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert seen == count
        assert peak < stack_bytes / 10, f"{path.name}: peak {peak} bytes"


# ------------------------------------------------------------------ describe
def test_describe_counts_nan_and_labels():
    images = np.stack([galaxy() for _ in range(4)])
    images[0, :6] = np.nan  # 6 of 24 rows of one image
    images[1] = np.nan  # an all-NaN image must not stop describe
    collection = GalaxyCollection.from_arrays(images, {"label": ["E", "S", "S", ""]})
    summary = collection.describe(batch_size=3)
    assert summary["count"] == 4
    assert summary["shapes"] == {"1x24x24": 4}
    assert summary["bands"] == [1]
    assert summary["source_dtype"] == "float32"
    assert summary["nonfinite_fraction"] == pytest.approx((6 * 24 + 24 * 24) / (4 * 24 * 24))
    assert summary["label_counts"] == {"E": 1, "S": 2, None: 1}
    with pytest.raises(EmptyImageError, match=r"<arrays>\[1\]"):
        list(collection.iter_batches())
    with pytest.raises(CatalogError, match="1 rows of 'label' have no label"):
        collection.labels()


# ------------------------------------------------------------------ bad paths
def test_open_bad_paths(tmp_path):
    with pytest.raises(MissingFileError, match="absent.csv"):
        GalaxyCollection.open(tmp_path / "absent.csv")
    odd = tmp_path / "data.xyz"
    odd.write_text("?")
    with pytest.raises(UnsupportedFormatError, match="data.xyz"):
        GalaxyCollection.open(odd)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputFileError, match="no image files"):
        GalaxyCollection.open(empty)


def test_folder_of_images_sorted_by_stem(tmp_path):
    for name in ("b", "a", "c"):
        fits.PrimaryHDU(galaxy()).writeto(tmp_path / f"{name}.fits.gz")
    (tmp_path / "notes.txt").write_text("ignored")
    collection = GalaxyCollection.open(tmp_path)
    assert collection.ids == ["a", "b", "c"]
    assert collection.catalog["file"].tolist() == ["a.fits.gz", "b.fits.gz", "c.fits.gz"]
    truncated = tmp_path / "d.fits"
    truncated.write_bytes((tmp_path / "a.fits.gz").read_bytes()[:100])
    broken = GalaxyCollection.open(tmp_path)
    with pytest.raises(CorruptFileError, match="d.fits"):
        list(broken.iter_batches())


def test_open_options_work_for_every_source(tmp_path):
    path = galaxy10_file(tmp_path / "g10.h5")
    by_redshift = GalaxyCollection.open(path, label_column="redshift", skip_missing=True)
    assert by_redshift.schema.label_column == "redshift"
    assert len(by_redshift.class_names) == 12
    fits.PrimaryHDU(galaxy()).writeto(tmp_path / "one.fits")
    assert len(GalaxyCollection.open(tmp_path / "one.fits", skip_missing=True)) == 1
    with pytest.raises(MissingColumnError, match="'morphology'"):
        GalaxyCollection.open(tmp_path / "one.fits", label_column="morphology")


def test_sed_values_turn_masked_entries_into_nan():
    catalog = Table({"id": ["a", "b"], "mag": MaskedColumn([20.0, 21.0], mask=[False, True])})
    collection = GalaxyCollection.from_arrays(np.zeros((2, 1, 8, 8), dtype=np.float32), catalog)
    values = collection.sed_values(["mag"])
    assert values[0, 0] == 20.0 and np.isnan(values[1, 0])
    with pytest.raises(MissingColumnError, match="no column 'flux_z'"):
        collection.sed_values(["flux_z"])


def test_catalog_naming_nan_files_opens(tmp_path):
    for name in ("nan.fits", "nanjpg.fits"):
        fits.PrimaryHDU(galaxy()).writeto(tmp_path / name)
    (tmp_path / "catalog.csv").write_text("id,file,label\na,nan.fits,x\nb,nanjpg.fits,y\n")
    collection = GalaxyCollection.open(tmp_path / "catalog.csv")
    assert len(collection) == 2 and collection.schema.file_column == "file"
    np.testing.assert_allclose(collection[0].image[0], galaxy())


def test_multi_extension_fits_opens_every_image_hdu(tmp_path):
    path = tmp_path / "mef.fits"
    images = [galaxy(flux=100.0 * (index + 1)) for index in range(100)]
    fits.HDUList([fits.PrimaryHDU(), *map(fits.ImageHDU, images)]).writeto(path)
    collection = GalaxyCollection.open(path)
    assert len(collection) == 100
    assert collection.ids[:2] == ["mef[1]", "mef[2]"] and collection.ids[-1] == "mef[100]"
    stack = collection.read_images(batch_size=32)
    np.testing.assert_allclose(stack[:, 0], np.stack(images), rtol=1e-6)
    # Naming an HDU reads only that one.
    assert len(GalaxyCollection.open(path, hdu=7)) == 1


def test_multi_extension_fits_ids_use_extnames_and_skip_masks(tmp_path):
    named = tmp_path / "named.fits"
    fits.HDUList(
        [fits.PrimaryHDU(galaxy(), header=fits.Header({"EXTNAME": "NGC1"})),
         fits.ImageHDU(galaxy(), name="NGC2"),
         fits.ImageHDU(np.zeros((24, 24), np.uint8), name="MASK")]
    ).writeto(named)  # fmt: skip
    assert GalaxyCollection.open(named).ids == ["named[NGC1]", "named[NGC2]"]
    # An image with its mask, as write_stamps writes it, is one galaxy.
    stamp = tmp_path / "stamp.fits"
    fits.HDUList([fits.PrimaryHDU(galaxy()), fits.ImageHDU(np.zeros((24, 24), np.uint8), name="MASK")]
                 ).writeto(stamp)  # fmt: skip
    assert GalaxyCollection.open(stamp).ids == ["stamp"]


def test_real_cosmos_image_file_opens_as_its_100_galaxies(shared_data):
    path = shared_data / "cosmos-f814w" / "real_galaxy_images_extension.fits"
    collection = GalaxyCollection.open(path)
    assert len(collection) == 100
    assert collection[40].image.shape == (1, 190, 190)


def test_progress_bar_only_on_a_terminal_outside_ci(fits_catalog, capfd, monkeypatch):
    import io

    import rich.console

    from tuningfork.data import batches

    collection = GalaxyCollection.open(fits_catalog)
    list(collection.iter_batches(batch_size=2, progress=True))
    assert capfd.readouterr() == ("", "")  # not a terminal
    screen = io.StringIO()
    real_console = rich.console.Console
    monkeypatch.setattr(
        rich.console, "Console", lambda **_: real_console(file=screen, force_terminal=True)
    )
    for ci, shown in (("true", False), ("", True)):
        monkeypatch.setenv("CI", ci)
        screen.truncate(0)
        with batches.progress_bar(3, True, "reading stamps") as advance:
            advance(3)
        assert ("reading stamps" in screen.getvalue()) is shown
