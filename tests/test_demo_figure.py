"""``scripts/demo_figure.py``: the picture of what an ``ns-train ff3r`` run made, on the tiny room of
``runs.py`` (session fixtures: the run, its ``ns-eval`` JSON, the loaded pipeline)."""

from __future__ import annotations

import json
import subprocess
import sys

import matplotlib.image
import numpy as np
import pytest
import torch
from runs import ENV, REPO, load_script, run_command

pytestmark = pytest.mark.slow


def test_held_out_rows_are_rendered_at_ns_evals_refined_poses(pipeline, evaluation):
    from ff3r_ns.data.views import load_views
    from ff3r_ns.ns.dataparsers import opencv_cameras

    figure = load_script("demo_figure")
    results = json.loads(evaluation.read_text())["results"]
    rows = figure.target_rows(pipeline, 3, results)
    targets = pipeline.selection.targets
    assert len(rows) == len(targets) == 2  # 3 asked, the run holds out 2

    hw = tuple(int(v) for v in pipeline.state.image_hw)
    views = load_views(pipeline.datamanager.scene, targets, hw, labels=True)
    K = pipeline.datamanager.eval_dataset.cameras.get_intrinsics_matrices()
    refined = torch.tensor(results["refined_target_c2w"])
    for j, row in enumerate(rows):
        assert f"frame {targets[j]}" in row.title and "refined pose" in row.title and "PSNR" in row.title
        np.testing.assert_array_equal(row.photo, views.images[j].permute(1, 2, 0).numpy())
        np.testing.assert_array_equal(row.labels, views.labels[j].numpy())
        with torch.no_grad():
            at_refined = pipeline.model.get_outputs_for_camera(opencv_cameras(refined[j : j + 1], K[j : j + 1], *hw))
            unrefined = opencv_cameras(views.camera_to_worlds[j : j + 1], K[j : j + 1], *hw)
            at_unrefined = pipeline.model.get_outputs_for_camera(unrefined)
        np.testing.assert_allclose(row.outputs["rgb"], at_refined["rgb"].numpy(), atol=1e-6)
        if not torch.allclose(refined[j], views.camera_to_worlds[j].float(), atol=1e-4):
            assert not np.allclose(row.outputs["rgb"], at_unrefined["rgb"].numpy(), atol=1e-4)


def test_the_figure_has_a_row_per_view_and_refuses_another_runs_eval(reconstruction, evaluation, tmp_path):
    figure = load_script("demo_figure")
    run, _ = reconstruction
    out = tmp_path / "result.png"
    output = run_command(
        "scripts/demo_figure.py", "--load-config", str(run / "config.yml"), "--eval-json", str(evaluation),
        "--output", str(out), "--views", "3", "--context-views", "1",
    )  # fmt: skip
    assert f"wrote {out}" in output
    image = matplotlib.image.imread(out)
    rows, columns = 2 + 1, 6  # both held-out frames, one context view
    expected = (round((figure.PANEL_INCHES * rows + 1.3) * figure.DPI), round(figure.PANEL_INCHES * columns * figure.DPI))
    assert image.shape[:2] == expected
    assert image[..., :3].std() > 0.05  # panels, not a blank page

    # An eval JSON of another run (one refined pose for two held-out frames): a message, no picture.
    other = json.loads(evaluation.read_text())
    other["results"]["refined_target_c2w"] = other["results"]["refined_target_c2w"][:1]
    (tmp_path / "other.json").write_text(json.dumps(other))
    command = [sys.executable, str(REPO / "scripts" / "demo_figure.py"), "--load-config", str(run / "config.yml"),
               "--eval-json", str(tmp_path / "other.json"), "--output", str(tmp_path / "other.png")]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "belongs to another run" in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "other.png").exists()

    missing = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo_figure.py"), "--load-config", str(tmp_path / "nope.yml"),
         "--output", str(tmp_path / "x.png")],
        cwd=REPO, env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 2 and "nope.yml does not exist" in missing.stderr
