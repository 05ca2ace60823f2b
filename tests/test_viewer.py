"""The viewer the way a user sees it: ``ns-viewer --load-config RUN/config.yml`` in headless Chromium.

An ``ns-train ff3r`` run of a generated room (read as an unposed image folder) with a tiny random
network is opened in ``ns-viewer`` on a free port of 127.0.0.1; Chromium, driven through its DevTools
protocol, loads the page and waits until the viewer has received a render. The page must show the
scene (the viewport holds the rendered Gaussians and the cameras' image frustums, not viser's empty
canvas) and FF3R's own controls. Set ``FF3R_VIEWER_SCREENSHOT=PATH`` to keep the screenshot, and
``FF3R_VIEWER_RUN=RUN_FOLDER`` to show an existing run.

Needs the Debian package ``chromium``; skipped with the reason where it is absent.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ff3r_ns.data.synthetic import RoomConfig, write_scene
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.weights import save_ff3r_checkpoint

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
CHROMIUM = next(
    (path for name in ("chromium", "chromium-browser", "google-chrome") if (path := shutil.which(name))), None
)
WINDOW = (1400, 900)
PANEL_WIDTH = 340
"""Width of the viewer's control panel on the right; the 3D viewport is left of it, below the 60 px header."""
TIMEOUT = 120.0
"""Seconds to wait for the viewer to start, and again for its first render to reach the page."""
SETTLE = 30.0
"""Seconds to wait, once a render shows, for the viewer's full-resolution render."""
FULL_RESOLUTION = 400
"""Long side (px) taken as the viewer's full-resolution render (its default Max res is 512)."""
ZOOM_OUT_EVENTS = 5
"""Mouse-wheel steps per zoom-out while the viewport shows nothing yet."""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="headless Chromium is not installed (Debian package `chromium`; scripts/setup.sh installs it as root)",
    ),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(process: subprocess.Popen) -> None:
    """Ends a process this test started, with the children of its session (Chromium's renderers)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class DevTools:
    """Just enough of the Chrome DevTools protocol: navigate, evaluate, screenshot."""

    def __init__(self, profile: Path) -> None:
        from websockets.sync.client import connect

        self.process = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "about:blank",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (active.is_file() and active.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                stop(self.process)
                raise RuntimeError(f"Chromium did not open its DevTools port (exit code {self.process.poll()})")
            time.sleep(0.1)
        port = int(active.read_text().split()[0])
        pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        url = next(page["webSocketDebuggerUrl"] for page in pages if page["type"] == "page")
        self.socket = connect(url, max_size=None, open_timeout=10)
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def text(self) -> str:
        result = self.call(
            "Runtime.evaluate", expression="document.body ? document.body.innerText : ''", returnByValue=True
        )
        return result["result"].get("value", "")

    def screenshot(self) -> Image.Image:
        data = base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])
        return Image.open(io.BytesIO(data)).convert("RGB")

    def close(self) -> None:
        self.socket.close()
        stop(self.process)


def viewport(image: Image.Image) -> np.ndarray:
    """The 3D viewport's pixels (left of the control panel, below the header)."""
    return np.asarray(image, dtype=np.float64)[60:-10, : image.width - PANEL_WIDTH]


