"""Tests of tuningfork.data.catalog: reading tables and recognising column roles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from tuningfork.data.catalog import CatalogSchema, find_column, normalise_ids, read_catalog
from tuningfork.data.writers import write_table
from tuningfork.errors import (
    CatalogError,
    CorruptFileError,
    EmptyCatalogError,
    MissingColumnError,
    MissingFileError,
    UnsupportedFormatError,
)


# ------------------------------------------------------------------ real data
def test_real_gz2_catalog(shared_data):
    table = read_catalog(shared_data / "gz2-spirals" / "catalog.csv")
    assert len(table) == 2000
    assert table.colnames[0] == "id" and "galaxy_id" not in table.colnames
    assert table["id"].dtype.kind == "U"
    assert table["id"][0] == "101654"
    schema = CatalogSchema.infer(table)
    assert schema.file_column == "file"
    assert schema.label_column == "label"
    assert schema.image_columns == ["file"]
    assert set(table["label"]) == {"spiral", "non_spiral"}


def test_real_gz1_keeps_64_bit_ids_exact(shared_data):
    table = read_catalog(shared_data / "gz1" / "catalog.csv")
    assert table["id"][0] == "588848901532418163"
    assert len(set(table["id"])) == len(table) == 5331


def test_real_cosmos_fits_table(shared_data):
    path = shared_data / "cosmos-f814w" / "real_galaxy_catalog_26_extension_example.fits"
    table = read_catalog(path)
    assert table["id"][:3].tolist() == ["0", "1", "2"]  # from IDENT
    assert table["GAL_FILENAME"].dtype.kind == "U"  # FITS bytes decoded
    schema = CatalogSchema.infer(table, path)
    assert schema.file_column == "GAL_FILENAME"
    assert schema.hdu_column == "GAL_HDU"
    assert (schema.ra_column, schema.dec_column) == ("RA", "DEC")
    assert "MAG" in schema.extra_columns and "BAND" not in schema.extra_columns
    files = schema.image_paths(table, path.parent)
    assert files[0] == (str(path.parent / "real_galaxy_images_extension.fits"),)
    assert Path(files[0][0]).is_file()


# ------------------------------------------------------------------ formats
@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".fits"])
def test_formats_round_trip(tmp_path, suffix):
    table = Table(
        {
            "objid": [11, 12, 13],
            "filename": ["a.fits", "b.fits", "c.fits"],
            "mag": [20.1, 21.0, 19.5],
        }
    )
    path = write_table(tmp_path / f"cat{suffix}", table)
    loaded = read_catalog(path)
    assert loaded["id"].tolist() == ["11", "12", "13"]
    assert loaded["filename"].tolist() == ["a.fits", "b.fits", "c.fits"]
    np.testing.assert_allclose(loaded["mag"], table["mag"])


def test_ids_from_row_numbers_and_integral_floats():
    table = normalise_ids(Table({"flux": [1.0, 2.0]}), "mem")
    assert table["id"].tolist() == ["0", "1"]
    table = normalise_ids(Table({"ID": [4.0, 5.0]}), "mem")
    assert table["id"].tolist() == ["4", "5"]


def test_normalise_ids_leaves_input_alone():
    original = Table({"galaxy_id": [1, 2]})
    normalise_ids(original, "mem")
    assert original.colnames == ["galaxy_id"]


def test_explicit_id_column(tmp_path):
    path = tmp_path / "cat.csv"
    path.write_text("name,sdss_number,file\na,100,x.png\nb,200,y.png\n")
    assert read_catalog(path, id_column="sdss_number")["id"].tolist() == ["100", "200"]
    assert read_catalog(path)["id"].tolist() == ["a", "b"]
    with pytest.raises(MissingColumnError, match="'nope'") as error:
        read_catalog(path, id_column="nope")
    assert str(path) in str(error.value)


def test_duplicate_ids(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("id,file\n1,a.png\n1,b.png\n2,c.png\n")
    with pytest.raises(CatalogError, match="1 ids repeat"):
        read_catalog(path)


def test_bad_catalog_files(tmp_path):
    with pytest.raises(MissingFileError):
        read_catalog(tmp_path / "absent.csv")
    header_only = tmp_path / "header.csv"
    header_only.write_text("id,file\n")
    with pytest.raises(EmptyCatalogError, match="no rows") as error:
        read_catalog(header_only)
    assert str(header_only) in str(error.value)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(EmptyCatalogError):
        read_catalog(empty)
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet" * 20)
    with pytest.raises(CorruptFileError, match="junk.parquet"):
        read_catalog(junk)
    with pytest.raises(UnsupportedFormatError):
        read_catalog(tmp_path / "cat.xlsx")


# ------------------------------------------------------------------ schema
def test_band_columns_inferred_and_explicit():
    table = Table(
        {"id": ["a"], "file_g": ["a_g.fits"], "file_r": ["a_r.fits"], "file_name": ["a.png"]}
    )
    schema = CatalogSchema.infer(table)
    assert schema.band_columns == {"g": "file_g", "r": "file_r"}
    assert schema.bands == ["g", "r"]
    assert schema.image_columns == ["file_g", "file_r"]
    assert schema.file_column == "file_name"
    explicit = CatalogSchema.infer(table, band_columns=["file_r"])
    assert explicit.band_columns == {"r": "file_r"}
    with pytest.raises(MissingColumnError, match="file_z"):
        CatalogSchema.infer(table, band_columns={"z": "file_z"})


def test_gz2_vote_columns_one_flavour():
    names = [
        "t01_smooth_or_features_a01_smooth_count",
        "t01_smooth_or_features_a01_smooth_fraction",
        "t01_smooth_or_features_a01_smooth_weighted_fraction",
        "t01_smooth_or_features_a01_smooth_flag",
        "t01_smooth_or_features_a02_features_or_disk_count",
        "t01_smooth_or_features_a02_features_or_disk_fraction",
        "t01_smooth_or_features_a02_features_or_disk_weighted_fraction",
    ]
    table = Table({"id": ["a", "b"], **{name: [0.25, 0.75] for name in names}})
    schema = CatalogSchema.infer(table)
    assert schema.vote_columns == [names[2], names[6]]
    assert schema.vote_kind == "fraction"
    assert names[0] in schema.extra_columns  # unused flavours stay available as numbers


def test_kaggle_vote_columns_and_counts():
    table = Table({"GalaxyID": [1, 2], "Class1.1": [3, 10], "Class1.2": [5, 0], "Class1.3": [0, 1]})
    schema = CatalogSchema.infer(normalise_ids(table, "mem"))
    assert schema.vote_columns == ["Class1.1", "Class1.2", "Class1.3"]
    assert schema.vote_kind == "count"
    assert schema.extra_columns == []


def test_label_override_and_extras():
    table = Table(
        {
            "id": ["a", "b"],
            "label": ["x", "y"],
            "morph": ["E", "S"],
            "ra": [1.0, 2.0],
            "DEC": [3.0, 4.0],
            "redshift": [0.1, 0.2],
            "note": ["n", "m"],
        }
    )
    schema = CatalogSchema.infer(table, label_column="morph")
    assert schema.label_column == "morph"
    assert (schema.ra_column, schema.dec_column) == ("ra", "DEC")
    assert schema.extra_columns == ["redshift"]
    assert schema.to_dict()["label_column"] == "morph"
    with pytest.raises(MissingColumnError, match="'class'"):
        CatalogSchema.infer(table, label_column="class")


def test_image_paths_relative_to_base(tmp_path):
    table = Table({"id": ["a", "b"], "file": ["img/a.png", str(tmp_path / "abs.png")]})
    files = CatalogSchema.infer(table).image_paths(table, tmp_path / "base")
    assert files == [(str(tmp_path / "base" / "img" / "a.png"),), (str(tmp_path / "abs.png"),)]
    # Strings, not Paths: a collection of 10^7 galaxies holds one per galaxy.
    assert all(isinstance(path, str) for row in files for path in row)


def test_find_column_ignores_case_and_prefers_order():
    assert find_column(["OBJID", "name"], ("id", "objid", "name")) == "OBJID"
    assert find_column(["x"], ("id",)) is None


def test_csv_values_that_start_like_numbers_stay_text(tmp_path):
    # astropy's fast CSV reader parses the numeric prefix, turning "nan.fits" into NaN.
    path = tmp_path / "catalog.csv"
    path.write_text(
        "id,file,label,file_g,mag\n"
        "007,nan.fits,spiral,inf_g.fits,18.5\n"
        "nan,nanjpg.jpeg,elliptical,123,nan\n"
    )
    table = read_catalog(path)
    assert list(table["id"]) == ["007", "nan"]
    assert list(table["file"]) == ["nan.fits", "nanjpg.jpeg"]
    assert list(table["file_g"]) == ["inf_g.fits", "123"]
    assert list(table["label"]) == ["spiral", "elliptical"]
    # Whole numbers are still numbers.
    assert table["mag"].dtype.kind == "f" and np.isnan(table["mag"][1])
    schema = CatalogSchema.infer(table)
    assert schema.file_column == "file" and schema.bands == ["g"]
