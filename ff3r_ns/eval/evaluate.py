"""One evaluation protocol: every metric of one reconstruction of one scene, or the reason it is absent.

``ns-eval`` (``FF3RPipeline``), ``scripts/evaluate.py`` and ``scripts/evaluate_synthetic.py`` all call
:func:`evaluate_reconstruction`. What it scores (paper Sec. 4, Appendix A; DESIGN.md "Evaluation protocols"):

- context views, rendered from their *predicted* cameras: PSNR and SSIM (how well the input is reproduced);
- held-out targets (the split's, :func:`~ff3r_ns.eval.protocol.select_views`): each placed at the dataset's
  pose in the reconstruction's frame (the Sim(3) alignment of the predicted context cameras onto the true
  ones was applied when the reconstruction was made), refined photometrically with the Gaussians frozen
  (:func:`~ff3r_ns.eval.protocol.refine_pose`), then PSNR, SSIM and LPIPS; how far refinement moved each
  pose (``pose_refine_rotation_deg``, ``pose_refine_translation``) and the refined poses
  (``refined_target_c2w``) are kept;
- segmentation: every pixel of the rendered semantic features takes the class prompt of largest cosine;
  mIoU and accuracy against the scene's labels (``miou``, ``accuracy``) on the targets (else the context
  views), and, with LSeg weights, against LSeg's own 2D argmax over the same prompts on the same views
  (``miou_lseg_pseudo``, ``accuracy_lseg_pseudo``: the Feature-3DGS protocol the paper uses for DL3DV),
  never mixed with the ground-truth keys;
- geometry: depth of the context views (AbsRel, inlier ratio at 1.03, per-image scale and shift) and the
  predicted cameras' rotation and centre errors after the alignment;
- time: the seconds of the forward pass, as measured where the reconstruction was made.

Everything here is a function of tensors and knows nothing of nerfstudio; a reconstruction is any
:class:`Reconstruction`: a renderer, a classifier of rendered features and the predicted cameras and depth.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Protocol, Sequence

import numpy as np
import torch
from jaxtyping import Float
from PIL import Image
from rich.console import Console
from rich.progress import track
from torch import Tensor

from ff3r_ns.data.scene import SceneData
from ff3r_ns.data.views import Views, load_views
from ff3r_ns.eval.alignment import rotation_angle_deg
from ff3r_ns.eval.alignment import pose_errors as camera_pose_errors
from ff3r_ns.eval.metrics import MetricUnavailable, depth_metrics, lpips_metric, psnr, segmentation_metrics, ssim
from ff3r_ns.eval.protocol import POSE_REFINE_LR, POSE_REFINE_STEPS, refine_pose

NO_POSES = "the scene has no camera poses, so held-out target views cannot be placed in the reconstruction"
IMAGE_METRICS = ("psnr", "ssim", "lpips")
"""Novel-view metrics, absent together when no target can be placed."""
PSEUDO_KEYS = ("miou_lseg_pseudo", "accuracy_lseg_pseudo")
"""Segmentation against LSeg's own 2D argmax (pseudo ground truth), kept apart from ``miou``/``accuracy``."""


class Renderer(Protocol):
    """Renders the frozen reconstruction at an OpenCV camera-to-world pose of its frame."""

    def __call__(
        self, c2w: Float[Tensor, "4 4"], K: Float[Tensor, "3 3"], features: bool = False
    ) -> dict[str, Optional[Tensor]]:
        """``{"rgb": [h, w, 3], "features": [h, w, f] or None}``; differentiable in ``c2w``."""
        ...


class PseudoLabeler(Protocol):
    """A 2D segmenter whose argmax over the class prompts is the pseudo ground truth (LSeg's)."""

    def __call__(self, images: Float[Tensor, "n 3 h w"]) -> Tensor:
        """Class ids 1..k, ``[n, h, w]`` int64."""
        ...


