"""The SRGAN generator as the sr stage: tiled == whole on the reflected image, any size, the
intensity map back to the input's units, `train sr`, `run --sr-method srgan`, bad input."""

import json
import re

import numpy as np
import pytest
from _srgan import TINY_SRGAN, tiny_srgan_weights
from _unet import tiny_weights as tiny_unet_weights

from cathodeflow.cli import main
from cathodeflow.config import SR_DEN, SR_NUM, Params
from cathodeflow.errors import InputError
from cathodeflow.stages.srgan import (
    MAX_PIXEL_RATIO,
    SRGANSetup,
    srgan_stage_dask,
    srgan_superres,
    srgan_superres_dask,
)

BLOCK = 26  # the generator's low-resolution period 2·13


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return tiny_srgan_weights(tmp_path_factory.mktemp("srgan"))


def _image(shape, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    img = 70 + 110 * ((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2 < (min(shape) / 3) ** 2)
    return (img + rng.normal(0, 12, shape)).clip(0, 255).astype(np.float32)


def _whole_image_reference(img, weights):
    """One generator call on the image reflected by the halo all round (and at the bottom/right
    up to a multiple of 26), normalised by the 0.5/99.5 percentiles, cropped to ⌊n·35/13⌋ and
    mapped back — written out here, independently of the stage's tiling code."""
    from cathodeflow.models.registry import load_srgan_generator
    from cathodeflow.models.srgan import SRGANConfig, srgan_receptive_field_radius

    halo = -(-srgan_receptive_field_radius(SRGANConfig.from_dict(TINY_SRGAN)) // BLOCK) * BLOCK
    H, W = img.shape
    lo, hi = np.percentile(img.astype(np.float64), [0.5, 99.5])
    x = np.pad(img, ((halo, halo + (-H) % BLOCK), (halo, halo + (-W) % BLOCK)), mode="symmetric")
    model, _ = load_srgan_generator(weights, cache=False)
    y = np.asarray(model((((x - lo) / (hi - lo)).astype(np.float32))[None, ..., None], training=False))[0, ..., 0]
    a = halo * SR_NUM // SR_DEN
    return (lo + (hi - lo) * y[a:a + H * SR_NUM // SR_DEN, a:a + W * SR_NUM // SR_DEN]).astype(np.float32), hi - lo


def test_tiled_srgan_equals_one_whole_image_call_within_1e4_for_an_odd_size(weights):
    img = _image((150, 121))  # neither axis a multiple of 13 or 26
    ref, span = _whole_image_reference(img, weights)
    assert ref.shape == (403, 325)  # ⌊150·35/13⌋, ⌊121·35/13⌋
    tiled = srgan_superres_dask(img, weights=weights, tile_lr=52, batch=2)
    assert tiled.shape == ref.shape and tiled.chunks[0][:2] == (140, 140)  # 52·35/13 px per tile
    got = tiled.compute(scheduler="synchronous")
    assert np.max(np.abs(got - ref)) <= 1e-4 * span
    whole = srgan_superres(img, weights=weights)  # one tile
    assert np.max(np.abs(whole - ref)) <= 1e-4 * span
    assert np.std(ref) > 0.01 * span  # not a constant output that would match anything


def test_output_is_in_the_input_units_an_affine_change_of_the_input_changes_it_alike(weights):
    img = _image((52, 78), seed=1)
    a = srgan_superres(img, weights=weights)
    b = srgan_superres(3.0 * img - 40.0, weights=weights)
    span = float(np.ptp(a))
    assert span > 0 and np.max(np.abs(b - (3.0 * a - 40.0))) <= 1e-4 * 3 * span


def test_stage_provenance_names_method_weights_sha256_tile_and_halo(weights):
    from cathodeflow.models.registry import file_sha256

    img = _image((78, 52), seed=2)
    sr, prov = srgan_stage_dask(img, pixel_size_um=0.0385, weights=weights, tile_lr=52)
    assert sr.shape == (210, 140)
    assert prov["method"] == "srgan" and prov["weights_sha256"] == file_sha256(weights)
    assert prov["halo_lr_px"] == 52 and prov["receptive_field_radius_lr_px"] == 28 and prov["tile_lr_px"] == 52


# ------------------------------------------------------------------------------- bad input
def test_tiles_smaller_than_the_halo_or_off_the_26_px_grid_are_refused_in_one_line(weights):
    img = _image((52, 52))
    with pytest.raises(InputError, match=r"tile_lr: 26 px is smaller than .* halo of 52 px") as e:
        srgan_superres_dask(img, weights=weights, tile_lr=26)
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="multiple of 26"):
        srgan_superres_dask(img, weights=weights, tile_lr=60)


def test_far_pixel_size_is_refused_unless_forced(weights):
    img = _image((52, 52))
    far = 0.0385 * MAX_PIXEL_RATIO * 1.1
    with pytest.raises(InputError, match=r"raw pixel size .* SRGAN was trained for .*--force"):
        srgan_stage_dask(img, pixel_size_um=far, weights=weights, tile_lr=52)
    srgan_stage_dask(img, pixel_size_um=far, weights=weights, tile_lr=52, force=True)
    srgan_stage_dask(img, pixel_size_um=0.0385 * MAX_PIXEL_RATIO * 0.99, weights=weights, tile_lr=52)


def test_srgan_without_weights_means_the_shipped_ones_and_weights_without_srgan_are_refused():
    from cathodeflow.models.registry import DEFAULT_SRGAN
    from cathodeflow.study.pipeline import _sr_weights

    assert _sr_weights(Params(sr_method="srgan")) == DEFAULT_SRGAN
    assert _sr_weights(Params(sr_method="srgan", sr_weights="x.weights.h5")) == "x.weights.h5"
    with pytest.raises(InputError, match="sr_weights set, but sr_method is 'auto'"):
        Params(sr_weights="x.weights.h5")
    with pytest.raises(InputError, match="sr_method must be one of"):
        Params(sr_method="bicubic")


def test_unet_weights_given_as_sr_weights_are_refused(tmp_path):
    unet = tiny_unet_weights(tmp_path)
    with pytest.raises(InputError, match=r"architecture kind is 'unet', expected 'srgan'"):
        SRGANSetup.from_weights(unet)


# ------------------------------------------------------------------- train sr, then run
TINY_TOML = """
[srgan]
n_blocks = 1
filters = 4
upsample_filters = 8
input_kernel = 3
output_kernel = 3
disc_filters = 2
disc_dense = 4

[training]
max_steps = 2
val_every = 1
patience = 5
pretrain_steps = 1
crop_lr = 52
batch_size = 2
n_val_crops = 2
n_train_images = 1
n_val_images = 1
shape_lr = [65, 78]
seed = 3
"""


def test_train_sr_writes_srgan_weights_that_run_uses_for_the_sr_stage(tmp_path, capsys):
    from cathodeflow.io.sem import write_tiff
    from cathodeflow.io.store import open_store
    from cathodeflow.models.registry import file_sha256, resolve_weights
    from cathodeflow.study.pipeline import ingest

    cfg = tmp_path / "sr.toml"
    cfg.write_text(TINY_TOML)
    assert main(["train", "sr", "--config", str(cfg), "--out", str(tmp_path / "out"), "--name", "t"]) == 0
    w = tmp_path / "out" / "t.weights.h5"
    rec = resolve_weights(str(w))
    assert w.is_file() and rec.sha256 == file_sha256(w)
    assert rec.architecture == {"kind": "srgan", "n_blocks": 1, "filters": 4, "upsample_filters": 8,
                                "input_kernel": 3, "output_kernel": 3, "scale_num": 35, "scale_den": 13,
                                "disc_filters": 2, "disc_dense": 4, "input_skip": 0}
    assert rec.training["steps_run"] == 2 and rec.training["pretrain_steps_run"] == 1
    assert rec.pixel_size_um == 0.0385 and rec.normalisation == {"method": "percentile", "q": [0.5, 99.5]}
    assert json.loads((tmp_path / "out" / "t.history.json").read_text())["gan"]["steps"] == [1, 2]

    img = _image((91, 100), seed=4).astype(np.uint8)
    f = tmp_path / "a.tif"
    write_tiff(f, img, pixel_size_um=0.0385)
    store = tmp_path / "s.zarr"
    ingest([f], store=store, condition="20C")
    capsys.readouterr()
    assert main(["run", "--store", str(store), "--to", "sr", "--sr-method", "srgan", "--sr-weights", str(w)]) == 0
    st = open_store(store, mode="r")
    sr = np.asarray(st.read_stage("a", "sr"))
    assert sr.shape == (245, 269)  # ⌊91·35/13⌋, ⌊100·35/13⌋
    want = srgan_superres(np.asarray(st.read_stage("a", "raw")), weights=str(w))
    assert np.max(np.abs(sr - want)) <= 1e-4 * float(np.ptp(want))
    info = st.stage_info("a", "sr")
    assert info["weights_sha256"] == rec.sha256 and info["params"]["method"] == "srgan"
    assert info["params"]["halo_lr_px"] == 26 and info["params"]["params"] == {"sr_method": "srgan",
                                                                                "sr_weights": str(w)}
    # the whole pipeline runs on it (classical phases, labels, tables)
    assert main(["run", "--store", str(store), "--sr-method", "srgan", "--sr-weights", str(w),
                 "--marker-radius-um", "0.143"]) == 0
    assert "sr recomputed" not in capsys.readouterr().err  # same parameters: sr is kept

    # other weights trained into the same file: the parameters are equal, the sha256 is not
    tiny_srgan_weights(w.parent, name=w.name.removesuffix(".weights.h5"), seed=11)
    assert main(["run", "--store", str(store), "--to", "sr", "--sr-method", "srgan", "--sr-weights", str(w)]) == 0
    assert re.search(rf"a: sr recomputed \(weights {re.escape(str(w))}: sha256 {rec.sha256[:12]}… -> ",
                     capsys.readouterr().err)
    assert open_store(store, mode="r").stage_info("a", "sr")["weights_sha256"] == resolve_weights(w).sha256

    # without --sr-weights: the shipped generator, and sr is recomputed with it
    assert main(["run", "--store", str(store), "--to", "sr", "--sr-method", "srgan"]) == 0
    assert "a: sr recomputed" in capsys.readouterr().err
    shipped = resolve_weights("srgan-small-v1")
    assert open_store(store, mode="r").stage_info("a", "sr")["weights_sha256"] == shipped.sha256 == file_sha256(shipped.path)

    # bad input on the command line: one line, exit 2
    assert main(["run", "--store", str(store), "--sr-weights", str(w)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sr_weights set, but sr_method is 'auto'" in err[0]


def test_train_sr_config_refuses_off_grid_crops_and_any_silent_content_loss_switch(tmp_path):
    from cathodeflow.study.train_sr import load_train_sr_config

    cfg = tmp_path / "c.toml"
    for training, match in (("crop_lr = 96", r"crop_lr must be a multiple of 26"),
                            ('content = "vgg19"', r"content = 'vgg19' needs training.vgg19_weights"),
                            ('vgg19_weights = "v.h5"', r"vgg19_weights is set but training.content is 'mse'"),
                            ("max_stepz = 3", r"unknown \[training\] key\(s\) \['max_stepz'\]")):
        cfg.write_text(f"[training]\n{training}\n")
        with pytest.raises(InputError, match=match) as e:
            load_train_sr_config(cfg)
        assert str(e.value).startswith(str(cfg)) and "\n" not in str(e.value)
    assert load_train_sr_config(None).crop_lr == 104
