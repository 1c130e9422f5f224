"""Reading SEM files: pixel size from vendor metadata, data-bar crop, formats, errors."""

from __future__ import annotations

import hashlib
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import given, settings
from hypothesis import strategies as st

from cathodeflow.errors import InputError
from cathodeflow.io.sem import (
    SemImage,
    SemMeta,
    decide_databar_rows,
    decide_pixel_size,
    detect_databar,
    read_sem,
    read_tiff_metadata,
    write_tiff,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "tio2-sem-bam"
ZEISS = DATA / "images" / "1908248.tif"
needs_zeiss = pytest.mark.skipif(
    not ZEISS.exists(), reason=f"real Zeiss example not present at {ZEISS} (shared/data beside the repo)"
)


def _texture(shape, seed=0, lo=20, hi=200, dtype=np.uint8):
    """A noisy SEM-like texture with no exactly-constant rows."""
    rng = np.random.default_rng(seed)
    return rng.integers(lo, hi, size=shape).astype(dtype)


def _with_bar(img, bar_rows, tail_rows=0, fill=0, text=255):
    """Burn a data bar (uniform fill, blocks of text) into the bottom of ``img``."""
    out = img.copy()
    h, w = out.shape
    top = h - bar_rows - tail_rows
    out[top : h - tail_rows] = fill
    for x0 in range(10, w - 40, 60):  # "words": 20 px wide, middle third of the bar
        out[top + bar_rows // 3 : top + 2 * bar_rows // 3, x0 : x0 + 20] = text
    return out


def _one_line_naming(err: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


# ------------------------------------------------------------------ real Zeiss files


@needs_zeiss
@pytest.mark.parametrize("name", ["1908248", "1908260", "1908300"])
def test_zeiss_pixel_size_from_cz_sem_tag_and_bar_removed(name):
    path = DATA / "images" / f"{name}.tif"
    im = read_sem(path)
    assert isinstance(im, SemImage)
    assert im.pixel_size_um == pytest.approx(0.007344, rel=1e-9)  # 7.344 nm
    assert im.metadata["vendor"] == "zeiss"
    assert im.metadata["pixel_size_source"] == "zeiss:CZ_SEM:ap_image_pixel_size"
    assert im.data.dtype == np.uint8
    # the black box of the Zeiss data zone spans rows 712-765, two image rows below it
    assert im.data.shape == (712, 1024)
    assert im.databar_rows == 56
    stored = tifffile.imread(path)  # palette indices; the image part uses grey entries only
    np.testing.assert_array_equal(im.data, stored[:712])
    assert im.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert im.source == path.resolve()


@needs_zeiss
def test_zeiss_crop_keeps_rows_the_manual_mask_annotates():
    """The annotators outlined particles down to row 711 and none in the black box: the
    rows 704-711 are specimen, so cropping at 712 (not 704) keeps them."""
    mask = tifffile.imread(DATA / "masks_instances" / "1908248_m.tif")
    assert mask[704:712].any()
    assert not mask[712:766].any()
    im = read_sem(ZEISS)
    assert im.data.shape[0] == 712


@needs_zeiss
def test_zeiss_crop_disabled_or_explicit_rows():
    assert read_sem(ZEISS, crop_databar=False).data.shape == (768, 1024)
    im = read_sem(ZEISS, databar_rows=64)
    assert im.data.shape == (704, 1024) and im.metadata["databar_source"] == "user"


@needs_zeiss
def test_zeiss_user_pixel_size_overrides_and_warns_when_it_differs():
    with pytest.warns(UserWarning, match="0.007344"):
        im = read_sem(ZEISS, pixel_size_um=0.0385)
    assert im.pixel_size_um == 0.0385 and im.metadata["pixel_size_source"] == "user"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        im = read_sem(ZEISS, pixel_size_um=0.00735)  # within 1 %
    assert im.pixel_size_um == 0.00735


# ------------------------------------------------------------------ write_tiff round trip


@pytest.mark.parametrize("dtype,hi", [(np.uint8, 255), (np.uint16, 65535)])
def test_write_tiff_round_trip_keeps_pixels_and_pixel_size(tmp_path, dtype, hi):
    img = _texture((97, 130), seed=1, lo=0, hi=hi, dtype=dtype)
    path = write_tiff(tmp_path / "a.tif", img, pixel_size_um=0.0385)
    im = read_sem(path)
    assert im.data.dtype == dtype
    np.testing.assert_array_equal(im.data, img)
    assert im.pixel_size_um == 0.0385
    assert im.databar_rows == 0


def test_write_tiff_uses_standard_resolution_tags_in_centimetres(tmp_path):
    path = write_tiff(tmp_path / "a.tif", _texture((20, 30)), pixel_size_um=0.0143)
    with tifffile.TiffFile(path) as tf:
        tags = tf.pages[0].tags
        num, den = tags["XResolution"].value
        assert int(tags["ResolutionUnit"].value) == 3  # centimetre
    assert 1e4 / (num / den) == pytest.approx(0.0143, rel=1e-7)


def test_resolution_tags_alone_give_the_pixel_size(tmp_path):
    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, _texture((40, 50)), resolution=(1e4 / 0.05, 1e4 / 0.05), resolutionunit="CENTIMETER")
    assert read_sem(path).pixel_size_um == pytest.approx(0.05, rel=1e-7)


def test_print_resolution_of_72_dpi_is_not_a_pixel_size(tmp_path):
    path = tmp_path / "dpi72.tif"
    tifffile.imwrite(path, _texture((40, 50)), resolution=(72, 72), resolutionunit="INCH")
    with pytest.raises(InputError):
        read_sem(path)


def test_imagej_calibration_gives_the_pixel_size(tmp_path):
    path = tmp_path / "ij.tif"
    tifffile.imwrite(path, _texture((40, 50)), imagej=True, resolution=(1 / 0.02, 1 / 0.02), metadata={"unit": "um"})
    im = read_sem(path)
    assert im.pixel_size_um == pytest.approx(0.02, rel=1e-7)
    assert im.metadata["vendor"] == "imagej"


@settings(max_examples=20, deadline=None)
@given(
    h=st.integers(16, 80),
    w=st.integers(16, 80),
    ps=st.floats(1e-4, 5.0, allow_nan=False),
    sixteen=st.booleans(),
)
def test_write_read_round_trip_property(h, w, ps, sixteen):
    dtype = np.uint16 if sixteen else np.uint8
    img = _texture((h, w), seed=h * w, lo=0, hi=np.iinfo(dtype).max, dtype=dtype)
    with tempfile.TemporaryDirectory() as d:
        im = read_sem(write_tiff(Path(d) / "x.tif", img, pixel_size_um=ps))
    np.testing.assert_array_equal(im.data, img)
    assert im.pixel_size_um == ps


# ------------------------------------------------------------------ other vendors (synthetic files)


def test_fei_metadata_pixel_width_and_image_height(tmp_path):
    body = _texture((884, 256), seed=2)
    img = np.vstack([body, _with_bar(_texture((59, 256), seed=3), 59)])
    ini = (
        "[User]\r\nDate=03/12/2019\r\n\r\n[Scan]\r\nPixelWidth=2.0345e-009\r\nPixelHeight=2.0345e-009\r\n\r\n"
        "[Image]\r\nResolutionX=256\r\nResolutionY=884\r\n"
    )
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, img, extratags=[(34682, "s", 0, ini, True)])
    im = read_sem(path)
    assert im.metadata["vendor"] == "fei"
    assert im.pixel_size_um == pytest.approx(2.0345e-3, rel=1e-9)
    assert im.databar_rows == 59 and im.metadata["databar_source"] == "fei:[Image]ResolutionY"
    np.testing.assert_array_equal(im.data, body)


def _jeol_sidecar(path: Path, full=(256, 200), bar_px=180, marker="5um"):
    path.with_suffix(".txt").write_text(
        "$CM_FORMAT JEOL/SEM Compatible Image Data Format Version 1.0\n"
        "$CM_INSTRUMENT JSM-7800F\n$CM_MAG 5000\n"
        f"$CM_FULL_SIZE {full[0]} {full[1]}\n$$SM_MICRON_BAR {bar_px}\n$$SM_MICRON_MARKER {marker}\n",
        encoding="latin-1",
    )


def test_jeol_sidecar_scale_bar_gives_pixel_size_and_bar_height(tmp_path):
    body = _texture((200, 256), seed=4)
    img = np.vstack([body, _with_bar(_texture((24, 256), seed=5), 24)])
    path = tmp_path / "jeol.tif"
    tifffile.imwrite(path, img)  # resolution tags say nothing (no unit)
    _jeol_sidecar(path, full=(256, 200), bar_px=180, marker="5um")
    im = read_sem(path)
    assert im.metadata["vendor"] == "jeol"
    assert im.pixel_size_um == pytest.approx(5 / 180, rel=1e-12)
    assert im.databar_rows == 24 and im.metadata["databar_source"] == "jeol:$CM_FULL_SIZE"
    np.testing.assert_array_equal(im.data, body)


def test_jeol_sidecar_of_a_resized_export_is_not_trusted(tmp_path):
    path = tmp_path / "small.tif"
    tifffile.imwrite(path, _texture((100, 128), seed=6))
    _jeol_sidecar(path, full=(1280, 960), bar_px=180, marker="500nm")
    with pytest.raises(InputError, match="JEOL") as err:
        read_sem(path)
    assert "--pixel-size-um" in _one_line_naming(err, path)
    assert read_sem(path, pixel_size_um=0.1).pixel_size_um == 0.1


# ------------------------------------------------------------------ PNG, colour, 16 bit


def test_rgb_png_with_equal_channels_is_read_as_that_channel(tmp_path):
    from PIL import Image

    gray = _texture((40, 60), seed=7)
    path = tmp_path / "g.png"
    Image.fromarray(np.dstack([gray] * 3)).save(path)
    im = read_sem(path, pixel_size_um=0.03)
    np.testing.assert_array_equal(im.data, gray)
    assert im.metadata["color"] == "rgb-equal-channels" and im.metadata["format"] == "png"


def test_rgb_png_in_colour_becomes_bt709_luma(tmp_path):
    from PIL import Image

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8, :, 0] = 255  # red: round(0.2125*255) = 54
    rgb[8:, :, 1] = 200  # green: round(0.7154*200) = 143
    path = tmp_path / "c.png"
    Image.fromarray(rgb).save(path)
    with pytest.warns(UserWarning, match="luma"):
        im = read_sem(path, pixel_size_um=0.03)
    assert im.data.dtype == np.uint8
    assert (im.data[:8] == 54).all() and (im.data[8:] == 143).all()