@dataclass
class Reconstruction:
    """One scene's reconstruction as the protocol sees it, in the dataset's frame where the scene has poses."""

    render: Renderer
    """The Gaussians' renderer (frozen)."""
    classify: Optional[Callable[[Float[Tensor, "h w f"], Float[Tensor, "k c"]], Float[Tensor, "h w k"]]]
    """Scores of rendered low-dimensional features against k unit text embeddings (cosines of the lifted
    features); None: the reconstruction has no semantics."""
    context_indices: list[int]
    """Frames of the scene fed to the network."""
    context_c2w: Float[Tensor, "s 4 4"]
    """Predicted OpenCV camera-to-world poses of the context views (aligned to the dataset)."""
    context_intrinsics: Float[Tensor, "s 3 3"]
    """Predicted intrinsics in pixels of the views."""
    image_hw: tuple[int, int]
    """The views' (height, width)."""
    depth: Optional[Float[Tensor, "s h w"]] = None
    """Predicted z-depth of the context views, in the frame's units."""
    scale: float = 1.0
    """Dataset units per predicted unit (the alignment's scale): the units of the pose refinement's step."""
    seconds: Optional[float] = None
    """Seconds of the forward pass; None where it is not known."""
    seconds_absent: str = "the forward-pass time was not recorded with this reconstruction"
    """Why ``seconds`` is None."""


@dataclass
class EvalConfig:
    """Settings of the protocol."""

    pose_steps: int = POSE_REFINE_STEPS
    """Adam steps refining each target pose photometrically, the Gaussians frozen (AnySplat, Uni3R); 0: none."""
    pose_lr: float = POSE_REFINE_LR
    """Learning rate of the target-pose refinement."""
    lpips_weights: Optional[str] = None
    """torchvision VGG16 checkpoint for LPIPS (vgg16-397923af.pth); None: torchvision's cache. LPIPS is
    reported absent, with the reason, where the file is missing."""
    progress: bool = True
    """Show a progress bar over the targets."""


@dataclass
class ClassText:
    """The class prompts' unit text embeddings, or why there are none."""

    names: Sequence[str]
    """The classes, in label order (id i + 1 is ``names[i]``)."""
    embeddings: Optional[Float[Tensor, "k c"]]
    """Unit embeddings of the names, or None."""
    source: str
    """Where the embeddings come from, or why there are none."""


@dataclass
class Evaluation:
    """Values per evaluated view (averaged by :meth:`summary`), scene-level values, and the reason of every
    metric that could not be computed."""

    per_view: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    scene: dict[str, Any] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)

    def summary(self, get_std: bool = False) -> dict[str, Any]:
        """Means of the per-view values (and their standard deviations), the scene values, ``"absent"``."""
        results: dict[str, Any] = {}
        for name, values in self.per_view.items():
            results[name] = float(np.mean(values))
            if get_std:
                results[f"{name}_std"] = float(np.std(values))
        results.update(self.scene)
        results["absent"] = dict(self.absent)
        return results


def evaluate_reconstruction(
    reconstruction: Reconstruction,
    scene: SceneData,
    context: Views,
    targets: Sequence[int],
    text: ClassText,
    config: EvalConfig = EvalConfig(),
    pseudo_labeler: Optional[PseudoLabeler] = None,
    pseudo_absent: str = "no LSeg weights were given for the pseudo-labels",
    no_targets: str = "the split holds out no target views",
    output_path: Optional[Path] = None,
    console: Optional[Console] = None,
) -> Evaluation:
    """Every metric of ``reconstruction`` on ``scene``, or the reason it is absent (module docstring).

    Args:
        reconstruction: The prediction, in the dataset's frame where the scene has poses.
        scene: The scene it reconstructs.
        context: The context views at the reconstruction's size, with depth and labels where the scene has them.
        targets: Held-out frames of the split (scored only where the scene has poses).
        text: The class prompts' embeddings, for both segmentation scores.
        config: Refinement steps, LPIPS backbone.
        pseudo_labeler: LSeg's 2D segmenter for the pseudo-labels; None: ``pseudo_absent`` says why not.
        no_targets: Why there are no targets, where ``targets`` is empty on a posed scene.
        output_path: Folder for ``target_XXXXX.png`` pairs (photo | render); None: no images.
    """
    result = Evaluation()
    result.scene.update(num_context_views=len(context), num_target_views=0)
    context_features = _evaluate_context(result, reconstruction, context)
    target_features, target_views = _evaluate_targets(
        result, reconstruction, scene, targets, config, no_targets, output_path, console
    )
    views, features, name = (
        (target_views, target_features, "targets") if target_views is not None else (context, context_features, "context")
    )
    _evaluate_segmentation(result, reconstruction, features, views, name, text, pseudo_labeler, pseudo_absent)
    _evaluate_geometry(result, reconstruction, scene, context)
    if reconstruction.seconds is not None:
        result.scene["time_seconds"] = float(reconstruction.seconds)
    else:
        result.absent["time_seconds"] = reconstruction.seconds_absent
    return result


