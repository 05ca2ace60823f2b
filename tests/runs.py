"""An ``ns-train ff3r`` run on a tiny room, shared by the tests of the commands that read runs (ns-eval, ns-render,
ns-export, the scripts): one session-scoped run, evaluation and loaded pipeline, registered in conftest.py."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ff3r_ns.data.synthetic import RoomConfig, write_scene
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.weights import save_ff3r_checkpoint

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}
ROOM_VIEWS, ROOM_SIZE = 12, 64
HOLDOUT = 6
"""Frames 3 and 9 of the 12-view room are held out as targets."""


def load_script(name: str):
    """``scripts/NAME.py`` imported as module ``NAME`` (registered in sys.modules, where its dataclasses look)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_command(*args: str, timeout: float = 300) -> str:
    """Runs an installed command (ns-train, ...) or a script; returns stdout + stderr, failing with them."""
    program = str(BIN / args[0]) if not args[0].endswith(".py") else sys.executable
    command = [program, *args[1:]] if not args[0].endswith(".py") else [program, *args]
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{output[-6000:]}"
    return output


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_ff3r_checkpoint(FF3R.from_preset("tiny"), tmp_path_factory.mktemp("weights") / "tiny")


@pytest.fixture(scope="session")
def room(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("room") / "room"
    # The loop across the room (views 30 deg apart): the Sim(3) move of the prediction onto the true cameras is
    # well posed. A video room's 12 frames span a few centimetres, so a random network's prediction can land
    # anywhere, and ns-render's spiral around a held-out view then sees no Gaussian (empty frames, CI at 57d2d11).
    config = RoomConfig(seed=0, num_views=ROOM_VIEWS, image_size=ROOM_SIZE, shadows=False, trajectory="loop", fov_deg=70.0)
    write_scene(out, config)
    return out


@pytest.fixture(scope="session")
def reconstruction(room, tiny_weights, tmp_path_factory) -> tuple[Path, str]:
    """``ns-train ff3r`` on the room: (run folder, console output)."""
    outputs = tmp_path_factory.mktemp("outputs")
    output = run_command(
        "ns-train", "ff3r", "--data", str(room), "--pipeline.weights", str(tiny_weights), "--output-dir", str(outputs),
        "--timestamp", "run", "--pipeline.holdout-every", str(HOLDOUT), "--pipeline.refine-steps", "2",
        "--pipeline.eval-pose-steps", "10",
    )  # fmt: skip
    return outputs / "room" / "ff3r" / "run", output


@pytest.fixture(scope="session")
def evaluation(reconstruction, tmp_path_factory) -> Path:
    """``ns-eval`` on the run: its output JSON."""
    run, _ = reconstruction
    out = tmp_path_factory.mktemp("eval") / "eval.json"
    run_command("ns-eval", "--load-config", str(run / "config.yml"), "--output-path", str(out))
    return out


@pytest.fixture(scope="session")
def pipeline(reconstruction):
    """The run's pipeline loaded as ns-eval, ns-render and the scripts load it."""
    from nerfstudio.utils.eval_utils import eval_setup

    run, _ = reconstruction
    _, pipeline, _, _ = eval_setup(run / "config.yml", test_mode="test")
    return pipeline
