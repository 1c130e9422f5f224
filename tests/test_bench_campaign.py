"""The campaign benchmark's bookkeeping (benchmarks/bench_campaign.py) on a tiny campaign:
4 maps of 512² px (2 distinct), one LocalCluster of 2 workers."""

from __future__ import annotations

import json
import os

import dask
import numpy as np
import pandas as pd
import pytest

from benchmarks import bench_campaign as bc
from cathodeflow.measure.describe import TABLE_NAMES
from cathodeflow.study.describe import describe

SHAPE = (512, 512)
RADIUS = (60.0, 90.0)  # px: every particle holds a marker (r = 50 px at 14.3 nm)
N = 4


def assert_tables_equal(a, b):
    for name in TABLE_NAMES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True, obj=name)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    folder = tmp_path_factory.mktemp("campaign")
    files = bc.write_campaign(folder, N, shape=SHAPE, distinct=2, radius_px=RADIUS)
    return files, bc.conditions_of(N)


@pytest.fixture(scope="module")
def serial(campaign):
    files, conds = campaign
    return bc.serial_loop(files, conds)


@pytest.fixture(scope="module")
def client():
    from cathodeflow.study.cluster import local_cluster

    with local_cluster(2) as c:
        c.wait_for_workers(2)
        yield c


def test_campaign_reuses_distinct_maps_under_their_own_files_and_ids(campaign, serial):
    files, conds = campaign
    maps = [np.load(f) for f in files]
    assert [f.name for f in files] == [f"map-{k:04d}.npy" for k in range(N)]
    assert all(m.shape == SHAPE and m.dtype == np.uint8 for m in maps)
    np.testing.assert_array_equal(maps[0], maps[2])
    np.testing.assert_array_equal(maps[1], maps[3])
    assert not np.array_equal(maps[0], maps[1])
    assert conds == ["A", "B", "A", "B"]
    images = serial[0]["images"].set_index("image_id")
    assert list(images.index) == [f"map-{k:04d}" for k in range(N)]
    assert list(images["condition"]) == conds
    # the same map under two ids gives the same rows (ids and condition aside)
    p = serial[0]["particles"]
    rows = [p[p.image_id == f"map-{k:04d}"].drop(columns=["image_id", "condition"], errors="ignore")
            .reset_index(drop=True) for k in range(N)]
    assert len(rows[0]) > 0
    pd.testing.assert_frame_equal(rows[0], rows[2])
    pd.testing.assert_frame_equal(rows[1], rows[3])


def test_serial_loop_gives_the_tables_of_describe_run_in_process(campaign, serial):
    files, conds = campaign
    ref = describe([str(f) for f in files], pixel_size_um=bc.PIXEL_SIZE_UM, condition=conds, scheduler="sync")
    assert_tables_equal(ref, serial[0])
    times = serial[1]
    assert 0 < times["kernel_s"] < times["wall_s"] and times["read_s"] > 0 and times["reduce_s"] > 0


def test_one_core_pins_this_thread_to_one_cpu_and_restores_it():
    import os

    from dask.system import cpu_count

    before = os.sched_getaffinity(0)
    with bc.one_core() as core:
        assert os.sched_getaffinity(0) == {core} and cpu_count() == 1
    assert os.sched_getaffinity(0) == before


def test_submitted_counts_the_graphs_and_tasks_a_client_sends(client):
    bc.submitted(client)  # reset
    inc = dask.delayed(lambda x: x + 1, pure=True)
    client.gather(client.compute([inc(inc(k)) for k in range(5)]))  # one graph of 10 tasks
    client.gather(client.compute(inc(100)))  # a second graph of 1 task
    assert bc.submitted(client) == {"graphs": 2, "tasks": 11}
    assert bc.submitted(client) == {"graphs": 0, "tasks": 0}


@pytest.mark.parametrize("path, chunk", [("whole", None), ("spread", 256), ("tiled", 256)])
def test_dask_runs_give_the_serial_tables_and_count_every_task_once(client, campaign, serial, path, chunk):
    files, conds = campaign
    tables, stats = bc.dask_run(client, files, conds, chunk_px=chunk, path=path)
    assert_tables_equal(serial[0], tables)
    # the scheduler's count of submitted tasks equals the workers' record of tasks run
    assert stats["tasks"] == stats["tasks_run"] > 0
    # lead and tail compare the client's clock with task times that distributed shifts by its
    # estimate of each worker's clock offset (from heartbeat round trips): on a loaded
    # machine that estimate can be off by a heartbeat's latency (-0.15 s seen), not seconds
    assert 0 < stats["compute_s"] and stats["lead_s"] >= -0.5 and stats["tail_s"] >= -0.5
    by = stats["by_prefix_s"]
    if path == "whole":
        # whole-image path: one graph, one task per image, which reads its file itself
        assert (stats["graphs"], stats["tasks"]) == (1, N)
        assert max(by, key=by.get) == "describe_whole"  # holds most of the compute time
    elif path == "spread":  # 2 × 2 tiles per image: several rounds per image
        assert stats["graphs"] >= 2 * N and stats["tasks"] > 4 * 3 * N
    else:  # N >= 2 maps per worker thread: one task per map, which reads its own tiles
        assert (stats["graphs"], stats["tasks"]) == (1, N)
        assert set(by) == {"describe_tiled"}


