"""Mosaics in (issue 9 item 2): a large TIFF read lazily, a tile grid assembled lazily (gaps,
overlaps, mixed pixel sizes refused with the store unchanged), synthetic mosaics written
block by block into a store."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import contextlib
import warnings

import dask.array as da
import numpy as np
import pytest
import tifffile
from scipy import ndimage as ndi

from cathodeflow.cli import main
from cathodeflow.errors import CathodeflowWarning, InputError
from cathodeflow.io import mosaic
from cathodeflow.io.sem import read_sem, write_tiff
from cathodeflow.io.store import open_store
from cathodeflow.study.pipeline import ingest
from cathodeflow.synth.mosaic import FRAME_PX, frame_tile, mosaic_array, mosaic_block

PS = 0.0385


def _tiled_tiff(path: Path, array: np.ndarray, *, pixel_size_um: float = PS) -> Path:
    """A TIFF in 256 × 256 tiles whose pixel size read_sem reads (cathodeflow description)."""
    desc = json.dumps({"cathodeflow": {"pixel_size_um": pixel_size_um, "databar_rows": 0}})
    tifffile.imwrite(path, array, tile=(256, 256), description=desc, metadata=None, photometric="minisblack")
    return path


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def _store_hash(path: Path) -> str:
    """SHA-256 over every file of a store (relative name and bytes), the lock file aside."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file() and p.name != "cathodeflow.lock"):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


@pytest.fixture
def image():
    return np.random.default_rng(7).integers(1, 255, (1300, 2100), dtype=np.uint8)


# --------------------------------------------------------------------------- one large TIFF


def test_tiled_tiff_over_the_threshold_is_ingested_lazily_and_stored_raw_equals_it(tmp_path, image, monkeypatch):
    f = _tiled_tiff(tmp_path / "slide.tif", image)
    monkeypatch.setattr(mosaic, "LAZY_MIN_PIXELS", 1000)

    def whole(*a, **k):  # the eager path reads the whole series with asarray
        raise AssertionError("the TIFF was read whole")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", whole)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", whole)
    (iid,) = ingest([f], store=tmp_path / "s.zarr", condition="20C")
    st = open_store(tmp_path / "s.zarr", mode="r")
    raw = st.read_stage(iid, "raw")
    assert raw.chunksize == (1024, 1024)  # written in chunks, not one block
    assert np.array_equal(raw.compute(), image)
    assert st.pixel_size_um(iid) == PS
    assert st.stage_info(iid, "raw")["params"]["reader_metadata"]["read"] == "lazy"
    assert st.stage_info(iid, "raw")["params"]["frame_fraction"] == 0.0  # values 1..254: no constant padding


def test_a_chunk_of_the_lazy_tiff_reads_only_the_tiff_tiles_under_it(tmp_path, image, monkeypatch):
    from tifffile.zarr import ZarrTiffStore

    f = _tiled_tiff(tmp_path / "slide.tif", image)
    keys = []
    orig = ZarrTiffStore.get

    async def spy(self, key, *a, **k):
        out = await orig(self, key, *a, **k)
        if out is not None and key != "zarr.json" and not key.rsplit("/", 1)[-1].startswith("."):  # chunks only
            keys.append(key)
        return out

    monkeypatch.setattr(ZarrTiffStore, "get", spy)
    im = mosaic.open_tiff_lazily(f, chunk_px=512)
    assert keys == []  # opening reads no pixels
    assert im.data.numblocks == (3, 5)
    block = im.data.blocks[1, 2].compute()
    assert np.array_equal(block, image[512:1024, 1024:1536])
    assert len(set(keys)) == 4  # the 2 × 2 TIFF tiles of 256 px under one 512-px chunk, of 9 × 9