def test_png_phys_chunk_gives_pixel_size(tmp_path):
    from PIL import Image

    path = tmp_path / "p.png"
    Image.fromarray(_texture((30, 30))).save(path, dpi=(25400 / 0.05, 25400 / 0.05))
    assert read_sem(path).pixel_size_um == pytest.approx(0.05, rel=1e-6)


def test_16_bit_png_keeps_16_bits(tmp_path):
    from PIL import Image

    img = _texture((30, 40), seed=8, lo=0, hi=65535, dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(img).save(path)
    im = read_sem(path, pixel_size_um=0.02)
    assert im.data.dtype == np.uint16
    np.testing.assert_array_equal(im.data, img)


def test_16_bit_tiff_keeps_values_above_255(tmp_path):
    img = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 13
    path = write_tiff(tmp_path / "w.tif", img, pixel_size_um=0.01)
    im = read_sem(path)
    assert im.data.dtype == np.uint16 and im.data.max() == img.max() > 255
    np.testing.assert_array_equal(im.data, img)


# ------------------------------------------------------------------ errors


def test_missing_file_is_a_one_line_input_error(tmp_path):
    path = tmp_path / "nope.tif"
    with pytest.raises(InputError, match="not found") as err:
        read_sem(path)
    _one_line_naming(err, path)


def test_truncated_tiff_is_a_one_line_input_error(tmp_path):
    good = write_tiff(tmp_path / "good.tif", _texture((200, 200)), pixel_size_um=0.03)
    data = good.read_bytes()
    bad = tmp_path / "truncated.tif"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="unreadable TIFF") as err:
        read_sem(bad)
    _one_line_naming(err, bad)