def _evaluate_context(result: Evaluation, reconstruction: Reconstruction, context: Views) -> list[Optional[Tensor]]:
    """PSNR/SSIM of the context views from their predicted cameras; returns their rendered features."""
    features = []
    for i in range(len(context)):
        with torch.no_grad():
            out = reconstruction.render(reconstruction.context_c2w[i], reconstruction.context_intrinsics[i], True)
        rgb, image = out["rgb"].permute(2, 0, 1).detach().cpu().float(), context.images[i]
        result.per_view["context_psnr"].append(float(psnr(rgb, image)))
        result.per_view["context_ssim"].append(float(ssim(rgb[None], image[None])[0]))
        features.append(out.get("features"))
    return features


def _evaluate_targets(
    result: Evaluation,
    reconstruction: Reconstruction,
    scene: SceneData,
    targets: Sequence[int],
    config: EvalConfig,
    no_targets: str,
    output_path: Optional[Path],
    console: Optional[Console],
) -> tuple[list[Optional[Tensor]], Optional[Views]]:
    """Novel-view PSNR/SSIM/LPIPS at the targets, each refined from the dataset's pose; returns their rendered
    features and the loaded target views (None when no target can be scored)."""
    if not scene.has_poses or not targets:
        reason = NO_POSES if not scene.has_poses else no_targets
        result.absent.update({name: reason for name in IMAGE_METRICS})
        return [], None
    views = load_views(scene, list(targets), reconstruction.image_hw, labels=True)
    assert views.camera_to_worlds is not None
    intrinsics = views.intrinsics
    if intrinsics is None:  # no calibration on disk: the predicted focal lengths, averaged
        intrinsics = reconstruction.context_intrinsics.mean(dim=0, keepdim=True).expand(len(targets), 3, 3)
    result.scene["num_target_views"] = len(targets)
    device = reconstruction.context_c2w.device
    frames: Sequence[int] = list(targets)
    if config.progress:
        steps = f"{config.pose_steps} pose-refinement steps each"
        frames = track(frames, description=f"Held-out views ({steps})", console=console, transient=True)
    features = []
    for j, frame in enumerate(frames):
        image, K = views.images[j], intrinsics[j].to(device)
        start = views.camera_to_worlds[j].to(device)
        refined = refine_pose(
            lambda pose: reconstruction.render(pose, K)["rgb"],
            start,
            image.permute(1, 2, 0).to(device),
            steps=config.pose_steps,
            lr=config.pose_lr,
            translation_scale=reconstruction.scale,
        )
        with torch.no_grad():
            out = reconstruction.render(refined.c2w, K, True)
        rgb = out["rgb"].permute(2, 0, 1).detach().cpu().float()
        result.per_view["psnr"].append(float(psnr(rgb, image)))
        result.per_view["ssim"].append(float(ssim(rgb[None], image[None])[0]))
        result.per_view["pose_refine_l1_before"].append(refined.initial_loss)
        result.per_view["pose_refine_l1_after"].append(refined.final_loss)
        moved = refined.c2w.detach().double().cpu(), start.detach().double().cpu()
        result.per_view["pose_refine_rotation_deg"].append(
            float(rotation_angle_deg(moved[0][:3, :3].numpy(), moved[1][:3, :3].numpy()))
        )
        result.per_view["pose_refine_translation"].append(float((moved[0][:3, 3] - moved[1][:3, 3]).norm()))
        result.scene.setdefault("refined_target_c2w", []).append(moved[0].tolist())
        if "lpips" not in result.absent:
            try:
                value = float(lpips_metric(rgb[None], image[None], config.lpips_weights)[0])
            except MetricUnavailable as error:
                result.absent["lpips"] = str(error)
            else:
                result.per_view["lpips"].append(value)
        features.append(out.get("features"))
        if output_path is not None:
            pair = torch.cat([image, rgb], dim=2).permute(1, 2, 0).clamp(0, 1).mul(255).round().byte().numpy()
            Image.fromarray(pair).save(Path(output_path) / f"target_{frame:05d}.png")
    return features, views


