"""Picture of what an ``ns-train ff3r`` run made: held-out views as photo, render, depth, segmentation for the
class words, ground-truth labels and a text query's relevancy, with the metrics in the titles.

    python scripts/demo_figure.py --load-config RUN/config.yml --eval-json RUN/eval.json --output result.png

Held-out targets are placed as ``ns-eval`` placed them: with ``--eval-json`` (the file ``ns-eval --output-path``
wrote) at its refined target poses (``refined_target_c2w``: the scene's pose in the run's Sim(3)-aligned frame,
then the photometric refinement), and the title carries its scene-level metrics; without it, at the scene's
poses unrefined. A last row shows a context view rendered from its predicted camera (``--context-views 0``
drops it), for what the network reproduces of its own input. Row titles give PSNR/SSIM of the render shown
and the mIoU of its segmentation against the scene's labels (``ff3r_ns.eval.metrics``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

PANEL_INCHES = 2.1
"""Side of one image panel in the figure."""
DPI = 90
"""Resolution of the PNG (a 6 x 4 grid of 224 px views comes out about 1.2k px wide)."""


@dataclass
class Row:
    """One view of the figure: what was shown to the camera and what the run rendered there."""

    title: str
    photo: np.ndarray  # [h, w, 3] in [0, 1]
    labels: Optional[np.ndarray]  # [h, w] class ids, 0 = none
    outputs: dict[str, np.ndarray]  # the model's outputs, [h, w, c]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of an ns-train ff3r run")
    parser.add_argument("--output", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--eval-json", type=Path, default=None, help="ns-eval's output for this run (refined poses)")
    parser.add_argument("--views", type=int, default=3, help="held-out views shown (evenly spaced among the targets)")
    parser.add_argument("--context-views", type=int, default=1, help="context views shown after them")
    parser.add_argument("--query", default="bed", help="text query of the relevancy column")
    args = parser.parse_args(argv)
    if not args.load_config.is_file():
        parser.error(f"{args.load_config} does not exist; pass the config.yml of an ns-train ff3r run")
    if args.eval_json is not None and not args.eval_json.is_file():
        parser.error(f"{args.eval_json} does not exist; write it with ns-eval --load-config CONFIG --output-path FILE")
    if args.views < 0 or args.context_views < 0 or args.views + args.context_views == 0:
        parser.error("--views and --context-views must be >= 0, and show at least one view together")

    # nerfstudio imports take seconds: only after the arguments are known to be fine.
    from nerfstudio.utils.eval_utils import eval_setup

    from ff3r_ns.ns.model import FF3RModel

    config, pipeline, _, _ = eval_setup(args.load_config, test_mode="test")
    if not isinstance(pipeline.model, FF3RModel):
        parser.error(f"{args.load_config} is a {config.method_name} run; this script shows ns-train ff3r runs")
    results = json.loads(args.eval_json.read_text())["results"] if args.eval_json is not None else None
    pipeline.model.relevancy_query.value = args.query
    try:
        rows = target_rows(pipeline, args.views, results) + context_rows(pipeline, args.context_views)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    report = json.loads((config.get_base_dir() / "reconstruction.json").read_text())
    draw(rows, pipeline, args.query, suptitle(report, results, pipeline), args.output)
    print(f"wrote {args.output}")
    return 0


def render_row(pipeline, cameras, title: str, photo: torch.Tensor, labels: Optional[torch.Tensor]) -> Row:
    """Renders ``cameras`` (one) and scores the render against ``photo`` [3, h, w] and ``labels`` [h, w]."""
    from ff3r_ns.eval.metrics import psnr, segmentation_metrics, ssim

    with torch.no_grad():
        outputs = pipeline.model.get_outputs_for_camera(cameras.to(pipeline.device))
    rgb = outputs["rgb"].permute(2, 0, 1).cpu()
    title += f"\nPSNR {float(psnr(rgb, photo)):.1f} dB, SSIM {float(ssim(rgb[None], photo[None])[0]):.2f}"
    if labels is not None and "segmentation_ids" in outputs and bool((labels > 0).any()):
        predicted = outputs["segmentation_ids"][..., 0].long().cpu() + 1  # label index i is class id i + 1
        title += f", mIoU {segmentation_metrics(predicted, labels)['miou']:.2f}"
    return Row(
        title=title,
        photo=photo.permute(1, 2, 0).numpy(),
        labels=None if labels is None else labels.numpy(),
        outputs={key: value.cpu().numpy() for key, value in outputs.items() if value.ndim == 3},
    )


def target_rows(pipeline, count: int, results: Optional[dict]) -> list[Row]:
    """Up to ``count`` held-out targets, at ns-eval's refined poses where ``results`` has them."""
    from ff3r_ns.data.views import load_views
    from ff3r_ns.ns.dataparsers import opencv_cameras

    targets = pipeline.selection.targets
    if count == 0 or not targets:
        return []
    hw = tuple(int(v) for v in pipeline.state.image_hw)
    views = load_views(pipeline.datamanager.scene, targets, hw, labels=True)
    poses, placed = views.camera_to_worlds, "at the scene's pose, unrefined"
    if results is not None and "refined_target_c2w" in results:
        poses, placed = torch.tensor(results["refined_target_c2w"]), "at ns-eval's refined pose"
        if len(poses) != len(targets):
            raise ValueError(
                f"the eval JSON has {len(poses)} refined target poses, the run holds out {len(targets)} frames: "
                "it belongs to another run; run ns-eval on this one again"
            )
    K = pipeline.datamanager.eval_dataset.cameras.get_intrinsics_matrices()  # what ns-eval used
    shown = np.unique(np.linspace(0, len(targets) - 1, min(count, len(targets))).round().astype(int))
    return [
        render_row(
            pipeline,
            opencv_cameras(poses[j : j + 1], K[j : j + 1], *hw),
            f"held-out frame {targets[j]}\n{placed}",
            views.images[j],
            None if views.labels is None else views.labels[j],
        )
        for j in shown
    ]