def test_lazy_tiff_crops_the_data_bar_its_metadata_states(tmp_path, image):
    f = tmp_path / "bar.tif"
    desc = json.dumps({"cathodeflow": {"pixel_size_um": PS, "databar_rows": 100}})
    tifffile.imwrite(f, image, tile=(256, 256), description=desc, metadata=None)
    im = mosaic.open_tiff_lazily(f)
    assert im.data.shape == (1200, 2100) and im.databar_rows == 100
    assert np.array_equal(im.data.compute(), image[:1200])


@pytest.mark.parametrize("kind", ["float", "int16"])
def test_lazy_tiff_of_float_or_signed_values_is_converted_as_the_eager_read_converts_it(tmp_path, image, kind):
    a = image.astype(np.float32) / 255 - 0.1 if kind == "float" else image.astype(np.int16) - 128
    f = _tiled_tiff(tmp_path / "slide.tif", a)
    with pytest.warns(UserWarning) if kind == "float" else _no_warning():
        lazy = mosaic.open_tiff_lazily(f, chunk_px=512)
    with pytest.warns(UserWarning) if kind == "float" else _no_warning():
        eager = read_sem(f)
    assert lazy.data.dtype == np.uint16 and isinstance(lazy.data, da.Array)
    assert np.array_equal(lazy.data.compute(), eager.data)  # one range over the file, not per chunk
    assert lazy.metadata["notes"] == eager.metadata["notes"]


def test_lazy_tiff_with_nan_pixels_is_refused_in_one_line(tmp_path, image):
    a = image.astype(np.float32)
    a[1200, 2000] = np.nan  # in the last chunk
    f = _tiled_tiff(tmp_path / "slide.tif", a)
    with pytest.raises(InputError, match=r"slide\.tif: NaN or infinite values in 1 pixels") as err:
        mosaic.open_tiff_lazily(f, chunk_px=512)
    assert "\n" not in str(err.value)


def test_lazy_tiff_without_pixel_size_is_refused_in_one_line(tmp_path, image):
    f = tmp_path / "nops.tif"
    tifffile.imwrite(f, image, tile=(256, 256))
    with pytest.raises(InputError, match=r"nops.tif: no pixel size .*--pixel-size-um") as e:
        mosaic.open_tiff_lazily(f)
    assert "\n" not in str(e.value)
    assert mosaic.open_tiff_lazily(f, pixel_size_um=0.05).pixel_size_um == 0.05


@pytest.mark.parametrize("value, expected", [("x", "must be a number, got 'x'"), (-1, "must be finite and > 0")])
def test_lazy_tiff_refuses_a_bad_pixel_size_argument_in_one_line_like_read_sem(tmp_path, image, value, expected):
    f = tmp_path / "ps.tif"
    write_tiff(f, image[:64, :64], pixel_size_um=PS)
    with pytest.raises(InputError, match=f"ps.tif: pixel_size_um {expected}") as e:
        mosaic.open_tiff_lazily(f, pixel_size_um=value)
    with pytest.raises(InputError) as eager:
        read_sem(f, pixel_size_um=value)
    assert str(e.value) == str(eager.value)


# --------------------------------------------------------------------------- tile grid

#: Row edges and column edges of the 2 × 3 grid: tiles of unequal sizes.
YS, XS = (0, 500, 1300), (0, 700, 1200, 2100)