def test_not_an_image_is_a_one_line_input_error(tmp_path):
    path = tmp_path / "notes.tif"
    path.write_text("hello\nworld\n")
    with pytest.raises(InputError) as err:
        read_sem(path)
    _one_line_naming(err, path)


def test_no_pixel_size_anywhere_names_the_file_and_the_option(tmp_path):
    path = tmp_path / "bare.tif"
    tifffile.imwrite(path, _texture((30, 30)))
    with pytest.raises(InputError) as err:
        read_sem(path)
    assert _one_line_naming(err, path) == f"{path}: no pixel size in the file's metadata; pass --pixel-size-um"


def test_float_pixels_with_fractions_are_mapped_linearly_onto_16_bits_with_a_warning_and_a_note(tmp_path):
    path = tmp_path / "f.tif"
    x = np.linspace(-0.25, 1.75, 20 * 30, dtype=np.float32).reshape(20, 30)  # an export in arbitrary units
    tifffile.imwrite(path, x)
    with pytest.warns(UserWarning, match=r"f\.tif: float32 pixels mapped linearly from \[-0\.25, 1\.75\] to 0-65535"):
        im = read_sem(path, pixel_size_um=0.01)
    assert im.data.dtype == np.uint16
    expected = np.rint((x.astype(np.float64) + 0.25) / 2.0 * 65535).astype(np.uint16)  # by hand: (x - min) / span
    assert np.array_equal(im.data, expected)
    assert im.data.min() == 0 and im.data.max() == 65535
    assert im.metadata["file_dtype"] == "float32"
    assert any("mapped linearly" in n for n in im.metadata["notes"])


