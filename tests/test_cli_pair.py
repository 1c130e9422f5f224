"""``cathodeflow pair LOW HIGH --out DIR``: a registered pair stored and read back, refusals
(exit 2, one line, nothing written), and ``train sr`` on stored pairs.

Ground truth: make_training_pair renders one scene at 38.5 nm (LR) and 14.3 nm (HR) over the
same field, so the HR crop from HR pixel (Y, X) has its corner at LR (Y, X)·13/35.
"""

import functools
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from cathodeflow.cli import main
from cathodeflow.io.sem import read_sem, sha256_file, write_tiff
from cathodeflow.study.pairs import read_pairs
from cathodeflow.synth.training import make_training_pair

S = 35 / 13
Y, X = 40, 75  # HR px of the crop's corner: LR (14.857, 27.857)


@functools.lru_cache(maxsize=None)
def _scene(seed: int):
    return make_training_pair(seed, family="classic", shape_lr=(156, 182))


def _files(folder: Path, *, seed=0, hr_seed=None) -> tuple[Path, Path]:
    p, q = _scene(seed), _scene(seed if hr_seed is None else hr_seed)
    low, high = folder / "low.tif", folder / "high.tif"
    write_tiff(low, p.lr, pixel_size_um=p.pixel_size_lr_um)
    write_tiff(high, q.hr[Y:Y + 300, X:X + 330], pixel_size_um=q.pixel_size_hr_um)
    return low, high


