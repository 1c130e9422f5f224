"""The HTML report opens in a real headless browser (Debian's chromium, driven over the
Chrome DevTools protocol): every figure decodes (naturalWidth > 0), nothing is fetched from
outside the page for the figures, no console error. Skipped when chromium is missing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from cathodeflow.config import Params
from cathodeflow.io.sem import write_tiff
from cathodeflow.report.build import FIGURES, report_store
from cathodeflow.study.pipeline import ingest, run_study
from cathodeflow.synth import generate_image

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
SCREENSHOT = Path("/tmp/report_screenshot.png")
SMALL = dict(shape_lr=(104, 156), r10_um=0.6, r50_um=0.8, r90_um=1.0, crack_intensity_per_um2=1.5)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed "
                                "(Debian: apt-get install -y chromium)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A baseline study of 3 small images (20C: 2, 50C: 1), its report moved to a folder of
    its own with only index.html, so that the page must carry its figures itself."""
    tmp = tmp_path_factory.mktemp("study")
    store = tmp / "s.zarr"
    for k, (cond, n) in enumerate([("20C", 2), ("50C", 1)]):
        for j in range(n):
            im = generate_image(cond, seed=10 * k + j, image_id=f"{cond}_{j}", **SMALL)
            path = tmp / f"{im.image_id}.tif"
            write_tiff(path, im.lr, pixel_size_um=im.pixel_size_lr_um)
            ingest([path], store=store, condition=cond)
    run_study(store, params=Params(marker_radius_um=0.143), scheduler="sync")
    index = report_store(store, tmp / "report")
    alone = tmp / "alone"
    alone.mkdir()
    shutil.copy(index, alone / "index.html")
    return alone / "index.html"


class DevTools:
    """A minimal Chrome DevTools protocol client over one page's websocket."""

    def __init__(self, ws_url: str):
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 30.0) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for e in self.events:
                if e.get("method") == event:
                    return e
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(event)


@pytest.fixture
def browser(tmp_path):
    pytest.importorskip("websocket", reason="websocket-client not installed (pip install websocket-client)")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--remote-debugging-port=0", f"--user-data-dir={tmp_path / 'profile'}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        end = time.monotonic() + 60
        while port is None and time.monotonic() < end:
            line = proc.stderr.readline()
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = int(m.group(1)) if m else None
            if not line and proc.poll() is not None:
                break
        if port is None:
            pytest.fail("chromium did not start its DevTools endpoint")
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        page = next(p for p in pages if p.get("type") == "page")
        tools = DevTools(page["webSocketDebuggerUrl"])
        yield tools
        tools.ws.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_report_renders_alone_in_chromium_with_every_figure_and_no_console_error(report, browser):
    html = report.read_text()
    for name in FIGURES:  # the figures are in the page, not beside it
        assert f'alt="{name}"' in html and not (report.parent / name).exists()
    for domain in ("Runtime", "Log", "Page"):
        browser.call(f"{domain}.enable")
    browser.call("Emulation.setDeviceMetricsOverride", width=1200, height=1800,
                 deviceScaleFactor=1, mobile=False)
    browser.call("Page.navigate", url=report.as_uri())
    browser.wait_for("Page.loadEventFired")
    images = json.loads(browser.call(
        "Runtime.evaluate", returnByValue=True,
        expression="JSON.stringify(Array.from(document.images).map("
                   "i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight]))")["result"]["value"])
    by_alt = {alt: (done, w, h) for alt, done, w, h in images}
    # the four figures and one thumbnail per image, each decoded to a real bitmap
    assert set(by_alt) == set(FIGURES) | {"20C_0", "20C_1", "50C_0"}
    for alt, (done, w, h) in by_alt.items():
        assert done and w > 100 and h > 100, (alt, w, h)
    text = browser.call("Runtime.evaluate", returnByValue=True,
                        expression="document.body.innerText")["result"]["value"]
    assert "Table 1" in text and "Provenance" in text and "n = 1 (undefined)" in text
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    shot = browser.call("Page.captureScreenshot", format="png")["data"]
    import base64

    SCREENSHOT.write_bytes(base64.b64decode(shot))
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    errors = [e for e in browser.events
              if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