@pytest.mark.parametrize(
    "values, dtype, shift",
    [
        (np.arange(0, 4096, 7), np.float32, 0),  # a 12-bit image that Fiji made 32-bit float
        (np.arange(-300, 3000, 11), np.int16, 300),  # signed 16-bit with negatives: shifted by -min
        (np.arange(10, 60000, 97), np.int32, 0),  # 32-bit integers that fit 16 bits
        (np.arange(70000, 135000, 113), np.int64, -70000),  # a range of < 65536 levels, offset
    ],
)
def test_integer_grey_values_that_fit_16_bits_are_kept_exactly_without_a_warning(tmp_path, values, dtype, shift):
    path = tmp_path / "i.tif"
    a = np.resize(values, (24, 40)).astype(dtype)
    tifffile.imwrite(path, a)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning: nothing is lost
        im = read_sem(path, pixel_size_um=0.01)
    assert im.data.dtype == np.uint16
    assert np.array_equal(im.data.astype(np.int64), a.astype(np.int64) + shift)
    assert im.metadata["file_dtype"] == np.dtype(dtype).name
    assert len(im.metadata["notes"]) == 1 and "uint16" in im.metadata["notes"][0]


def test_integers_of_a_range_wider_than_16_bits_are_mapped_linearly_keeping_their_order(tmp_path):
    path = tmp_path / "w.tif"
    a = np.resize(np.arange(0, 10**6, 997, dtype=np.int32), (30, 30))
    tifffile.imwrite(path, a)
    with pytest.warns(UserWarning, match="int32 pixels mapped linearly"):
        im = read_sem(path, pixel_size_um=0.01)
    order = np.argsort(a.ravel(), kind="stable")
    assert np.all(np.diff(im.data.ravel()[order].astype(np.int64)) >= 0)
    assert im.data.min() == 0 and im.data.max() == 65535


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_infinite_pixels_are_refused_in_one_line_with_their_count(tmp_path, bad):
    path = tmp_path / "f.tif"
    a = np.ones((20, 20), np.float32)
    a[3, 4:7] = bad
    tifffile.imwrite(path, a)
    with pytest.raises(InputError, match="NaN or infinite values in 3 pixels") as err:
        read_sem(path, pixel_size_um=0.01)
    _one_line_naming(err, path)


