"""The Dask dashboard's address is printed when `run` or `describe` starts or reaches a
cluster whose scheduler serves one (with bokeh installed where the scheduler runs)."""

from __future__ import annotations

import re
import urllib.request

import pytest

from cathodeflow.study.cluster import dashboard_link, scheduler_context

pytest.importorskip("bokeh", reason="the Dask dashboard needs bokeh (pip install 'cathodeflow[dashboard]')")


def test_a_local_cluster_announces_a_dashboard_that_answers():
    lines = []
    with scheduler_context("local", announce=lines.append) as client:
        assert len(lines) == 1
        m = re.fullmatch(r"Dask dashboard: (http://127\.0\.0\.1:\d+/status)", lines[0])
        assert m, lines
        assert m.group(1) == dashboard_link(client)
        with urllib.request.urlopen(m.group(1), timeout=30) as r:  # the page is served
            assert r.status == 200


def test_without_announce_or_without_a_cluster_nothing_is_said():
    lines = []
    with scheduler_context("threads", announce=lines.append) as client:
        assert client is None and dashboard_link(client) is None
    assert lines == []


def test_cli_run_prints_the_dashboard_line_first(tmp_path, capsys):
    from cathodeflow.cli import main

    assert main(["synth-mosaic", "--store", str(tmp_path / "s.zarr"), "--megapixels", "0.3", "--tiles", "1",
                 "--tile-px", "130"]) == 0
    capsys.readouterr()
    assert main(["run", "--store", str(tmp_path / "s.zarr"), "--scheduler", "local"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"Dask dashboard: http://127\.0\.0\.1:\d+/status", err[0]), err
