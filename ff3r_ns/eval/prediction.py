"""A network's reconstruction of one scene for the evaluation scripts, without nerfstudio.

:func:`predict_scene` runs FF3R once on the context views (as ``ns-train ff3r`` does: the backbone's
matmuls in bf16 on CUDA, float32 on the CPU, ``precision.py``), times the pass, and moves the prediction
into the dataset's frame with the Sim(3) that maps the predicted context cameras onto the true ones
(:func:`~ff3r_ns.eval.alignment.align_poses`; upright frame without poses), so that
:func:`~ff3r_ns.eval.evaluate.evaluate_reconstruction` scores it exactly as ``ns-eval`` scores a saved run.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from ff3r_ns.data.scene import SceneData
from ff3r_ns.data.views import Views, fit_size, load_views
from ff3r_ns.eval.alignment import Sim3, align_poses, apply_sim3
from ff3r_ns.eval.evaluate import Reconstruction
from ff3r_ns.eval.protocol import transform_gaussians, upright_sim3
from ff3r_ns.network.cameras import c2w_to_w2c, to_4x4, w2c_to_c2w
from ff3r_ns.network.ff3r import FF3R, FF3ROutput
from ff3r_ns.network.gaussians import Gaussians
from ff3r_ns.network.precision import prepare_inference
from ff3r_ns.network.render import render_gaussians


@dataclass
class Prediction:
    """What :func:`predict_scene` returns."""

    reconstruction: Reconstruction
    """The prediction in the dataset's frame, for the protocol."""
    context: Views
    """The context views as fed to the network (with depth and labels where the scene has them)."""
    gaussians: Gaussians
    """The scene's Gaussians in the dataset's frame."""
    output: FF3ROutput
    """The raw network output (the prediction's own frame)."""


def gaussian_renderer(gaussians: Gaussians, image_hw: tuple[int, int], backend: str = "auto"):
    """A :class:`~ff3r_ns.eval.evaluate.Renderer` of fixed Gaussians (black background)."""
    height, width = image_hw

    def render(c2w: Float[Tensor, "4 4"], K: Float[Tensor, "3 3"], features: bool = False) -> dict:
        device = gaussians.means.device
        out = render_gaussians(
            gaussians.means, gaussians.quats, gaussians.scales, gaussians.opacities, gaussians.sh,
            gaussians.semantic if features else None, c2w_to_w2c(c2w.to(device).float())[None],
            K.to(device).float()[None], width, height, gaussians.sh_degree, backend=backend,  # type: ignore[arg-type]
        )  # fmt: skip
        return {key: None if value is None else value[0] for key, value in out.items()}

    return render


def lifted_classifier(semantic_proj: torch.nn.Conv2d):
    """Cosines of rendered features lifted by the network's 1x1 layer (``W f + b``) with unit text embeddings."""
    weight = semantic_proj.weight.detach().float().flatten(1)
    bias = semantic_proj.bias.detach().float()

    def classify(features: Float[Tensor, "h w f"], text: Float[Tensor, "k c"]) -> Float[Tensor, "h w k"]:
        lifted = F.linear(features.float(), weight.to(features.device), bias.to(features.device))
        return F.normalize(lifted, dim=-1) @ F.normalize(text.float(), dim=-1).T

    return classify


def align_prediction(
    out: FF3ROutput, dataset_c2w: Optional[np.ndarray]
) -> tuple[np.ndarray, Sim3, Gaussians]:
    """The first scene of ``out`` in the dataset's frame: its cameras (OpenCV camera-to-world), the Sim(3)
    (Umeyama on the camera centres onto ``dataset_c2w``; the upright frame when None) and its Gaussians in
    float32, moved by it."""
    predicted_c2w = w2c_to_c2w(to_4x4(out.extrinsics[0].double())).cpu().numpy()
    if dataset_c2w is not None:
        aligned, sim3 = align_poses(predicted_c2w, dataset_c2w)
    else:
        sim3 = upright_sim3(predicted_c2w)
        aligned = apply_sim3(predicted_c2w, sim3)
    scale, rotation, translation = sim3
    gaussians = out.gaussians.scene(0)
    gaussians = Gaussians(
        **{f.name: getattr(gaussians, f.name).float() if f.name != "batch_index" else gaussians.batch_index
           for f in dataclasses.fields(Gaussians)}
    )  # fmt: skip
    gaussians = transform_gaussians(gaussians, scale, torch.from_numpy(rotation), torch.from_numpy(translation))
    return aligned, sim3, gaussians


@torch.no_grad()
def predict_scene(
    network: FF3R,
    scene: SceneData,
    context: list[int],
    image_hw: tuple[int, int],
    device: torch.device,
    warm_up: bool = False,
) -> Prediction:
    """FF3R once on ``context`` frames of ``scene`` at ``image_hw``, moved into the dataset's frame.

    Args:
        warm_up: On CUDA, run a 2-view pass first so that the timed pass does not pay for loading kernels
            (the first CUDA call of a process); do it for the first scene only.
    """
    views = load_views(scene, context, image_hw, depth=True, labels=True)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    network = prepare_inference(network, device, dtype)
    images = views.images[None].to(device)
    if warm_up and device.type == "cuda":
        network(images[:, :2])
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = network(images)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start

    dataset_c2w = views.camera_to_worlds.double().numpy() if views.camera_to_worlds is not None else None
    aligned, (scale, _, _), gaussians = align_prediction(out, dataset_c2w)
    reconstruction = Reconstruction(
        render=gaussian_renderer(gaussians, image_hw),
        classify=lifted_classifier(network.gaussian_head.semantic_proj),
        context_indices=list(views.indices),
        context_c2w=torch.from_numpy(aligned).float().to(device),
        context_intrinsics=out.intrinsics[0].float(),
        image_hw=image_hw,
        depth=(out.depth[0].float() * scale).cpu(),
        scale=float(scale),
        seconds=seconds,
    )
    return Prediction(reconstruction=reconstruction, context=views, gaussians=gaussians, output=out)


def view_size(scene: SceneData, context: list[int], long_side: int, patch_size: int) -> tuple[int, int]:
    """(h, w) of the views fed to the network: the most common size among the context frames, its long side
    ``long_side``, both multiples of the patch size (as ``ns-train ff3r`` sizes them)."""
    sizes = Counter(tuple(int(v) for v in scene.image_sizes[i]) for i in context)
    height, width = sizes.most_common(1)[0][0]
    return fit_size(height, width, long_side, multiple=patch_size)