def test_complex_pixels_are_refused_in_one_line(tmp_path):
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, np.zeros((20, 20), np.complex64))
    with pytest.raises(InputError, match="complex64 is not supported") as err:
        read_sem(path, pixel_size_um=0.01)
    _one_line_naming(err, path)


def test_stack_of_pages_is_refused(tmp_path):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.zeros((3, 20, 20, 5), np.uint8))
    with pytest.raises(InputError) as err:
        read_sem(path, pixel_size_um=0.01)
    _one_line_naming(err, path)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), "x"])
def test_bad_user_pixel_size_is_refused(tmp_path, bad):
    path = write_tiff(tmp_path / "a.tif", _texture((20, 20)), pixel_size_um=0.01)
    with pytest.raises(InputError, match="pixel_size_um"):
        read_sem(path, pixel_size_um=bad)


def test_write_tiff_refuses_float_and_bad_pixel_size(tmp_path):
    with pytest.raises(InputError, match="uint8 or uint16"):
        write_tiff(tmp_path / "f.tif", np.zeros((4, 4), np.float32), pixel_size_um=0.01)
    with pytest.raises(InputError, match="pixel_size_um"):
        write_tiff(tmp_path / "z.tif", np.zeros((4, 4), np.uint8), pixel_size_um=0)
    assert not (tmp_path / "f.tif").exists() and not (tmp_path / "z.tif").exists()


# ------------------------------------------------------------------ data-bar detection (kernel)


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(200, 500),
    w=st.integers(100, 400),
    bar_frac=st.floats(0.04, 0.2),
    tail=st.integers(0, 2),
    white_bar=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_detect_databar_finds_the_burnt_in_bar(h, w, bar_frac, tail, white_bar, seed):
    bar = int(bar_frac * h)
    fill, text = (255, 0) if white_bar else (0, 255)
    img = _with_bar(_texture((h, w), seed=seed), bar, tail_rows=tail, fill=fill, text=text)
    assert detect_databar(img) == bar + tail


@settings(max_examples=30, deadline=None)
@given(h=st.integers(50, 400), w=st.integers(50, 400), seed=st.integers(0, 2**16))
def test_detect_databar_finds_nothing_in_a_texture(h, w, seed):
    assert detect_databar(_texture((h, w), seed=seed)) == 0


def test_detect_databar_ignores_dark_specimen_regions():
    img = _texture((300, 300), seed=9)
    img[240:, :200] = 0  # a black pore at the bottom, not spanning the width
    assert detect_databar(img) == 0
    img = _texture((300, 300), seed=10)
    img[270:] = 0  # uniform black rows without any text
    assert detect_databar(img) == 0


# ------------------------------------------------------------------ metadata without pixels


def test_read_tiff_metadata_gives_fei_pixel_size_and_bar_without_decoding_pixels(tmp_path, monkeypatch):
    img = _texture((120, 160), seed=11)
    fei = "[Scan]\r\nPixelWidth=7.5e-09\r\n[Image]\r\nResolutionX=160\r\nResolutionY=100\r\n"
    path = tmp_path / "fei.tif"
    tifffile.imwrite(path, img, extratags=[(34682, "s", 0, fei, True)])

    def no_pixels(*args, **kwargs):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", no_pixels)
    monkeypatch.setattr(tifffile.TiffPage, "asarray", no_pixels)
    meta = read_tiff_metadata(path)
    assert (meta.shape, meta.axes, meta.dtype) == ((120, 160), "YX", np.dtype(np.uint8))
    assert meta.vendor == "fei"
    assert meta.candidates[0] == ("fei:[Scan]PixelWidth", pytest.approx(0.0075, rel=1e-12))
    assert meta.databar_hint == (20, "fei:[Image]ResolutionY")  # 120 file rows - 100 image rows


