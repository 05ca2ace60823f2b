"""Evaluate FF3R networks on held-out synthetic rooms: views, depth, cameras and semantics.

    python scripts/evaluate_synthetic.py data/rooms/eval --model trained=runs/.../ff3r --init small \
        --json eval.json [--views 8] [--gap 4 | --gap widest] [--pose-steps 100]

Protocol (per room): the one of ``ff3r_ns.eval.evaluate``, which ``ns-eval`` and ``scripts/evaluate.py`` use.

- views: ``sparse_split(num_frames, --views, stride=--gap)``: context views ``2 * gap`` frames apart with the
  frame halfway between each pair a novel-view target (``--gap`` frames from its neighbours). The default, 4,
  fits the video rooms (8 context views 8 frames apart: about 13 cm and 7 degrees between neighbours, 57
  frames in all; docs/TRAINING.md, "Camera trajectories"); ``--gap widest`` spreads the views over the whole
  path (the loop rooms' protocol), center-cropped and resized to the network's size;
- the network reconstructs the context views in one pass; the prediction is moved into the room's frame by
  the Sim(3) (Umeyama on camera centres) that maps the predicted context cameras onto the true ones;
- context: rendered back with the *predicted* cameras, PSNR / SSIM against the inputs; depth: the depth
  head's maps against the ground truth (per-image scale and shift, AbsRel and inlier ratio at 1.03);
  cameras: rotation and centre errors after the Sim(3);
- novel views: each target placed at its true pose, refined photometrically with the Gaussians frozen
  (``--pose-steps`` Adam steps; 0: none), then PSNR / SSIM (LPIPS where its backbone is on disk);
- semantics: every rendered pixel takes the class whose embedding (``class_embeddings()``, the rooms'
  "text" queries) has the largest cosine with the lifted feature; mIoU and accuracy over the 8 classes on
  the novel views. The 2D stand-in teacher's own features, scored the same way on the context views (at
  their half resolution), are the reference that training distills.

Beside the models, a **constant-pose baseline** row (``ff3r_ns.eval.baselines``): every non-reference
camera at the mean relative pose of the evaluated rooms' context views, scored like a prediction. A camera
head that does not beat it has learned nothing about relative motion.

Every number is the mean over rooms.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ff3r_ns.data.readers import read_scenes
from ff3r_ns.data.sampling import sparse_split
from ff3r_ns.data.views import load_views
from ff3r_ns.eval.baselines import constant_pose_errors
from ff3r_ns.eval.class_text import class_text
from ff3r_ns.eval.evaluate import EvalConfig, evaluate_reconstruction
from ff3r_ns.eval.metrics import segmentation_metrics
from ff3r_ns.eval.prediction import predict_scene
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.weights import load_ff3r_checkpoint

BASELINE = "constant pose (dataset mean)"
"""Name of the baseline row."""


def _gap(text: str) -> int | None:
    """``--gap``: a positive number of frames, or "widest" (None: the widest span that fits)."""
    if text == "widest":
        return None
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--gap takes a positive number of frames or 'widest', got {text!r}")
    return int(text)


def split(scene, num_views: int, gap) -> tuple[list[int], list[int]]:
    return sparse_split(len(scene), num_views, stride=gap)


def teacher_segmentation(scene, context: list[int], size: int, embeddings: torch.Tensor) -> dict[str, float]:
    """mIoU / accuracy of the stored 2D teacher features on the context views, at their half resolution."""
    views = load_views(scene, context, size, labels=True, features=True)
    half = F.interpolate(views.labels[:, None].float(), size=views.features.shape[-2:], mode="nearest")[:, 0].long()
    scores = torch.einsum("nchw,kc->nkhw", F.normalize(views.features, dim=1), F.normalize(embeddings, dim=1))
    return segmentation_metrics(scores.argmax(dim=1) + 1, half)


def evaluate_room(network: FF3R, scene, device: torch.device, args, warm_up: bool) -> dict[str, float]:
    size = network.config.image_size
    context, targets = split(scene, args.views, args.gap)
    prediction = predict_scene(network, scene, context, (size, size), device, warm_up=warm_up)
    text = class_text(scene.root)
    config = EvalConfig(pose_steps=args.pose_steps, lpips_weights=args.lpips_weights, progress=False)
    results = evaluate_reconstruction(prediction.reconstruction, scene, prediction.context, targets, text, config)
    row = {key: value for key, value in results.summary().items() if isinstance(value, float)}
    teacher = teacher_segmentation(scene, context, size, text.embeddings)
    row.update(teacher_miou=teacher["miou"], teacher_acc=teacher["accuracy"], gaussians=float(len(prediction.gaussians)))
    return row


def evaluate(network: FF3R, scenes, device: torch.device, args) -> dict[str, float]:
    network = network.to(device).eval()
    rows = [evaluate_room(network, scene, device, args, warm_up=i == 0) for i, scene in enumerate(scenes)]
    return {key: float(np.mean([row[key] for row in rows if key in row])) for key in rows[0]}


def baseline(scenes, args) -> dict[str, float]:
    """The constant-pose baseline's pose errors, mean over rooms (the mean pose taken over these rooms)."""
    poses = [scene.camera_to_worlds[split(scene, args.views, args.gap)[0]] for scene in scenes]
    errors = constant_pose_errors(poses)
    return {f"pose_{key}": float(np.mean([e[key] for e in errors])) for key in errors[0]}