def _cli(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_pair_round_trip_stores_an_aligned_pair_with_its_record(tmp_path, capsys):
    low, high = _files(tmp_path)
    out = tmp_path / "pairs"
    code, stdout, err = _cli(capsys, "pair", low, high, "--out", out)
    assert code == 0, err
    (line,) = stdout.strip().splitlines()
    oy, ox = (float(v) for v in re.match(r"offset \((\S+), (\S+)\) LR px, scale ", line).groups())
    assert abs(oy - Y / S) < 0.5 and abs(ox - X / S) < 0.5, line
    (pair,) = read_pairs(out)
    rec = pair.record
    assert abs(rec["offset_lr_px"][0] - Y / S) < 0.5 and abs(rec["offset_lr_px"][1] - X / S) < 0.5
    assert abs(rec["scale"] / S - 1) < 0.005
    assert rec["low"]["sha256"] == sha256_file(low) and rec["high"]["sha256"] == sha256_file(high)
    assert rec["low"]["path"] == str(low.resolve())
    y0, x0 = rec["lr_origin"]
    h, w = pair.lr.shape
    assert h % 26 == 0 and w % 26 == 0 and pair.hr.shape == (h * 35 // 13, w * 35 // 13)
    np.testing.assert_array_equal(pair.lr, _scene(0).lr[y0:y0 + h, x0:x0 + w])
    # pixel sizes stored in the files, in the ratio 35/13
    lr_im, hr_im = read_sem(out / "high.lr.tif"), read_sem(out / "high.hr.tif")
    assert lr_im.pixel_size_um == pytest.approx(0.0385, rel=1e-9)
    assert hr_im.pixel_size_um == pytest.approx(0.0385 * 13 / 35, rel=1e-9)
    # the stored HR is the scene on the LR block's grid: full-HR pixel coordinate y0·35/13 + j
    yy, xx = np.meshgrid(y0 * S + np.arange(pair.hr.shape[0]), x0 * S + np.arange(pair.hr.shape[1]), indexing="ij")
    ref = map_coordinates(_scene(0).hr.astype(float), [yy, xx], order=3, mode="nearest")
    assert pair.hr.dtype == np.uint8
    assert np.sqrt(np.mean((pair.hr - ref) ** 2)) / ref.std() < 0.1
    assert rec["files"] == {"lr": "high.lr.tif", "hr": "high.hr.tif"}


def _refused(capsys, tmp_path, *args, match, warned=None):
    """The command exits 2 with one error line (after one warning line containing
    ``warned``, when given) and writes nothing."""
    out = tmp_path / "pairs"
    code, stdout, err = _cli(capsys, "pair", *args, "--out", out)
    assert code == 2
    assert stdout == ""
    lines = err.strip().splitlines()
    if warned is not None:
        assert lines[0].startswith("cathodeflow: warning: ") and warned in lines[0], err
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("cathodeflow: error: "), err
    assert match in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


def test_unrelated_images_are_refused_with_exit_2_and_nothing_written(tmp_path, capsys):
    low, high = _files(tmp_path, hr_seed=3)
    line = _refused(capsys, tmp_path, low, high, match="no match")
    assert str(low) in line and str(high) in line and "cross-correlation 0." in line


def test_swapped_low_and_high_are_refused(tmp_path, capsys):
    low, high = _files(tmp_path)
    _refused(capsys, tmp_path, high, low, match="is not smaller than")


def test_hr_field_larger_than_lr_field_is_refused(tmp_path, capsys):
    low, high = _files(tmp_path)
    # at 30 nm the 300 × 330 px HR image would span 234 × 257 LR px > 156 × 182
    _refused(capsys, tmp_path, low, high, "--pixel-size-high", "0.03", match="is not inside the field of",
             warned="pixel_size_um=0.03 µm given")


def test_missing_pixel_size_is_refused(tmp_path, capsys):
    import tifffile

    low, _ = _files(tmp_path)
    bare = tmp_path / "bare.tif"
    tifffile.imwrite(bare, _scene(0).hr[:300, :330], metadata=None)
    _refused(capsys, tmp_path, low, bare, match="no pixel size")


def test_unreadable_and_missing_files_are_refused(tmp_path, capsys):
    low, _ = _files(tmp_path)
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + b"\x00" * 20)
    _refused(capsys, tmp_path, low, junk, match="junk.tif")
    _refused(capsys, tmp_path, tmp_path / "absent.tif", low, match="file not found")


def test_train_sr_on_stored_pairs_only_runs_two_steps(tmp_path, capsys):
    from cathodeflow.models.registry import resolve_weights

    low, high = _files(tmp_path)
    pairs = tmp_path / "pairs"
    assert _cli(capsys, "pair", low, high, "--out", pairs)[0] == 0
    cfg = tmp_path / "tiny.toml"
    cfg.write_text("[srgan]\nn_blocks = 1\nfilters = 4\nupsample_filters = 8\ninput_kernel = 3\noutput_kernel = 3\n"
                   "disc_filters = 2\ndisc_dense = 4\n[training]\nmax_steps = 2\nval_every = 1\ncrop_lr = 52\n"
                   "batch_size = 2\n"
                   "n_val_crops = 2\nn_train_images = 0\nn_val_images = 1\nshape_lr = [52, 52]\n"
                   'pairs_dir = "pairs"\n')  # relative to the TOML file's folder
    code, stdout, err = _cli(capsys, "train", "sr", "--config", cfg, "--out", tmp_path / "run")
    assert code == 0, err
    assert "data: 1 training (1 stored)" in err
    rec = resolve_weights(str(tmp_path / "run" / "srgan.weights.h5"))
    assert rec.training["steps_run"] == 2
    assert rec.training["data"] == f"1 stored pairs from {pairs}"  # no synthetic training pairs
    assert rec.training["stored_pairs"] == [{"pair_id": "high", "low_sha256": sha256_file(low),
                                             "high_sha256": sha256_file(high)}]


def test_n_train_images_zero_without_pairs_dir_is_refused(tmp_path):
    from cathodeflow.errors import InputError
    from cathodeflow.study.train_sr import TrainSRConfig

    with pytest.raises(InputError, match="0 needs training.pairs_dir"):
        TrainSRConfig(n_train_images=0)
    assert TrainSRConfig().pairs_dir is None


def test_stored_pairs_refuse_an_empty_folder_and_blocks_smaller_than_the_crop(tmp_path, capsys):
    from cathodeflow.errors import InputError
    from cathodeflow.study.train_sr import stored_pairs

    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no \\*.pair.json"):
        stored_pairs(tmp_path / "empty", crop_lr=52)
    low, high = _files(tmp_path)
    assert _cli(capsys, "pair", low, high, "--out", tmp_path / "pairs")[0] == 0
    (pair,) = read_pairs(tmp_path / "pairs")
    too_big = (min(pair.lr.shape) // 26 + 1) * 26
    with pytest.raises(InputError, match=f"smaller than training.crop_lr = {too_big}"):
        stored_pairs(tmp_path / "pairs", crop_lr=too_big)
    (data, provenance) = stored_pairs(tmp_path / "pairs", crop_lr=52)
    lr, hr = data[0]
    assert lr.dtype == np.float32 and hr.shape == (lr.shape[0] * 35 // 13, lr.shape[1] * 35 // 13)
    # normalised by the LR block's 0.5/99.5 percentiles
    assert np.percentile(lr, 0.5) == pytest.approx(0.0, abs=1e-6) and np.percentile(lr, 99.5) == pytest.approx(1.0)
    assert provenance[0]["pair_id"] == "high"


# outside pytest's log capture (a user's terminal), tifffile's own log line about a file it
# cannot parse must not come before our one-line error
def test_an_empty_tiff_gives_one_error_line_in_a_users_terminal(tmp_path):
    import subprocess
    import sys

    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00\x00\x00\x00\x00")
    for args in (["pair", str(junk), str(junk), "--out", str(tmp_path / "pairs")],
                 ["ingest", str(junk), "--store", str(tmp_path / "s.zarr"), "--condition", "A"]):
        r = subprocess.run([sys.executable, "-m", "cathodeflow.cli", *args], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.splitlines() == [f"cathodeflow: error: {junk}: TIFF holds no image"], r.stderr
    assert not (tmp_path / "pairs").exists() and not (tmp_path / "s.zarr").exists()