def context_rows(pipeline, count: int) -> list[Row]:
    """Up to ``count`` context views, rendered from their predicted cameras."""
    context, cameras = pipeline.datamanager.context, pipeline.datamanager.train_dataset.cameras
    shown = np.unique(np.linspace(0, len(context) - 1, min(count, len(context))).round().astype(int))
    return [
        render_row(
            pipeline,
            cameras[int(i) : int(i) + 1],
            f"context frame {context.indices[i]} (an input)\nfrom its predicted camera",
            context.images[i],
            None if context.labels is None else context.labels[i],
        )
        for i in shown
    ]


def suptitle(report: dict, results: Optional[dict], pipeline) -> str:
    """What was reconstructed, how fast, and ns-eval's scene-level metrics where given."""
    weights = Path(report["weights"]).name
    scene = Path(report["scene"]).name
    lines = [
        f"FF3R ({weights}) on {scene}: {len(report['context_frames'])} context views of "
        f"{report['image_hw'][1]}x{report['image_hw'][0]} -> {report['gaussians']:,} Gaussians in one "
        f"{report['forward_seconds']:.1f} s forward pass ({report['device']})"
    ]
    if results is None:
        lines.append("no ns-eval results given (--eval-json): metrics of the shown views only")
        return "\n".join(lines)
    names = {
        "psnr": "PSNR {:.2f} dB",
        "ssim": "SSIM {:.3f}",
        "lpips": "LPIPS {:.3f}",
        "miou": "mIoU {:.3f}",
        "accuracy": "acc. {:.3f}",
        "depth_abs_rel": "depth AbsRel {:.3f}",
        "pose_rotation_deg_mean": "cameras {:.1f} deg off after Sim(3)",
    }
    found = [text.format(results[key]) for key, text in names.items() if isinstance(results.get(key), float)]
    steps = pipeline.config.eval_pose_steps
    lines.append(
        f"ns-eval over {results.get('num_target_views', 0)} held-out views ({steps} pose-refinement steps each): "
        + ", ".join(found)
    )
    return "\n".join(lines)


def draw(rows: list[Row], pipeline, query: str, title: str, output: Path) -> None:
    """The grid: one row per view, one column per output, the class legend below."""
    from ff3r_ns.ns.model import label_palette, parse_prompts

    labels = parse_prompts(pipeline.model.segmentation_labels.value)
    palette = label_palette(len(labels)).numpy()
    columns = ["photo", "render", "depth (rendered)", "segmentation (class words)", "labels (ground truth)",
               f'relevancy "{query}"']  # fmt: skip
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(PANEL_INCHES * len(columns), PANEL_INCHES * len(rows) + 1.3), squeeze=False
    )
    for r, row in enumerate(rows):
        out = row.outputs
        alpha = out["accumulation"][..., 0]
        depth = np.ma.masked_where(alpha < 0.5, out["depth"][..., 0])
        gt = None
        if row.labels is not None:
            colours = np.concatenate([np.zeros((1, 3)), palette])  # id 0 (no label) is black
            gt = colours[np.clip(row.labels, 0, len(labels))]
        panels = [row.photo, out["rgb"], depth, out.get("segmentation"), gt, out.get("relevancy")]
        for c, (ax, image) in enumerate(zip(axes[r], panels)):
            ax.set_xticks([])
            ax.set_yticks([])
            if image is None:
                ax.text(0.5, 0.5, "not available", ha="center", va="center", transform=ax.transAxes, fontsize=8)
            elif c == 2:
                ax.imshow(image, cmap="turbo")
            elif c == 5:
                ax.imshow(image[..., 0], cmap="turbo", vmin=0.0, vmax=1.0)
            else:
                ax.imshow(np.clip(image, 0, 1))
            if r == 0:
                ax.set_title(columns[c], fontsize=10)
        axes[r][0].set_ylabel(row.title, fontsize=7.5)
    handles = [Patch(color=palette[i], label=name) for i, name in enumerate(labels)]
    fig.legend(handles=handles, loc="lower center", ncol=len(labels), fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=DPI)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
