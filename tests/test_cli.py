"""The foundation commands end to end: info, preview, cutout, simulate, demo, and bad input."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS
from PIL import Image
from typer.testing import CliRunner

from tuningfork.cli import app

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    result = invoke("simulate", "--out", out, "--n", 16, "--size", 32, "--bands", "g,r",
                    "--seed", 3, "--workers", 1)
    assert result.exit_code == 0, result.output
    return out


def test_simulate_writes_images_and_catalog(simulated):
    catalog = Table.read(simulated / "catalog.csv")
    assert len(catalog) == 16
    assert {"id", "file", "label"} <= set(catalog.colnames)
    first = fits.getdata(simulated / catalog["file"][0])
    assert first.shape == (2, 32, 32)
    assert (simulated / "images" / f"{catalog['id'][0]}.png").exists()


def test_info_reports_counts_and_label_balance(simulated):
    result = invoke("info", simulated / "catalog.csv")
    assert result.exit_code == 0
    assert "16" in result.output
    assert "2x32x32" in result.output
    for label in set(Table.read(simulated / "catalog.csv")["label"]):
        assert label in result.output


def test_preview_grouped_mosaic(simulated, tmp_path):
    out = tmp_path / "mosaic.png"
    result = invoke("preview", simulated / "catalog.csv", "--out", out, "--group-by", "label", "--n", 2)
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.width > 100 and image.height > 100


def test_preview_unknown_group_column_is_one_line_error(simulated, tmp_path):
    result = invoke("preview", simulated / "catalog.csv", "--out", tmp_path / "m.png", "--group-by", "nope")
    assert result.exit_code == 2
    assert "nope" in result.output and "Traceback" not in result.output


def test_real_gz2_info_counts_both_classes(shared_data, tmp_path):
    # A small real catalog with relative file paths, written next to nothing but itself.
    source = Table.read(shared_data / "gz2-spirals" / "catalog.csv")[:6]
    source["file"] = [str(shared_data / "gz2-spirals" / f) for f in source["file"]]
    source.write(tmp_path / "few.csv")
    result = invoke("info", tmp_path / "few.csv")
    assert result.exit_code == 0
    assert "3x424x424: 6" in result.output


def _field_with_wcs(path, sources):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [100, 100]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    y, x = np.mgrid[:200, :200]
    image = np.random.default_rng(0).normal(0, 1, (200, 200)).astype(np.float32)
    for px, py in sources:
        image += 200 * np.exp(-0.5 * ((x - px) ** 2 + (y - py) ** 2) / 3.0**2)
    fits.PrimaryHDU(image, header=wcs.to_header()).writeto(path)
    return wcs


def test_cutout_at_catalog_positions_centres_sources(tmp_path):
    positions = [(50, 60), (140, 120), (3, 100)]
    wcs = _field_with_wcs(tmp_path / "field.fits", positions)
    sky = wcs.pixel_to_world([p[0] for p in positions], [p[1] for p in positions])
    Table({"id": ["a", "b", "edge"], "ra": sky.ra.deg, "dec": sky.dec.deg}).write(tmp_path / "radec.csv")
    result = invoke("cutout", tmp_path / "field.fits", "--catalog", tmp_path / "radec.csv",
                    "--out", tmp_path / "stamps", "--size", 31)
    assert result.exit_code == 0, result.output
    catalog = Table.read(tmp_path / "stamps" / "catalog.csv")
    assert list(catalog["id"].astype(str)) == ["a", "b", "edge"]
    for row in catalog:
        stamp = fits.getdata(tmp_path / "stamps" / row["file"])
        peak = np.unravel_index(np.nanargmax(stamp[0] if stamp.ndim == 3 else stamp), stamp.shape[-2:])
        assert abs(peak[0] - 15) <= 1 and abs(peak[1] - 15) <= 1
    assert str(catalog["edge"][2]) == "True"


def test_cutout_detects_sources_without_catalog(tmp_path):
    _field_with_wcs(tmp_path / "field.fits", [(50, 60), (140, 120)])
    result = invoke("cutout", tmp_path / "field.fits", "--out", tmp_path / "stamps", "--psf-fwhm", 2,
                    "--all-sources")
    assert result.exit_code == 0, result.output
    assert len(Table.read(tmp_path / "stamps" / "catalog.csv")) == 2


@pytest.mark.parametrize("command", ["info", "preview"])
def test_missing_file_is_one_line_error(command, tmp_path):
    result = invoke(command, tmp_path / "absent.fits")
    assert result.exit_code == 2
    assert "absent.fits" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_corrupt_fits_is_one_line_error(tmp_path):
    good = tmp_path / "good.fits"
    fits.PrimaryHDU(np.ones((64, 64), dtype=np.float32)).writeto(good)
    bad = tmp_path / "bad.fits"
    bad.write_bytes(good.read_bytes()[:4000])
    result = invoke("info", bad)
    assert result.exit_code == 2
    assert "bad.fits" in result.output and "Traceback" not in result.output


def test_catalog_rows_pointing_at_missing_files_are_all_reported(simulated, tmp_path):
    catalog = Table.read(simulated / "catalog.csv")
    files = [str(simulated / f) for f in catalog["file"]]
    files[2], files[5] = str(tmp_path / "gone1.fits"), str(tmp_path / "gone2.fits")
    catalog["file"] = files
    catalog.write(tmp_path / "broken.csv")
    result = invoke("info", tmp_path / "broken.csv")
    assert result.exit_code == 2
    assert "gone1.fits" in result.output and "gone2.fits" in result.output
    skipped = invoke("info", tmp_path / "broken.csv", "--skip-missing")
    assert skipped.exit_code == 0
    assert "14" in skipped.output


def test_empty_catalog_and_unknown_type(tmp_path):
    (tmp_path / "empty.csv").write_text("id,file\n")
    assert invoke("info", tmp_path / "empty.csv").exit_code == 2
    (tmp_path / "image.xyz").write_text("hello")
    result = invoke("info", tmp_path / "image.xyz")
    assert result.exit_code == 2 and "image.xyz" in result.output


def test_failed_cutout_keeps_earlier_output(tmp_path):
    _field_with_wcs(tmp_path / "field.fits", [(50, 60)])
    out = tmp_path / "stamps"
    assert invoke("cutout", tmp_path / "field.fits", "--out", out, "--all-sources",
                  "--psf-fwhm", 2).exit_code == 0
    before = (out / "catalog.csv").read_bytes()
    (tmp_path / "noradec.csv").write_text("id,flux\na,1\n")
    result = invoke("cutout", tmp_path / "field.fits", "--catalog", tmp_path / "noradec.csv", "--out", out,
                    "--overwrite")
    assert result.exit_code == 2 and "noradec.csv" in result.output
    assert (out / "catalog.csv").read_bytes() == before


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = invoke("demo", "--out", out, "--n-simulated", 24)
    assert result.exit_code == 0, result.output
    for name in ("hdf-preview.png", "simulated-preview.png", "hdf-preprocessed.npy",
                 "simulated-polar.png", "simulated-preprocess-config.json"):
        assert (out / name).exists(), name
    info = json.loads((out / "hdf-info.json").read_text())
    assert info["count"] > 50
    stack = np.load(out / "simulated-preprocessed.npy")
    assert stack.shape == (24, 3, 64, 64) and np.isfinite(stack).all()
    # It ends with the morphology catalog of the sample, built on Dask, printed.
    catalog = Table.read(out / "catalog" / "catalog.parquet")
    assert len(catalog) == 24 and {"predicted_class", "group", "neighbour_1"} <= set(catalog.colnames)
    assert "The morphology catalog" in result.output and "24 galaxies" in result.output


def test_outputs_are_readable_by_others(simulated):
    # Atomic writes go through mkstemp, which would leave owner-only files.
    mode = (simulated / "catalog.csv").stat().st_mode & 0o777
    assert mode & 0o044 == 0o044


def test_train_is_quiet_by_default(tmp_path):
    # Lightning's device lines, cloud tips and its own deprecation warning go
    # to the terminal unless kept back; so did wandb's scratch folders.
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    images = rng.normal(0, 1, (12, 24, 24)).astype(np.float32)
    np.savez(tmp_path / "tiny.npz", images=images, labels=np.array(["a", "b"] * 6))
    tmp_before = {path.name for path in Path(tempfile.gettempdir()).glob("*wandb*")}
    command = [sys.executable, "-m", "tuningfork.cli", "train", "tiny.npz", "--out", "model", "--image-size", "24",
               "--crop-pixels", "0", "--epochs", "1", "--batch-size", "6"]
    done = subprocess.run(command, check=False, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    for noise in ("GPU available", "TPU available", "💡 Tip", "LOCAL_RANK", "deprecated", "Trainer.fit"):
        assert noise not in printed, printed
    assert (tmp_path / "model" / "config.json").is_file()
    assert not list(tmp_path.glob("*wandb*"))
    assert {path.name for path in Path(tempfile.gettempdir()).glob("*wandb*")} <= tmp_before