def test_one_tile_per_image_runs_as_the_whole_image_task(client, campaign, serial):
    files, conds = campaign
    tables, stats = bc.dask_run(client, files, conds, chunk_px=SHAPE[0], path="tiled")
    assert_tables_equal(serial[0], tables)
    assert (stats["graphs"], stats["tasks"]) == (1, N)


def test_rows_medians_ratios_and_goals_from_hand_numbers():
    ser = bc.summarise("serial", {"wall_s": 100.0, "kernel_s": 90.0, "cpu_s": 95.0}, n_images=10, workers=None)
    assert ser["images_per_hour"] == 360.0 and ser["overhead_s"] == 10.0
    stats = {"wall_s": 50.0, "tasks": 30, "graphs": 1, "compute_s": 96.0, "cpu_workers_s": 97.0,
             "cpu_client_s": 2.0}
    two = bc.summarise("whole", stats, n_images=10, workers=2)
    assert (two["tasks_per_image"], two["graphs_per_image"]) == (3.0, 0.1)
    assert two["overhead_s"] == 2.0 and two["busy"] == 0.96
    slow = bc.summarise("tiled", {**stats, "wall_s": 80.0}, n_images=10, workers=2)
    med, ratios, goals = bc.medians_and_ratios([ser, two, slow])
    assert ratios == {"serial / whole 2w": 2.0, "serial / tiled 2w": 1.25}
    assert goals["serial / whole 2w"]["met"] and not goals["serial / tiled 2w"]["met"]
    assert med["serial"]["wall_s"] == 100.0 and med["whole 2w"]["n"] == 1


def test_main_prints_the_table_and_writes_the_json(tmp_path, capsys):
    payload = bc.main(["--images", "2", "--shape", "512x512", "--radius-px", "60,90", "--distinct", "1",
                       "--workers", "1", "--paths", "whole", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "whole 1w" in out and "serial" in out and "identical" in out
    (path,) = tmp_path.glob("campaign-*.json")
    saved = json.loads(path.read_text())
    assert saved["options"]["images"] == 2 and saved["machine"]["cores_logical"] >= 1
    assert {r["variant"] for r in saved["runs"]} == {"serial", "whole"}
    assert all(r["load1_before"] is not None for r in saved["runs"])
    assert saved["medians"]["whole 1w"]["tasks_per_image"] == 1.0  # the task reads its file itself
    assert "serial / whole 1w" in saved["ratios"] and saved["goals"] == {}
    assert payload["path"] == str(path)


def test_ceiling_runs_one_pinned_serial_loop_per_core_on_its_share_of_the_files(campaign, serial):
    files, conds = campaign
    st = bc.parallel_serial_loops(files, conds, 2)
    assert sorted(st["cores"]) == sorted(os.sched_getaffinity(0))[:2]
    # each loop timed its own files: the kernels' time is split between the two loops
    assert 0 < st["kernel_s"] < 2 * st["wall_s"] and st["cpu_s"] > 0
    with pytest.raises(SystemExit, match="--ceiling: 64 loops need 64 cores"):
        bc.parallel_serial_loops(files, conds, 64)


def test_ceiling_row_has_a_ratio_but_no_goal_and_no_table_comparison(tmp_path, capsys):
    payload = bc.main(["--images", "2", "--shape", "512x512", "--radius-px", "60,90", "--distinct", "1",
                       "--workers", "2", "--paths", "whole", "--ceiling", "--out", str(tmp_path)])
    assert {r["variant"] for r in payload["runs"]} == {"serial", "ceiling", "whole"}
    assert "serial / ceiling 2w" in payload["ratios"] and "serial / whole 2w" in payload["ratios"]
    assert set(payload["goals"]) == {"serial / whole 2w"}
    assert payload["medians"]["ceiling 2w"]["tables_identical"] is None
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("ceiling 2w"))
    assert line.endswith("—")
