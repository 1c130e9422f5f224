"""Study stores at an object-store URL (``s3://bucket/study.zarr``), against a real
S3-compatible server: ``moto_server`` (PyPI ``moto[server]``) started on 127.0.0.1.

Ground truth: the same commands on a local folder (the tables and arrays must be equal, as
the pipeline is the same and only the storage differs), the objects the test finds in the
bucket with its own client, and what the test left out (credentials, the bucket).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("moto", reason="moto is not installed (pip install 'moto[server]'): no S3 server to test against")
s3fs = pytest.importorskip("s3fs", reason="s3fs is not installed: s3:// stores need it")

import cathodeflow  # noqa: E402
from cathodeflow.cli import main  # noqa: E402
from cathodeflow.config import Params  # noqa: E402
from cathodeflow.errors import InputError, StoreError  # noqa: E402
from cathodeflow.io.location import RemotePath, as_path, store_arg  # noqa: E402
from cathodeflow.io.lock import read_lock, store_lock  # noqa: E402
from cathodeflow.io.sem import write_tiff  # noqa: E402
from cathodeflow.io.store import open_store  # noqa: E402
from cathodeflow.io.tables import SCHEMAS, read_table  # noqa: E402
from cathodeflow.study.pipeline import current_tables_dir  # noqa: E402
from cathodeflow.synth import generate_image  # noqa: E402

BUCKET = "cathodeflow-test"
URL = f"s3://{BUCKET}/study.zarr"
SMALL = dict(shape_lr=(104, 156), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)
IDS = ("20C_000", "50C_000")


def _moto_server() -> str:
    exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
    if not Path(exe).exists():
        pytest.skip("moto_server not found (pip install 'moto[server]')")
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """A moto S3 server on 127.0.0.1, the AWS variables pointing at it, and the bucket
    :data:`BUCKET`; yields an s3fs client of the test's own."""
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(endpoint, timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail(f"moto_server did not answer on {endpoint} within 20 s")
        nowhere = str(tmp_path_factory.mktemp("aws") / "absent")
        with pytest.MonkeyPatch.context() as mp:
            for k in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
                mp.delenv(k, raising=False)
            for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                         "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
                         "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": nowhere,
                         "AWS_CONFIG_FILE": nowhere}.items():
                mp.setenv(k, v)
            s3fs.S3FileSystem.clear_instance_cache()
            fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
            fs.mkdir(BUCKET)
            yield fs
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        proc.terminate()
        proc.wait(10)


def _one_error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith("cathodeflow: error:"), err
    return err[0]


def _tifs(d: Path) -> list[tuple[Path, str]]:
    out = []
    for k, cond in enumerate(("20C", "50C")):
        im = generate_image(cond, seed=k, image_id=f"{cond}_000", **SMALL)
        path = d / f"{im.image_id}.tif"
        write_tiff(path, im.lr, pixel_size_um=im.pixel_size_lr_um)
        out.append((path, cond))
    return out


@pytest.fixture(scope="module")
def runs(s3, tmp_path_factory):
    """The same two synthetic images ingested and run through every stage into a local
    folder and into :data:`URL`; yields (local store, files)."""
    d = tmp_path_factory.mktemp("s3run")
    tifs = _tifs(d)
    manifest = d / "manifest.csv"
    manifest.write_text("file,condition\n" + "".join(f"{p.name},{c}\n" for p, c in tifs))
    local = d / "study.zarr"
    for store in (str(local), URL):
        assert main(["ingest", "--manifest", str(manifest), "--store", store]) == 0
        assert main(["run", "--store", store, "--scheduler", "sync"]) == 0
    return local, tifs


# ------------------------------------------------------------------ locations


def test_store_argument_keeps_urls_whole_and_local_paths_as_paths():
    assert store_arg("s3://bucket/study.zarr") == "s3://bucket/study.zarr"  # not s3:/bucket/…
    assert store_arg("data/study.zarr") == Path("data/study.zarr")
    assert store_arg("file:///data/study.zarr") == Path("/data/study.zarr")
    p = as_path("s3://bucket/study.zarr/")
    assert isinstance(p, RemotePath) and p.key == "bucket/study.zarr" and str(p) == "s3://bucket/study.zarr"
    assert str(p / "tables" / "images.parquet") == "s3://bucket/study.zarr/tables/images.parquet"
    assert (p / "tables").parent == p and (p / "tables").name == "tables"