def predicted_classes(
    reconstruction: Reconstruction, features: Sequence[Optional[Tensor]], text: Tensor
) -> Optional[Tensor]:
    """Class ids 1..k ``[n, h, w]`` of rendered features: the prompt of largest cosine; None without semantics."""
    if reconstruction.classify is None or any(f is None for f in features):
        return None
    with torch.no_grad():
        return torch.stack(
            [reconstruction.classify(f, text.to(f.device)).argmax(dim=-1).cpu() + 1 for f in features]  # type: ignore[arg-type]
        )


def _evaluate_segmentation(
    result: Evaluation,
    reconstruction: Reconstruction,
    features: Sequence[Optional[Tensor]],
    views: Views,
    name: str,
    text: ClassText,
    pseudo_labeler: Optional[PseudoLabeler],
    pseudo_absent: str,
) -> None:
    """mIoU and accuracy against the labels and against LSeg's pseudo-labels, each under its own keys."""
    gt_keys = ("miou", "accuracy")
    if text.embeddings is None:
        result.absent.update({key: text.source for key in gt_keys})
        result.absent.update({key: pseudo_absent if pseudo_labeler is None else text.source for key in PSEUDO_KEYS})
        return
    predicted = predicted_classes(reconstruction, features, text.embeddings)
    if predicted is None:
        result.absent.update({key: "the reconstruction renders no semantic features" for key in gt_keys + PSEUDO_KEYS})
        return
    result.scene.update(segmentation_views=name, segmentation_text=text.source)
    if views.labels is None:
        result.absent.update({key: "the scene has no per-pixel class labels" for key in gt_keys})
    else:
        metrics = segmentation_metrics(predicted, views.labels, num_classes=len(text.names))
        result.scene.update(miou=metrics["miou"], accuracy=metrics["accuracy"])
        result.scene["per_class_iou"] = {
            text.names[c - 1]: iou for c, iou in metrics["per_class_iou"].items() if not np.isnan(iou)
        }
    if pseudo_labeler is None:
        result.absent.update({key: pseudo_absent for key in PSEUDO_KEYS})
        return
    with torch.no_grad():
        pseudo = pseudo_labeler(views.images)
    metrics = segmentation_metrics(predicted, pseudo, num_classes=len(text.names))
    result.scene.update(miou_lseg_pseudo=metrics["miou"], accuracy_lseg_pseudo=metrics["accuracy"])


def _evaluate_geometry(result: Evaluation, reconstruction: Reconstruction, scene: SceneData, context: Views) -> None:
    """Depth of the context views (scale and shift fitted per image) and the predicted cameras' errors."""
    depth_keys = ("depth_abs_rel", "depth_inlier_ratio_1.03")
    if context.depth is None:
        result.absent.update({key: "the scene has no ground-truth depth" for key in depth_keys})
    elif reconstruction.depth is None:
        result.absent.update({key: "the reconstruction holds no predicted depth" for key in depth_keys})
    else:
        depth = depth_metrics(reconstruction.depth.float().cpu(), context.depth)
        result.scene.update({f"depth_{name}": value for name, value in depth.items()})
    if scene.has_poses:
        truth = scene.camera_to_worlds[list(reconstruction.context_indices)]
        errors = camera_pose_errors(reconstruction.context_c2w.detach().double().cpu().numpy(), truth, align=False)
        result.scene.update({f"pose_{name}": value for name, value in errors.items()})
    else:
        for key in ("pose_rotation_deg_mean", "pose_translation_mean"):
            result.absent[key] = "the scene has no camera poses"