COLUMNS = (
    ("context_psnr", "ctx PSNR", "{:.2f}"), ("context_ssim", "ctx SSIM", "{:.3f}"),
    ("psnr", "novel PSNR", "{:.2f}"), ("ssim", "novel SSIM", "{:.3f}"),
    ("depth_abs_rel", "AbsRel", "{:.3f}"), ("depth_inlier_ratio_1.03", "δ<1.03", "{:.3f}"),
    ("pose_rotation_deg_mean", "rot. err °", "{:.1f}"), ("pose_translation_mean", "centre err", "{:.3f}"),
    ("miou", "novel mIoU", "{:.3f}"), ("accuracy", "novel Acc", "{:.3f}"),
)  # fmt: skip


def table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of the results, one row per model ("–" where a row has no such value)."""
    lines = ["| model | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in results.items():
        cells = [fmt.format(row[key]) if key in row else "–" for key, _, fmt in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rooms", type=Path, help="folder of evaluation rooms (never trained on)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="an FF3R checkpoint folder to evaluate (repeatable)")  # fmt: skip
    parser.add_argument("--init", default=None, help="also evaluate this preset's untrained initialization (seed 0)")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
    parser.add_argument("--views", type=int, default=8, help="context views per room")
    parser.add_argument("--gap", type=_gap, default=4,
                        help="frames between a context view and the next target, or 'widest' (the whole path)")  # fmt: skip
    parser.add_argument("--pose-steps", type=int, default=EvalConfig.pose_steps, help="target-pose refinement steps")
    parser.add_argument("--lpips-weights", default=None, help="torchvision vgg16-397923af.pth for LPIPS")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scenes = read_scenes(args.rooms, verify=False)
    networks: dict[str, FF3R] = {}
    if args.init:
        torch.manual_seed(0)
        networks[f"untrained {args.init}"] = FF3R.from_preset(args.init)
    for spec in args.model:
        name, _, path = spec.partition("=")
        networks[name] = load_ff3r_checkpoint(path)
    results = {BASELINE: baseline(scenes, args)}
    for name, network in networks.items():
        results[name] = evaluate(network, scenes, device, args)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    gap = "widest span" if args.gap is None else f"{args.gap} frames from view to target"
    print(f"\n{len(scenes)} rooms, {args.views} context views each ({gap}), {args.pose_steps} pose-refinement steps "
          "per target.")  # fmt: skip
    if len(results) > 1:
        first = results[next(iter(networks))]
        print(f"2D teacher (stand-in LSeg) on the context views: mIoU {first['teacher_miou']:.3f}, "
              f"accuracy {first['teacher_acc']:.3f}")  # fmt: skip
    print("\n" + table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
