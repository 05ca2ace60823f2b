"""Evaluate FF3R on many scenes with the paper's protocols; one JSON per scene, tables like the paper's.

    python scripts/evaluate.py SCENE [SCENE ...] --protocol sparse-2 --protocol sparse-6 \
        --weights ff3r_ns/weights/ff3r-small --out eval/small

Each SCENE is anything ``read_scene`` reads (nerfstudio transforms.json, COLMAP, 7-Scenes/kapture, ScanNet,
ScanNet++, DL3DV-10K, a synthetic room, ...; docs/DATASETS.md) or a folder of such scenes. For every scene
and protocol the network runs once on the split's context views (``select_views``) and the
reconstruction is scored by the one protocol of ``ff3r_ns.eval.evaluate`` (the same as ``ns-eval``): Sim(3) alignment, per-target pose refinement,
PSNR/SSIM/LPIPS, mIoU/Acc (labels, and LSeg pseudo-labels with --lseg-weights), AbsRel/tau, pose error
and the forward-pass time. Results go to ``OUT/<protocol>/<scene>.json``; a scene whose JSON exists is
skipped unless --overwrite, so an interrupted run resumes where it stopped. A scene too short for a
protocol gets a JSON saying so. At the end ``OUT/tables.md`` holds Tables 1, 2 and 5 laid out as in the
paper with its numbers beside ours, a per-scene table and the reasons of every metric not computed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ff3r_ns.data.classes import CLASS_NAMES
from ff3r_ns.data.readers import read_scenes
from ff3r_ns.data.scene import SceneData
from ff3r_ns.eval.class_text import class_text
from ff3r_ns.eval.evaluate import EvalConfig, evaluate_reconstruction
from ff3r_ns.eval.prediction import predict_scene, view_size
from ff3r_ns.eval.protocol import VIEW_SETTINGS, select_views
from ff3r_ns.eval.pseudo_labels import lseg_pseudo_labeler
from ff3r_ns.eval.tables import load_records, markdown_report, scene_record
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.weights import load_ff3r_checkpoint

PROTOCOLS = tuple(setting for setting in VIEW_SETTINGS if setting != "all")
SHIPPED = Path(__file__).resolve().parents[1] / "ff3r_ns" / "weights" / "ff3r-small"
console = Console()


def evaluate_scene(
    network: FF3R,
    scene: SceneData,
    protocol: str,
    device: torch.device,
    config: EvalConfig,
    long_side: Optional[int],
    lseg_weights: Optional[str],
    text_encoder_weights: Optional[str],
    warm_up: bool,
) -> dict:
    """The metrics of one scene under one protocol (``Evaluation.summary``), or ``{"skipped": why}``."""
    centres = scene.camera_to_worlds[:, :3, 3] if scene.has_poses else None
    try:
        selection = select_views(len(scene), protocol, camera_centers=centres)
    except ValueError as error:
        return {"skipped": str(error)}
    hw = view_size(scene, selection.context, long_side or network.config.image_size, network.config.geometry.patch_size)
    prediction = predict_scene(network, scene, selection.context, hw, device, warm_up=warm_up)
    text = class_text(scene.root, text_encoder_weights, lseg_weights)
    labeler, pseudo_absent = lseg_pseudo_labeler(lseg_weights, CLASS_NAMES, device=device)
    evaluation = evaluate_reconstruction(
        prediction.reconstruction, scene, prediction.context, selection.targets, text, config,
        pseudo_labeler=labeler, pseudo_absent=pseudo_absent, console=console,
    )  # fmt: skip
    results = evaluation.summary()
    results.update(
        context_frames=selection.context, target_frames=selection.targets, image_hw=list(hw),
        gaussians=len(prediction.gaussians), num_pixel_gaussians=prediction.output.num_pixel_gaussians,
    )  # fmt: skip
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenes", nargs="+", type=Path, help="scenes, or folders of scenes")
    parser.add_argument("--protocol", action="append", choices=PROTOCOLS, default=None,
                        help="a split of the paper (repeatable; default sparse-2)")  # fmt: skip
    parser.add_argument("--weights", default=str(SHIPPED), help="FF3R checkpoint folder (default: the shipped ff3r-small)")
    parser.add_argument("--out", type=Path, required=True, help="folder of the per-scene JSONs and tables.md")
    parser.add_argument("--overwrite", action="store_true", help="evaluate scenes whose JSON exists again")
    parser.add_argument("--pose-steps", type=int, default=EvalConfig.pose_steps, help="target-pose refinement steps")
    parser.add_argument("--pose-lr", type=float, default=EvalConfig.pose_lr, help="target-pose refinement learning rate")
    parser.add_argument("--lpips-weights", default=None, help="torchvision vgg16-397923af.pth for LPIPS")
    parser.add_argument("--lseg-weights", default=None, help="LSeg's demo_e200.ckpt for the pseudo-label mIoU")
    parser.add_argument("--text-encoder-weights", default="openai",
                        help="CLIP ViT-B/32 weights for the class prompts of real scenes (LSeg's checkpoint works too)")  # fmt: skip
    parser.add_argument("--image-long-side", type=int, default=None, help="long side of the views (default: the network's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--title", default=None, help="title of tables.md (default: the weights)")
    parser.add_argument("--labels-tsv", type=Path, default=None,
                        help="ScanNet's scannetv2-labels.combined.tsv, when it is not in a scene folder or above it")
    args = parser.parse_args(argv)
    protocols = args.protocol or ["sparse-2"]
    device = torch.device(args.device)
    config = EvalConfig(pose_steps=args.pose_steps, pose_lr=args.pose_lr, lpips_weights=args.lpips_weights, progress=False)

    scenes = [scene for path in args.scenes for scene in read_scenes(path, labels_tsv=args.labels_tsv)]
    names = [scene.name for scene in scenes]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SystemExit(f"scene names must be unique (they name the JSON files), these repeat: {duplicates}")
    jobs = [(scene, protocol) for protocol in protocols for scene in scenes]
    network: Optional[FF3R] = None
    warmed = False
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task("Scenes", total=len(jobs))
        for scene, protocol in jobs:
            path = args.out / protocol / f"{scene.name}.json"
            progress.update(task, description=f"{protocol} {scene.name}")
            if path.is_file() and not args.overwrite:
                progress.console.print(f"{protocol} {scene.name}: done before ({path}), skipped")
                progress.advance(task)
                continue
            if network is None:
                network = load_ff3r_checkpoint(args.weights)
            start = time.perf_counter()
            results = evaluate_scene(
                network, scene, protocol, device, config, args.image_long_side, args.lseg_weights,
                args.text_encoder_weights, warm_up=not warmed,
            )  # fmt: skip
            warmed = warmed or "skipped" not in results
            seconds = time.perf_counter() - start
            if "skipped" in results:
                record = {"scene": scene.name, "path": str(scene.root), "protocol": protocol, **results}
            else:
                record = scene_record(
                    scene.name, str(scene.root), protocol, results, weights=str(args.weights), device=str(device),
                    scene_seconds=seconds,
                )  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=2) + "\n")
            summary = results.get("skipped") or f"PSNR {results.get('psnr', float('nan')):.2f}, {seconds:.1f} s"
            progress.console.print(f"{protocol} {scene.name}: {summary}")
            progress.advance(task)
    records = load_records(args.out)
    tables = args.out / "tables.md"
    tables.write_text(markdown_report(records, args.title or f"FF3R evaluation, weights {args.weights}"))
    console.print(f"Tables: {tables}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
