"""The ``frame_fraction`` flag: constant padding around the imaged field, found in the raw image."""

import numpy as np
import pandas as pd

from cathodeflow.io.sem import write_tiff
from cathodeflow.measure.frame import MIN_FRAME_PX, frame_fraction, frame_mask
from cathodeflow.measure.image import flag_summary
from cathodeflow.study.pipeline import ingest, run_study
from cathodeflow.config import Params
from cathodeflow.synth import generate_image


def _noisy(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(20, 230, size=shape).astype(np.uint8)


def test_padding_of_one_value_on_two_sides_is_outside_the_field_and_nothing_else():
    img = _noisy((100, 120))
    img[:, :30] = 0  # a black band on the left (30 x 100 = 3000 px)
    img[90:, :] = 255  # a white band at the bottom (10 x 120; 900 px after the overlap)
    mask = frame_mask(img)
    truth = np.zeros(img.shape, bool)
    truth[:, :30] = True
    truth[90:, :] = True
    np.testing.assert_array_equal(mask, truth)
    assert frame_fraction(img) == truth.mean()


def test_noise_clipped_to_the_extremes_and_small_or_inner_constant_patches_are_not_frame():
    img = _noisy((100, 120), seed=1)
    img[::7, ::5] = 0  # isolated clipped pixels, some on the border
    img[40:60, 40:60] = 255  # a large constant patch that does not touch the border
    img[0:10, 0:10] = 0  # touches the border but is smaller than MIN_FRAME_PX
    assert 10 * 10 < MIN_FRAME_PX
    assert not frame_mask(img).any() and frame_fraction(img) == 0.0


def test_the_pipeline_puts_the_raw_images_frame_share_in_the_images_table(tmp_path):
    im = generate_image("20C", seed=2, image_id="pad", shape_lr=(104, 156), r10_um=0.6, r50_um=0.8, r90_um=1.0)
    lr = im.lr.copy()
    lr[:, :26] = 0  # stitched-mosaic padding: 26 of 156 columns
    write_tiff(tmp_path / "pad.tif", lr, pixel_size_um=im.pixel_size_lr_um)
    store = tmp_path / "s.zarr"
    ingest([tmp_path / "pad.tif"], store=store, condition="20C")
    run_study(store, params=Params(marker_radius_um=0.143), scheduler="threads")
    row = pd.read_parquet(store / "tables" / "images.parquet").iloc[0]
    assert row["frame_fraction"] == frame_fraction(lr) >= 26 / 156
    assert f"{100 * row['frame_fraction']:.1f}% outside the field" in flag_summary(row)


def test_a_user_frame_mask_adds_to_the_padding_and_a_mask_of_another_shape_is_refused(tmp_path, capsys):
    from cathodeflow.cli import main
    from cathodeflow.io.store import open_store

    img = _noisy((104, 156), seed=3)
    img[:, :26] = 0  # padding found in the image: 26 columns
    write_tiff(tmp_path / "m.tif", img, pixel_size_um=0.0385)
    mask = np.zeros((104, 156), np.uint8)
    mask[:52, 130:] = 255  # the user marks a blanked corner (52 x 26) as outside the field
    write_tiff(tmp_path / "mask.tif", mask, pixel_size_um=0.0385)
    write_tiff(tmp_path / "bad.tif", mask[:, :100], pixel_size_um=0.0385)
    store = tmp_path / "s.zarr"
    assert main(["ingest", str(tmp_path / "m.tif"), "--store", str(store), "--condition", "c",
                 "--frame-mask", str(tmp_path / "bad.tif")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.tif" in err[0] and "104×100" in err[0] and not store.exists()
    assert main(["ingest", str(tmp_path / "m.tif"), "--store", str(store), "--condition", "c",
                 "--frame-mask", str(tmp_path / "mask.tif")]) == 0
    rec = open_store(store, mode="r").stage_info("m", "raw")["params"]
    assert rec["frame_fraction"] == (104 * 26 + 52 * 26) / (104 * 156)