def _grid(tmp_path: Path, image: np.ndarray, *, origin=(1000, -40)) -> Path:
    """2 × 3 tile TIFFs of ``image`` and their CSV (positions offset by ``origin``)."""
    lines = ["file,y_px,x_px"]
    for i in range(2):
        for j in range(3):
            name = f"t{i}{j}.tif"
            write_tiff(tmp_path / name, image[YS[i]:YS[i + 1], XS[j]:XS[j + 1]], pixel_size_um=PS)
            lines.append(f"{name},{YS[i] + origin[0]},{XS[j] + origin[1]}")
    (tmp_path / "grid.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "grid.csv"


def test_2x3_grid_of_tile_tiffs_is_stored_as_the_original_image(tmp_path, image, capsys):
    grid = _grid(tmp_path, image)
    rc = main(["ingest", "--store", str(tmp_path / "s.zarr"), "--condition", "20C", "--mosaic-grid", str(grid)])
    assert rc == 0, capsys.readouterr().err
    st = open_store(tmp_path / "s.zarr", mode="r")
    assert st.image_ids() == ["grid"]
    assert np.array_equal(st.read_stage("grid", "raw").compute(), image)
    assert st.pixel_size_um("grid") == PS
    tiles = st.stage_info("grid", "raw")["params"]["reader_metadata"]["tiles"]
    assert [(t["y_px"], t["x_px"]) for t in tiles] == [(y, x) for y in YS[:2] for x in XS[:3]]


@pytest.mark.parametrize("row, line, message", [
    (5, "t10.tif,1510,-40", r"gap of 10 px between tile t00.tif \(row 2\) .*and tile t10.tif \(row 5\)"),
    (5, "t10.tif,1490,-40", r"tile t00.tif \(row 2\) and tile t10.tif \(row 5\) overlap by 10×700 px"),
    (7, "t12.tif,1500,1150", r"tile t11.tif \(row 6\) and tile t12.tif \(row 7\) overlap by 800×10 px"),
    (7, None, r"tile t12.tif \(row 7\) has a pixel size of 0.0386 µm but tile t00.tif \(row 2\) 0.0385 µm"),
])
def test_grid_with_a_gap_an_overlap_or_another_pixel_size_is_refused_and_the_store_unchanged(
        tmp_path, image, capsys, row, line, message):
    grid = _grid(tmp_path, image)
    lines = grid.read_text().splitlines()
    if line is None:
        write_tiff(tmp_path / "t12.tif", image[500:, 1200:], pixel_size_um=0.0386)  # 0.26 % larger
    else:
        lines[row - 1] = line
    grid.write_text("\n".join(lines) + "\n")
    store = _ingest_refused(tmp_path, image, grid, message, capsys)
    assert open_store(store, mode="r").image_ids() == ["first"]


def _ingest_refused(tmp_path: Path, image, grid: Path, message: str, capsys) -> Path:
    """``ingest --mosaic-grid grid`` into a store holding one image: exit 2, one error line
    matching ``message``, the store byte-identical. Returns the store."""
    store = tmp_path / "s.zarr"
    write_tiff(tmp_path / "first.tif", image[:100, :100], pixel_size_um=PS)
    ingest([tmp_path / "first.tif"], store=store, condition="20C")
    before = _store_hash(store)
    rc = main(["ingest", "--store", str(store), "--condition", "20C", "--mosaic-grid", str(grid)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("cathodeflow: error: ")
    assert re.search(message, err), err
    assert _store_hash(store) == before
    return store


def test_grid_missing_a_tile_at_the_edge_names_the_tile_beside_the_hole(tmp_path, image):
    grid = _grid(tmp_path, image, origin=(0, 0))
    lines = [ln for ln in grid.read_text().splitlines() if not ln.startswith("t12.tif")]
    grid.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"nothing below tile t02.tif \(row 4\) from y = 500 to 1300"):
        mosaic.read_tile_grid(grid)


def test_grid_of_mixed_dtypes_is_refused(tmp_path, image):
    grid = _grid(tmp_path, image)
    write_tiff(tmp_path / "t01.tif", image[:500, 700:1200].astype(np.uint16), pixel_size_um=PS)
    with pytest.raises(InputError, match=r"tile t01.tif \(row 3\) is uint16 but tile t00.tif \(row 2\) is uint8"):
        mosaic.read_tile_grid(grid)


def _typed_grid(tmp_path: Path, image: np.ndarray, convert) -> Path:
    """:func:`_grid`'s 2 × 3 tiles and CSV, each tile rewritten as ``convert(tile)``."""
    grid = _grid(tmp_path, image)
    meta = json.dumps({"cathodeflow": {"pixel_size_um": PS, "databar_rows": 0}})
    for i in range(2):
        for j in range(3):
            tile = image[YS[i]:YS[i + 1], XS[j]:XS[j + 1]]
            tifffile.imwrite(tmp_path / f"t{i}{j}.tif", convert(tile), description=meta)
    return grid


def test_grid_of_float_tiles_gets_one_grey_scale_from_the_whole_mosaics_range(tmp_path, image):
    """Float tiles of fractional values (a Fiji export), each tile's range unlike the others':
    one linear map from the mosaic's min-max, by hand, whatever tile a pixel is in."""
    def convert(tile):
        return tile.astype(np.float32) / 255 * 3.5 - 1.25

    grid = _typed_grid(tmp_path, image, convert)
    with pytest.warns(CathodeflowWarning, match=r"grid\.csv: float32 pixels mapped linearly from \[-1\.2"):
        im = mosaic.read_tile_grid(grid, chunk_px=512)
    full = convert(image).astype(np.float64)
    lo, hi = full.min(), full.max()
    expected = np.rint((full - lo) * (65535.0 / (hi - lo))).astype(np.uint16)
    got = im.data.compute()
    assert got.dtype == np.uint16 and np.array_equal(got, expected)
    assert im.metadata["file_dtype"] == "float32" and "mapped linearly" in im.metadata["notes"][0]


def test_grid_of_signed_16_bit_tiles_is_shifted_by_the_mosaics_minimum_exactly(tmp_path, image):
    grid = _typed_grid(tmp_path, image, lambda tile: tile.astype(np.int16) - 300)
    im = mosaic.read_tile_grid(grid)
    lo = int(image.min()) - 300
    assert np.array_equal(im.data.compute(), (image.astype(np.int64) - 300 - lo).astype(np.uint16))
    assert "shifted by" in im.metadata["notes"][0]


def test_grid_of_float_tiles_with_a_nan_is_refused_and_the_store_unchanged(tmp_path, image, capsys):
    def convert(tile):
        out = tile.astype(np.float32)
        if tile.shape == (500, 500):  # t01
            out[7, 9] = np.nan
        return out

    _ingest_refused(tmp_path, image, _typed_grid(tmp_path, image, convert),
                    r"grid\.csv: NaN or infinite values in 1 pixels", capsys)


# --------------------------------------------------------------------------- synthetic mosaics


def test_mosaic_block_places_tile_i_plus_2j_mod_n_at_grid_cell_i_j():
    tiles = [np.full((5, 7), 10 * k, np.uint8) + np.arange(35, dtype=np.uint8).reshape(5, 7) for k in range(3)]
    full = np.block([[tiles[(i + 2 * j) % 3] for j in range(5)] for i in range(4)])  # 20 × 35
    assert np.array_equal(mosaic_block(tiles, slice(0, 20), slice(0, 35)), full)
    assert np.array_equal(mosaic_block(tiles, slice(3, 17), slice(6, 30)), full[3:17, 6:30])
    lazy = mosaic_array(tiles, (19, 33), chunk_px=4)
    assert lazy.numblocks == (5, 9)
    assert np.array_equal(lazy.compute(), full[:19, :33])


def _disc_tile(n: int = 40) -> np.ndarray:
    """A phase tile: one disc cut by the tile's left edge and one inside (radius 8)."""
    yy, xx = np.mgrid[:n, :n]
    t = np.zeros((n, n), np.uint8)
    t[(yy - 20) ** 2 + xx**2 <= 64] = 1
    t[(yy - 20) ** 2 + (xx - 24) ** 2 <= 64] = 1
    return t


def test_sparse_frames_keep_every_component_inside_one_tile_and_percolating_join_the_cut_ones():
    tile = _disc_tile()
    sparse = mosaic_block([frame_tile(tile, 0)], slice(0, 200), slice(0, 200))
    lab, n = ndi.label(sparse > 0)
    for sl in ndi.find_objects(lab):  # no component crosses a seam (multiples of 40)
        assert sl[0].start // 40 == (sl[0].stop - 1) // 40 and sl[1].start // 40 == (sl[1].stop - 1) // 40
    assert n == 2 * 25  # both discs of each of the 5 × 5 tiles, apart
    perc = mosaic_block([frame_tile(tile, 1)], slice(0, 200), slice(0, 200))
    lab, n = ndi.label(perc > 0)
    big = np.bincount(lab.ravel())[1:].argmax() + 1
    assert lab[0, 0] == big and lab[-1, -1] == big  # one component spans the mosaic
    assert n == 1 + 25  # the frame grid with the cut discs, and each tile's inside disc


def test_synth_mosaic_writes_a_percolating_phase_map_chunk_by_chunk(tmp_path, capsys):
    store = tmp_path / "s.zarr"
    rc = main(["synth-mosaic", "--store", str(store), "--megapixels", "0.5", "--mode", "percolating",
               "--tiles", "1", "--tile-px", "130", "--chunk-size", "256", "--image-id", "big"])
    assert rc == 0, capsys.readouterr().err
    st = open_store(store, mode="r")
    phase = st.read_stage("big", "phase")
    side = round(np.sqrt(0.5e6))
    assert phase.shape == (side, side) and phase.chunksize == (256, 256)
    assert st.pixel_size_um("big", "phase") == pytest.approx(0.0143)
    p = phase.compute()
    assert set(np.unique(p).tolist()) == {0, 1, 2}
    t = 130 * 35 // 13  # 350 px phase tiles: their frames are solid
    for k in range(0, side, t):
        assert (p[k:k + FRAME_PX] >= 1).all() and (p[:, k:k + FRAME_PX] >= 1).all()
    lab, _ = ndi.label(p > 0)  # the frames of the corner tiles (the last at 700 px) are one component
    assert lab[0, 0] == lab[700, 700] == lab[0, 700] == lab[700, 0] != 0
    rc = main(["synth-mosaic", "--store", str(store), "--megapixels", "0.5", "--image-id", "big"])
    assert rc == 2 and "already in the store" in capsys.readouterr().err


# a phase map added as such is the input of `run`: its labels and tables are computed, its
# sr and phase stages are neither computed nor checked against run's phase parameters
def test_run_describes_a_synthetic_phase_mosaic_as_describe_does(tmp_path, capsys):
    import pandas as pd

    from cathodeflow.study.describe import describe

    store = tmp_path / "s.zarr"
    assert main(["synth-mosaic", "--store", str(store), "--megapixels", "0.5", "--tiles", "1",
                 "--tile-px", "130", "--chunk-size", "256"]) == 0
    before = open_store(store, mode="r").stage_info("mosaic", "phase")
    assert main(["run", "--store", str(store), "--scheduler", "threads"]) == 0, capsys.readouterr().err
    st = open_store(store, mode="r")
    assert st.stage_info("mosaic", "phase") == before  # not recomputed
    assert st.stage_info("mosaic", "sr") is None and st.is_complete("mosaic", "labels/particles")
    phase = st.read_stage("mosaic", "phase").compute()
    ref = describe([phase], pixel_size_um=0.0143, condition="20C", image_ids=["mosaic"], scheduler="sync")
    for name in ("particles", "cracks"):
        got = pd.read_parquet(store / "tables" / f"{name}.parquet")
        assert len(got) == len(ref[name]) > 0
        pd.testing.assert_frame_equal(got[ref[name].columns].reset_index(drop=True), ref[name], check_dtype=False)
    # --from labels and other phase parameters: the given phase map stays as it is
    assert main(["run", "--store", str(store), "--from", "labels", "--phase-method", "unet",
                 "--scheduler", "threads"]) == 0, capsys.readouterr().err
    assert open_store(store, mode="r").stage_info("mosaic", "phase") == before
    # weights that no image uses are still checked (an option has an effect or is refused)
    capsys.readouterr()
    assert main(["run", "--store", str(store), "--phase-method", "unet", "--weights",
                 str(tmp_path / "nope.weights.h5"), "--scheduler", "threads"]) == 2
    assert "weights file not found" in capsys.readouterr().err