def shows_a_render(image: Image.Image) -> bool:
    """The viewport holds structured content: not viser's empty canvas, not one flat colour."""
    pixels = viewport(image)
    return pixels.std() > 15 and len(np.unique(pixels.reshape(-1, 3).round(-1), axis=0)) > 20


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """``ns-train ff3r`` on the images of a generated room, as an unposed folder.

    ``FF3R_VIEWER_RUN=RUN_FOLDER`` serves an existing run instead (e.g. the demo's, for docs/viewer.png).
    """
    if os.environ.get("FF3R_VIEWER_RUN"):
        return Path(os.environ["FF3R_VIEWER_RUN"]).resolve()
    root = tmp_path_factory.mktemp("viewer")
    write_scene(root / "room", RoomConfig(seed=1, num_views=8, image_size=64, shadows=False))
    torch.manual_seed(0)
    network = FF3R.from_preset("tiny")
    with torch.no_grad():
        # Random weights leave the camera head's field of view at ~0 (a needle of a scene); start it near
        # 70 degrees so that the untrained network's pixel-aligned Gaussians span the view.
        network.camera_head.pose_branch.fc2.bias[7:9] = 0.6
    weights = save_ff3r_checkpoint(network, root / "weights")
    command = [
        str(BIN / "ns-train"), "ff3r", "--data", str(root / "room" / "images"), "--pipeline.weights", str(weights),
        "--output-dir", str(root / "outputs"), "--timestamp", "run",
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return root / "outputs" / "images" / "ff3r" / "run"


@pytest.fixture
def viewer(run, tmp_path):
    """``ns-viewer`` serving the run on a free port; yields its URL."""
    port = free_port()
    log = open(tmp_path / "viewer.log", "w")
    process = subprocess.Popen(
        [
            str(BIN / "ns-viewer"), "--load-config", str(run / "config.yml"), "--viewer.websocket-host", "127.0.0.1",
            "--viewer.websocket-port", str(port),
        ],  # fmt: skip
        cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"ns-viewer exited with {process.returncode}:\n{(tmp_path / 'viewer.log').read_text()[-6000:]}"
                )
            try:
                urllib.request.urlopen(url, timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"ns-viewer did not serve {url} in {TIMEOUT:.0f} s")
                time.sleep(0.5)
        yield url
    finally:
        stop(process)
        log.close()


def test_viewer_shows_the_scene_and_ff3r_controls(viewer, tmp_path):
    browser = DevTools(tmp_path / "chromium-profile")
    try:
        browser.call("Page.enable")
        browser.call(
            "Emulation.setDeviceMetricsOverride", width=WINDOW[0], height=WINDOW[1], deviceScaleFactor=1, mobile=False
        )
        browser.call("Page.navigate", url=viewer)
        deadline, text, image = time.monotonic() + TIMEOUT, "", None
        while time.monotonic() < deadline:
            time.sleep(1.0)
            text = browser.text()
            resolution = re.search(r"Resolution: (\d+)\D(\d+)px", text)
            if resolution and min(int(resolution.group(1)), int(resolution.group(2))) > 0:
                image = browser.screenshot()
                if shows_a_render(image):
                    break
                # viser's start camera sits among the cameras; zoom out (mouse wheel) as a user would.
                for _ in range(ZOOM_OUT_EVENTS):
                    browser.call("Input.dispatchMouseEvent", type="mouseWheel", x=400, y=400, deltaX=0, deltaY=300)
        # Let a full-resolution render replace the first, coarse one (a few seconds for ~10^6 Gaussians on a CPU).
        settle = time.monotonic() + SETTLE
        while time.monotonic() < settle:
            time.sleep(1.0)
            resolution = re.search(r"Resolution: (\d+)\D(\d+)px", browser.text())
            if resolution and max(int(resolution.group(1)), int(resolution.group(2))) >= FULL_RESOLUTION:
                time.sleep(1.0)  # the page shows the new size as the render arrives
                break
        text, image = browser.text(), browser.screenshot()
    finally:
        browser.close()
    image.save(tmp_path / "viewer.png")
    if os.environ.get("FF3R_VIEWER_SCREENSHOT"):
        image.save(os.environ["FF3R_VIEWER_SCREENSHOT"])

    assert "Connected" in text, text[:2000]
    assert re.search(r"Resolution: [1-9]\d*\D[1-9]\d*px", text), f"no render reached the page:\n{text[:2000]}"
    # FF3R's viewer controls (ViewerText on FF3RModel) under nerfstudio's custom elements.
    assert "Relevancy query" in text and "Segmentation labels" in text, text
    assert shows_a_render(image), f"the viewport shows no scene; screenshot in {tmp_path / 'viewer.png'}"
