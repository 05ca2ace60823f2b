"""Evaluate FF3R networks on held-out synthetic rooms: views, depth, cameras and semantics.

    python scripts/evaluate_synthetic.py data/rooms/eval --model trained=runs/.../ff3r --init small \
        --json eval.json

Protocol (per room, docs/TRAINING.md):

- views: ``sparse_split(num_frames, 8)``: 8 context views (every second frame from the first) and the 7
  frames between them as novel-view targets, all center-cropped and resized to the network's image size;
- context: the 8 views are reconstructed in one forward pass and rendered back with the *predicted*
  cameras: PSNR / SSIM against the inputs; depth: the depth head's maps against the ground truth
  (``depth_metrics``: per-image scale and shift, AbsRel and inlier ratio at 1.03); cameras: rotation and
  centre errors after a Sim(3) alignment;
- novel views: the ground-truth target poses are moved into the prediction's frame with the inverse of
  the Sim(3) (Umeyama on camera centres, ``align_poses``) that maps the predicted context cameras onto the
  true ones, and rendered with the ground-truth intrinsics; no per-target pose refinement;
- semantics: each rendered low-dimensional feature is lifted to 512-d (``lift_semantic``), every pixel takes
  the class whose embedding (``class_embeddings()``, the rooms' "text" queries) has the largest cosine;
  mIoU and accuracy over the 8 classes (``segmentation_metrics``, counts summed over a room's views), on
  context and novel views. The 2D stand-in teacher's own features, scored the same way on the context
  views (at their half resolution), are the reference that training distills.

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
from ff3r_ns.data.synthetic import class_embeddings
from ff3r_ns.data.views import load_views
from ff3r_ns.eval.alignment import align_poses, apply_sim3, pose_errors
from ff3r_ns.eval.metrics import depth_metrics, psnr, segmentation_metrics, ssim
from ff3r_ns.network.cameras import c2w_to_w2c, to_4x4, w2c_to_c2w
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.render import render_gaussians
from ff3r_ns.network.weights import load_ff3r_checkpoint

NUM_CONTEXT = 8


def classify(features: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
    """Class ids 1..k of [n, c, h, w] features: argmax of the cosine to each of the k embeddings."""
    scores = torch.einsum("nchw,kc->nkhw", F.normalize(features.float(), dim=1), F.normalize(embeddings, dim=1))
    return scores.argmax(dim=1) + 1


def render(network: FF3R, gaussians, w2c: torch.Tensor, K: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    out = render_gaussians(
        gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, gaussians.sh, gaussians.semantic,
        w2c, K, size, size, gaussians.sh_degree,
    )  # fmt: skip
    lifted = network.gaussian_head.lift_semantic(out["features"].permute(0, 3, 1, 2))
    return {"rgb": out["rgb"].permute(0, 3, 1, 2).clamp(0, 1), "lifted": lifted}


@torch.no_grad()
def evaluate_room(network: FF3R, scene, device: torch.device, embeddings: torch.Tensor) -> dict[str, float]:
    size = network.config.image_size
    context, targets = sparse_split(len(scene), NUM_CONTEXT)
    ctx = load_views(scene, context, size, depth=True, labels=True, features=True)
    tgt = load_views(scene, targets, size, labels=True)
    out = network(ctx.images[None].to(device))
    gaussians = out.gaussians.scene(0)
    w2c, K = out.extrinsics[0], out.intrinsics[0]
    rendered = render(network, gaussians, w2c, K, size)

    pred_c2w = w2c_to_c2w(to_4x4(w2c)).cpu().double()
    _, (s, R, t) = align_poses(pred_c2w, ctx.camera_to_worlds.double())
    inverse = (1.0 / s, R.T, -(R.T @ t) / s)  # the true frame into the prediction's
    target_w2c = c2w_to_w2c(torch.from_numpy(apply_sim3(tgt.camera_to_worlds.double(), inverse))).float().to(device)
    novel = render(network, gaussians, target_w2c, tgt.intrinsics.to(device), size)

    images, target_images = ctx.images.to(device), tgt.images.to(device)
    depth = depth_metrics(out.depth[0].cpu(), ctx.depth)
    cameras = pose_errors(pred_c2w, ctx.camera_to_worlds.double())
    seg_context = segmentation_metrics(classify(rendered["lifted"], embeddings).cpu(), ctx.labels)
    seg_novel = segmentation_metrics(classify(novel["lifted"], embeddings).cpu(), tgt.labels)
    half = F.interpolate(ctx.labels[:, None].float(), size=ctx.features.shape[-2:], mode="nearest")[:, 0].long()
    seg_teacher = segmentation_metrics(classify(ctx.features, embeddings.cpu()), half)
    return {
        "context_psnr": float(psnr(rendered["rgb"], images).mean()),
        "context_ssim": float(ssim(rendered["rgb"], images).mean()),
        "novel_psnr": float(psnr(novel["rgb"], target_images).mean()),
        "novel_ssim": float(ssim(novel["rgb"], target_images).mean()),
        "abs_rel": depth["abs_rel"],
        "inlier_1.03": depth["inlier_ratio_1.03"],
        "rotation_deg": cameras["rotation_deg_mean"],
        "context_miou": seg_context["miou"],
        "context_acc": seg_context["accuracy"],
        "novel_miou": seg_novel["miou"],
        "novel_acc": seg_novel["accuracy"],
        "teacher_miou": seg_teacher["miou"],
        "teacher_acc": seg_teacher["accuracy"],
        "gaussians": float(len(gaussians)),
    }


def evaluate(network: FF3R, scenes, device: torch.device) -> dict[str, float]:
    network = network.to(device).eval()
    embeddings = class_embeddings().to(device)
    rows = [evaluate_room(network, scene, device, embeddings) for scene in scenes]
    return {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}


COLUMNS = (
    ("context_psnr", "ctx PSNR", "{:.2f}"), ("context_ssim", "ctx SSIM", "{:.3f}"),
    ("novel_psnr", "novel PSNR", "{:.2f}"), ("novel_ssim", "novel SSIM", "{:.3f}"),
    ("abs_rel", "AbsRel", "{:.3f}"), ("inlier_1.03", "δ<1.03", "{:.3f}"), ("rotation_deg", "rot. err °", "{:.1f}"),
    ("context_miou", "ctx mIoU", "{:.3f}"), ("context_acc", "ctx Acc", "{:.3f}"),
    ("novel_miou", "novel mIoU", "{:.3f}"), ("novel_acc", "novel Acc", "{:.3f}"),
)  # fmt: skip


def table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table of the results, one row per model."""
    lines = ["| model | " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rooms", type=Path, help="folder of evaluation rooms (never trained on)")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="an FF3R checkpoint folder to evaluate (repeatable)")  # fmt: skip
    parser.add_argument("--init", default=None, help="also evaluate this preset's untrained initialization (seed 0)")
    parser.add_argument("--json", type=Path, default=None, help="write all results here")
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
    results = {}
    for name, network in networks.items():
        results[name] = evaluate(network, scenes, device)
        print(f"{name}: {json.dumps(results[name])}", flush=True)
    first = next(iter(results.values()))
    print(f"\n{len(scenes)} rooms, {NUM_CONTEXT} context views each; 2D teacher (stand-in LSeg) on the context views: "
          f"mIoU {first['teacher_miou']:.3f}, accuracy {first['teacher_acc']:.3f}\n")  # fmt: skip
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