def test_read_tiff_metadata_puts_a_jeol_sidecar_after_vendor_tags_and_keeps_its_problem(tmp_path):
    path = tmp_path / "j.tif"
    write_tiff(path, _texture((100, 128), seed=12), pixel_size_um=0.25)
    _jeol_sidecar(path, full=(128, 90), bar_px=50, marker="2um")
    meta = read_tiff_metadata(path)
    assert [src for src, _ in meta.candidates][:2] == ["jeol:$$SM_MICRON_MARKER/$$SM_MICRON_BAR",
                                                       "cathodeflow:ImageDescription"]
    assert meta.candidates[0][1] == pytest.approx(2 / 50, rel=1e-12)
    assert meta.databar_hint == (10, "jeol:$CM_FULL_SIZE")  # 100 rows, 90 of image
    _jeol_sidecar(path, full=(1280, 900), bar_px=50, marker="2um")
    assert "resized export" in read_tiff_metadata(path).sidecar_problem


def _meta(candidates=(), hint=None, problem=None, shape=(50, 40)):
    return SemMeta(format="tiff", shape=shape, axes="YX", dtype=np.dtype(np.uint8), candidates=list(candidates),
                   databar_hint=hint, sidecar_problem=problem)


def test_decide_pixel_size_takes_the_user_value_else_the_first_candidate():
    meta = _meta([("a", 0.5), ("b", 0.7)])
    assert decide_pixel_size(meta, path="f.tif") == (0.5, "a")
    with pytest.warns(UserWarning, match=r"f.tif: pixel_size_um=0.6 µm given, but .*\(a\) says 0.5 µm"):
        assert decide_pixel_size(meta, path="f.tif", pixel_size_um=0.6) == (0.6, "user")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 0.504 is within 1 % of 0.5: no warning
        assert decide_pixel_size(meta, path="f.tif", pixel_size_um=0.504) == (0.504, "user")


def test_decide_pixel_size_without_any_names_the_file_and_the_sidecar_problem():
    with pytest.raises(InputError, match=r"^f.tif: no pixel size in the file's metadata; pass --pixel-size-um$"):
        decide_pixel_size(_meta(), path="f.tif")
    with pytest.raises(InputError, match=r"^f.tif: sidecar says no; pass --pixel-size-um$"):
        decide_pixel_size(_meta(problem="sidecar says no"), path="f.tif")
    with pytest.raises(InputError, match=r"^f.tif: pixel_size_um must be finite and > 0, got -1"):
        decide_pixel_size(_meta([("a", 0.5)]), path="f.tif", pixel_size_um=-1)


def test_decide_databar_rows_user_then_metadata_then_pixels_or_none_when_lazy():
    barred = _with_bar(_texture((200, 256), seed=13), 24)
    hinted, bare = _meta(hint=(7, "fei"), shape=(200, 256)), _meta(shape=(200, 256))
    assert decide_databar_rows(hinted, path="f", databar_rows=3) == (3, "user")
    assert decide_databar_rows(hinted, path="f", crop_databar=False) == (0, "not cropped (crop_databar=False)")
    assert decide_databar_rows(hinted, path="f", pixels=barred) == (7, "fei")
    assert decide_databar_rows(bare, path="f", pixels=barred) == (24, "detected from pixels")
    assert decide_databar_rows(bare, path="f")[0] == 0  # pixels=None (a lazy read): never detected
    with pytest.raises(InputError, match=r"^f: data bar of 200 rows leaves no image \(the image has 200 rows\)$"):
        decide_databar_rows(bare, path="f", databar_rows=200)