@pytest.mark.parametrize("url, found", [("s3://bucket", "names no store inside the bucket"),
                                        ("nosuchfs://bucket/study.zarr", "cannot open the nosuchfs:// filesystem")])
def test_a_url_without_a_store_key_or_with_an_unknown_protocol_is_refused_in_one_line(url, found):
    with pytest.raises(StoreError, match=found) as e:
        as_path(url)
    assert "\n" not in str(e.value) and str(e.value).startswith(f"STORE {url}:")


# ------------------------------------------------------------------ ingest, run, tables


def test_ingest_and_run_on_s3_give_the_tables_and_arrays_of_a_local_run(s3, runs):
    local, _ = runs
    assert s3.exists(f"{BUCKET}/study.zarr/zarr.json")
    assert not s3.exists(f"{BUCKET}/study.zarr/cathodeflow.lock")  # released after each command
    for name in SCHEMAS:
        a = read_table(local / "tables" / f"{name}.parquet", name)
        b = read_table(f"{URL}/tables/{name}.parquet", name)
        assert s3.exists(f"{BUCKET}/study.zarr/tables/{name}.parquet")
        pd.testing.assert_frame_equal(a, b)
    assert len(read_table(local / "tables" / "cracks.parquet")) > 0  # not an empty comparison
    assert len(read_table(local / "tables" / "particles.parquet")) > 0
    lst, rst = open_store(local, mode="r"), open_store(URL, mode="r")
    assert rst.image_ids() == lst.image_ids() == list(IDS)
    for iid in IDS:
        for stage in ("raw", "sr", "phase", "labels/cracks", "labels/particles"):
            assert rst.stage_info(iid, stage)["complete"] is True
            np.testing.assert_array_equal(rst.read_stage(iid, stage).compute(), lst.read_stage(iid, stage).compute())


def test_ls_and_report_read_an_s3_store_and_its_current_tables(s3, runs, tmp_path, capsys):
    capsys.readouterr()
    assert main(["ls", URL, "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["store"] == URL and summary["n_images"] == 2
    assert summary["tables"]["state"] == "current" and summary["tables"]["image_ids"] == list(IDS)
    assert current_tables_dir(URL) == as_path(f"{URL}/tables")  # what `report --store` reads
    assert main(["report", "--tables", f"{URL}/tables", "--out", str(tmp_path / "report")]) == 0
    assert (tmp_path / "report" / "index.html").stat().st_size > 0


def test_describe_writes_its_tables_to_an_s3_url_as_to_a_folder(s3, runs, tmp_path):
    local, _ = runs
    st = open_store(local, mode="r")
    phase = tmp_path / "20C_000.npy"
    np.save(phase, st.read_stage("20C_000", "phase").compute())
    eta = str(st.pixel_size_um("20C_000", "phase"))
    out = f"s3://{BUCKET}/described"
    for where in (str(tmp_path / "described"), out):
        assert main(["describe", str(phase), "--pixel-size-um", eta, "--out", where, "--scheduler", "sync"]) == 0
    for name in ("images", "cracks", "particles"):
        pd.testing.assert_frame_equal(read_table(f"{out}/{name}.parquet", name),
                                      read_table(tmp_path / "described" / f"{name}.parquet", name))


def test_rm_removes_an_image_from_an_s3_store(s3, tmp_path, capsys):
    url = f"s3://{BUCKET}/rm.zarr"
    for iid in ("a", "b"):
        write_tiff(tmp_path / f"{iid}.tif", np.random.default_rng(len(iid)).integers(0, 256, (64, 80), np.uint8),
                   pixel_size_um=0.0385)
        assert main(["ingest", str(tmp_path / f"{iid}.tif"), "--store", url, "--condition", "C"]) == 0
    assert s3.exists(f"{BUCKET}/rm.zarr/images/a/zarr.json")
    assert main(["rm", url, "a"]) == 0
    assert not s3.exists(f"{BUCKET}/rm.zarr/images/a/zarr.json")
    assert s3.exists(f"{BUCKET}/rm.zarr/images/b/raw/zarr.json")
    assert open_store(url, mode="r").image_ids() == ["b"]


# ------------------------------------------------------------------ lock


def test_the_lock_object_is_created_only_if_absent(s3):
    p = as_path(f"s3://{BUCKET}/exclusive/object")
    p.write_bytes(b"first", exclusive=True)
    with pytest.raises(FileExistsError):
        p.write_bytes(b"second", exclusive=True)
    assert s3.cat_file(f"{BUCKET}/exclusive/object") == b"first"


def test_a_second_writer_on_an_s3_store_is_refused_and_writes_nothing(s3, runs, capsys):
    _, tifs = runs
    before = sorted(s3.find(f"{BUCKET}/study.zarr"))
    with store_lock(URL, command="another test run") as held:
        assert json.loads(s3.cat_file(f"{BUCKET}/study.zarr/cathodeflow.lock"))["token"] == held["token"]
        capsys.readouterr()
        assert main(["ingest", str(tifs[0][0]), "--store", URL, "--condition", "20C", "--image-id", "extra"]) == 2
        line = _one_error_line(capsys)
        assert "in use by another test run" in line
    assert read_lock(URL) is None  # released
    assert sorted(s3.find(f"{BUCKET}/study.zarr")) == before


# ------------------------------------------------------------------ unreachable stores


def test_a_missing_bucket_is_one_line_exit_2_and_nothing_is_created(s3, runs, capsys):
    _, tifs = runs
    url = "s3://no-such-bucket/study.zarr"
    capsys.readouterr()
    assert main(["ingest", str(tifs[0][0]), "--store", url, "--condition", "20C"]) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"cathodeflow: error: STORE {url}: bucket 'no-such-bucket' not found; expected")
    assert main(["ls", url]) == 2
    assert _one_error_line(capsys).startswith(f"cathodeflow: error: STORE {url}: bucket")
    assert not s3.exists("no-such-bucket")


def test_missing_credentials_are_one_line_exit_2_and_nothing_is_written(s3, runs, monkeypatch, capsys):
    _, tifs = runs
    url = f"s3://{BUCKET}/nocredentials.zarr"
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    s3fs.S3FileSystem.clear_instance_cache()  # a cached client would still hold the keys
    try:
        capsys.readouterr()
        assert main(["ingest", str(tifs[0][0]), "--store", url, "--condition", "20C"]) == 2
        line = _one_error_line(capsys)
        assert line.startswith(f"cathodeflow: error: STORE {url}: ") and "NoCredentialsError" in line
        assert "expected" in line
        assert main(["run", "--store", URL, "--scheduler", "sync"]) == 2
        assert _one_error_line(capsys).startswith(f"cathodeflow: error: STORE {URL}: ")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert s3.find(f"{BUCKET}/nocredentials.zarr") == []
    assert not s3.exists(f"{BUCKET}/study.zarr/cathodeflow.lock")


# ------------------------------------------------------------------ open_study


def test_open_study_on_an_s3_url_gives_the_lazy_arrays_and_tables_of_the_local_store(s3, runs, tmp_path):
    import dask.array as da

    local, _ = runs
    remote, here = cathodeflow.open_study(URL), cathodeflow.open_study(local)
    assert remote.attrs["store"] == URL and remote.attrs["tables"] == "current" and remote.name == "study.zarr"
    assert sorted(remote["images"].children) == sorted(here["images"].children) == list(IDS)
    for iid in IDS:
        a, b = remote[f"images/{iid}"].dataset, here[f"images/{iid}"].dataset
        assert sorted(a.data_vars) == sorted(b.data_vars) == ["cracks", "particles", "phase", "raw", "sr"]
        assert a.attrs["condition"] == b.attrs["condition"] == iid[:3]
        for var in a.data_vars:
            assert isinstance(a[var].data, da.Array), var  # lazy: read chunk by chunk from the bucket
            assert a[var].attrs["store_path"] == b[var].attrs["store_path"]
            np.testing.assert_array_equal(a[var].values, b[var].values, err_msg=var)
            for dim in a[var].dims[-2:]:
                np.testing.assert_array_equal(a[var][dim].values, b[var][dim].values)
    got = remote.cathode.tables()
    for name in ("images", "cracks", "particles", "conditions"):  # as the test's own client reads them
        s3.get(f"{BUCKET}/study.zarr/tables/{name}.parquet", str(tmp_path / f"{name}.parquet"))
        expected = read_table(tmp_path / f"{name}.parquet", name)
        assert remote[f"tables/{name}"].dataset.attrs["file"] == f"{URL}/tables/{name}.parquet"
        pd.testing.assert_frame_equal(got[name], expected, obj=name)
    assert len(got["cracks"]) > 0 and len(got["particles"]) > 0  # not an empty comparison


def test_open_study_refuses_an_s3_url_that_holds_no_store_in_one_line(s3):
    with pytest.raises(InputError, match=r"^open_study path: ") as e:
        cathodeflow.open_study(f"s3://{BUCKET}/absent.zarr")
    assert "\n" not in str(e.value) and f"s3://{BUCKET}/absent.zarr" in str(e.value)


# ------------------------------------------------------------------ chunk-level resume


@pytest.mark.slow  # three short runs (to the sr stage) against the S3 server: ~15 s
def test_a_run_failing_mid_sr_on_s3_resumes_writing_each_chunk_object_once(s3, tmp_path, monkeypatch):
    """Every PUT of a chunk object leaves a version in a versioned bucket: the chunks written
    before the failure keep their one version, the others get theirs in the rerun."""
    import cathodeflow.stages.superres as superres
    from cathodeflow.study.pipeline import ingest, run_study
    from test_resume_chunks import CHUNK, FAIL_AFTER, Blocks, Injected, _inject

    bucket = "cathodeflow-resume"
    s3.mkdir(bucket)
    s3.call_s3("put_bucket_versioning", Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    url, prefix = f"s3://{bucket}/study.zarr", "study.zarr/images/20C_000/sr/0/c/"

    def versions() -> dict[tuple[int, int], int]:
        """Chunk index -> number of versions (writes) of its object."""
        listed = s3.call_s3("list_object_versions", Bucket=bucket, Prefix=prefix)
        out: dict[tuple[int, int], int] = {}
        for v in listed.get("Versions", []):
            key = tuple(int(p) for p in v["Key"][len(prefix):].split("/"))
            out[key] = out.get(key, 0) + 1
        assert not listed.get("DeleteMarkers") and not listed.get("IsTruncated")
        return out

    (tif, _), = _tifs(tmp_path)[:1]
    params = Params(chunk_px=CHUNK)
    reference = tmp_path / "reference.zarr"
    ingest([tif], store=reference, condition="20C")
    run_study(reference, params=params, scheduler="sync", to_stage="sr")
    ingest([tif], store=url, condition="20C")
    with monkeypatch.context() as mp:
        _inject(mp, superres, "superres_any_size_dask", Blocks(fail_after=FAIL_AFTER))
        with pytest.raises(Injected):
            run_study(url, params=params, scheduler="sync", to_stage="sr")
    first = versions()
    n = 5 * 7  # the 280 × 420 px sr grid in chunks of 64 px
    assert 0 < len(first) < n and set(first.values()) == {1}
    assert open_store(url, mode="r").stage_status("20C_000", "sr") == "incomplete"

    spy = Blocks()
    with monkeypatch.context() as mp:
        _inject(mp, superres, "superres_any_size_dask", spy)
        run_study(url, params=params, scheduler="sync", to_stage="sr")
    after = versions()
    grid = {(i, j) for i in range(5) for j in range(7)}
    assert set(after) == grid and set(after.values()) == {1}  # each chunk object written once in all
    assert sorted(spy.computed) == sorted(grid - set(first))  # the rerun computed only the missing ones
    assert not s3.exists(f"{bucket}/study.zarr/images/20C_000/sr/chunks_done/zarr.json")
    np.testing.assert_array_equal(open_store(url, mode="r").read_stage("20C_000", "sr").compute(),
                                  open_store(reference, mode="r").read_stage("20C_000", "sr").compute())
