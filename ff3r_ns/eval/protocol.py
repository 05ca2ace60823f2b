"""Evaluation protocols (paper Sec. 4, Appendix A): which views a reconstruction sees, and how its
prediction meets the dataset.

- :func:`select_views`: the context views fed to the network and the held-out target views, for every
  setting of the paper (sparse 2/6/16, dense 32/48/64) and for plain reconstruction ("all" views).
- :func:`transform_gaussians`: the prediction lives in the first camera's frame at an arbitrary scale;
  a similarity ``x -> s R x + t`` (from :func:`ff3r_ns.eval.alignment.align_poses` on the camera
  centres) moves its Gaussians into the dataset's frame: means, scales, rotations and SH colours.
- :func:`upright_sim3`: for scenes without poses, a frame with the cameras' mean "up" along +z (what
  nerfstudio's viewer expects), centred on the cameras.
- :func:`refine_pose`: a target camera placed from the dataset's pose is refined photometrically with
  the Gaussians frozen (Adam, lr 5e-3, 100 steps), as AnySplat and Uni3R do before scoring novel views.

Poses are OpenCV camera-to-world ``[4, 4]`` matrices (``ff3r_ns.network.cameras``); everything here is
a function of tensors and knows nothing of nerfstudio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from gsplat.cuda._torch_impl import _spherical_harmonics
from jaxtyping import Float
from torch import Tensor

from ff3r_ns.data.sampling import dense_split, evenly_spaced, sparse_split
from ff3r_ns.network.cameras import matrix_to_quat
from ff3r_ns.network.gaussians import Gaussians

VIEW_SETTINGS = ("all", "sparse-2", "sparse-6", "sparse-16", "dense-32", "dense-48", "dense-64")
"""Context-view settings: every view, or one of the paper's evaluation splits (context views in the name)."""
DENSE_SAMPLED = {32: 32, 48: 56, 64: 72}
"""Dense setting by context views -> the number of views the paper says it samples (``dense_split``)."""
POSE_REFINE_STEPS = 100
"""Adam steps of the photometric target-pose refinement (AnySplat, Uni3R)."""
POSE_REFINE_LR = 5e-3
"""Adam learning rate of the target-pose refinement (radians, and prediction-frame units for translation)."""
SH_FIT_DIRECTIONS = 64
"""Directions the SH rotation is solved on (exact: each band is closed under rotation; 64 >> (3+1)^2)."""


@dataclass
class ViewSelection:
    """Frames of one scene that a reconstruction uses."""

    context: list[int]
    """Frames fed to the network, in increasing order."""
    targets: list[int]
    """Held-out frames for novel-view evaluation (empty when none can be scored)."""


def select_views(
    num_frames: int,
    setting: str = "all",
    max_views: int = 64,
    holdout_every: int = 8,
    camera_centers: Optional[np.ndarray] = None,
    stride: Optional[int] = None,
) -> ViewSelection:
    """Context and target frames of a scene.

    - ``"all"``: every frame is a context view, except that on a posed scene (``camera_centers`` given)
      frames ``holdout_every // 2 + k * holdout_every`` (4, 12, 20, ... by default; never the last
      frame, so targets lie between context views) are held out as targets. More than ``max_views``
      remaining frames are thinned to ``max_views`` evenly spaced ones. Without poses, or when holding
      out would leave fewer than 2 context views, nothing is held out (a target can't be placed without
      a pose).
    - ``"sparse-N"`` (N = 2, 6, 16): :func:`ff3r_ns.data.sampling.sparse_split` (test interval 1),
      ``stride`` frames between a context view and the next target (None: the widest span that fits).
    - ``"dense-N"`` (N = 32, 48, 64): :func:`ff3r_ns.data.sampling.dense_split` on the camera centres
      (evenly in time without poses); needs at least 72 frames.

    Raises:
        ValueError: unknown setting, fewer than 2 frames, or a split the scene is too short for.
    """
    if setting not in VIEW_SETTINGS:
        raise ValueError(f"unknown view setting {setting!r}; choose one of {', '.join(VIEW_SETTINGS)}")
    if num_frames < 2:
        raise ValueError(f"FF3R needs at least 2 views of a scene, got {num_frames}")
    if setting == "all":
        if max_views < 2:
            raise ValueError(f"max_views must be at least 2, got {max_views}")
        frames = list(range(num_frames))
        targets: list[int] = []
        if camera_centers is not None and holdout_every > 0:
            held = list(range(holdout_every // 2, num_frames - 1, holdout_every))
            if num_frames - len(held) >= 2:
                targets = held
        rest = [i for i in frames if i not in set(targets)]
        if len(rest) > max_views:
            rest = [rest[j] for j in evenly_spaced(len(rest), max_views)]
        return ViewSelection(context=rest, targets=targets)
    kind, count = setting.split("-")
    if kind == "sparse":
        context, targets = sparse_split(num_frames, int(count), stride=stride)
    else:
        context, targets = dense_split(num_frames, camera_centers, num_sampled=DENSE_SAMPLED[int(count)])
    return ViewSelection(context=context, targets=targets if camera_centers is not None else [])


# --------------------------------------------------------------------------------------------------
# Similarity transforms of Gaussians
# --------------------------------------------------------------------------------------------------


def quat_multiply(a: Float[Tensor, "*batch 4"], b: Float[Tensor, "*batch 4"]) -> Float[Tensor, "*batch 4"]:
    """Hamilton product ``a * b`` of wxyz quaternions (the rotation ``R_a R_b``)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def sh_basis(directions: Float[Tensor, "n 3"], sh_degree: int) -> Float[Tensor, "n k"]:
    """Values of the ``k = (sh_degree + 1)^2`` real SH basis functions in gsplat's convention."""
    k = (sh_degree + 1) ** 2
    one_hot = torch.eye(k, dtype=directions.dtype, device=directions.device)[:, None, :, None].expand(
        k, len(directions), k, 3
    )
    values = _spherical_harmonics(sh_degree, directions.expand(k, *directions.shape), one_hot)  # [k, n, 3]
    return values[..., 0].T


def sh_rotation(rotation: Float[Tensor, "3 3"], sh_degree: int) -> Float[Tensor, "k k"]:
    """Matrix ``M`` such that SH coefficients ``c`` of a colour become ``M c`` when the scene turns by ``rotation``.

    The rotated colour in direction ``d`` is the old one in direction ``R^T d``. Each SH band is closed
    under rotation, so ``B(R^T d) = B(d) M`` (one row of basis values per direction) holds exactly, and a
    least-squares solve on a few dozen directions recovers ``M`` for any degree (no Wigner-D formulas).
    """
    generator = torch.Generator().manual_seed(0)
    directions = F.normalize(torch.randn(SH_FIT_DIRECTIONS, 3, generator=generator, dtype=torch.float64), dim=-1)
    rotation = rotation.detach().to(torch.float64).cpu()
    basis = sh_basis(directions, sh_degree)
    turned = sh_basis(directions @ rotation, sh_degree)  # rows: B(R^T d)
    return torch.linalg.lstsq(basis, turned).solution


def transform_gaussians(
    gaussians: Gaussians, scale: float, rotation: Float[Tensor, "3 3"], translation: Float[Tensor, "3"]
) -> Gaussians:
    """Gaussians moved by the similarity ``x -> s R x + t``: the rendered scene is the old one, moved.

    Means ``s R mu + t``; log-scales ``+ log s``; rotations ``q_R * q`` (covariance ``s^2 R Sigma R^T``);
    SH colour coefficients rotated band by band (:func:`sh_rotation`) so that view-dependent colour
    turns with the scene; opacity and semantics unchanged.
    """
    if not scale > 0:
        raise ValueError(f"the similarity's scale must be positive, got {scale}")
    device, dtype = gaussians.means.device, gaussians.means.dtype
    rotation = torch.as_tensor(rotation, dtype=torch.float64)
    translation = torch.as_tensor(translation, dtype=torch.float64)
    if rotation.shape != (3, 3) or translation.shape != (3,):
        raise ValueError(
            f"rotation must be [3, 3] and translation [3], got {tuple(rotation.shape)}, {tuple(translation.shape)}"
        )
    q_rotation = matrix_to_quat(rotation, order="wxyz").to(device=device, dtype=gaussians.quats.dtype)
    sh = gaussians.sh
    if sh.shape[1] > 1:
        sh = torch.einsum("kj,njc->nkc", sh_rotation(rotation, gaussians.sh_degree).to(device, sh.dtype), sh)
    r, t = rotation.to(device=device, dtype=dtype), translation.to(device=device, dtype=dtype)
    return Gaussians(
        means=scale * gaussians.means @ r.T + t,
        log_scales=gaussians.log_scales + math.log(scale),
        quats=quat_multiply(q_rotation.expand_as(gaussians.quats), gaussians.quats),
        opacity_logits=gaussians.opacity_logits,
        sh=sh,
        semantic=gaussians.semantic,
        batch_index=gaussians.batch_index,
    )


def sim3_matrix(scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """``[[s R, t], [0, 1]]`` as a float64 4x4 matrix."""
    matrix = np.eye(4)
    matrix[:3, :3] = scale * np.asarray(rotation, dtype=np.float64)
    matrix[:3, 3] = np.asarray(translation, dtype=np.float64)
    return matrix


def upright_sim3(c2w: Float[np.ndarray, "n 4 4"]) -> tuple[float, np.ndarray, np.ndarray]:
    """A rigid frame for a prediction without a dataset frame: the cameras' mean up (OpenCV ``-y``) is
    ``+z``, the first camera looks along ``+y`` (tilted by its pitch), the mean camera centre is the origin.

    Returns ``(1.0, R, t)`` for :func:`transform_gaussians` and ``alignment.apply_sim3``.
    """
    c2w = np.asarray(c2w, dtype=np.float64)
    up = -c2w[:, :3, 1].mean(axis=0)
    up = up / np.linalg.norm(up) if np.linalg.norm(up) > 1e-9 else -c2w[0, :3, 1]
    forward = c2w[0, :3, 2] - np.dot(c2w[0, :3, 2], up) * up
    if np.linalg.norm(forward) < 1e-6:  # the first camera looks straight up or down
        forward = c2w[0, :3, 0] - np.dot(c2w[0, :3, 0], up) * up
    forward /= np.linalg.norm(forward)
    rotation = np.stack([np.cross(forward, up), forward, up])  # rows: new x, y, z in prediction coordinates
    return 1.0, rotation, -rotation @ c2w[:, :3, 3].mean(axis=0)


# --------------------------------------------------------------------------------------------------
# Target-pose refinement
# --------------------------------------------------------------------------------------------------


def se3_exp(delta: Float[Tensor, "6"]) -> Float[Tensor, "4 4"]:
    """``[[exp([w]x), v], [0, 1]]`` for ``delta = (w, v)``: a rotation by axis-angle ``w`` and a translation ``v``."""
    w, v = delta[:3], delta[3:]
    zero = torch.zeros((), dtype=delta.dtype, device=delta.device)
    skew = torch.stack([zero, -w[2], w[1], w[2], zero, -w[0], -w[1], w[0], zero]).reshape(3, 3)
    top = torch.cat([torch.linalg.matrix_exp(skew), v[:, None]], dim=1)
    bottom = torch.tensor([[0.0, 0.0, 0.0, 1.0]], dtype=delta.dtype, device=delta.device)
    return torch.cat([top, bottom], dim=0)


@dataclass
class PoseRefinement:
    """Outcome of :func:`refine_pose`."""

    c2w: Float[Tensor, "4 4"]
    """The refined OpenCV camera-to-world pose (the best one seen)."""
    initial_loss: float
    """Photometric L1 at the starting pose."""
    final_loss: float
    """Photometric L1 at the returned pose."""


def refine_pose(
    render: Callable[[Float[Tensor, "4 4"]], Float[Tensor, "h w 3"]],
    c2w: Float[Tensor, "4 4"],
    target: Float[Tensor, "h w 3"],
    steps: int = POSE_REFINE_STEPS,
    lr: float = POSE_REFINE_LR,
    translation_scale: float = 1.0,
) -> PoseRefinement:
    """Photometric refinement of one camera pose against its image, the scene frozen.

    The pose is ``c2w @ exp(delta)`` with ``delta = (rotation, translation / translation_scale)`` in the
    camera's own frame, starting at 0; Adam minimises the L1 between ``render(pose)`` and ``target``.
    ``translation_scale`` expresses the translation step in the prediction's units (pass the Sim(3)
    scale of the alignment, dataset units per predicted unit), so that ``lr`` means the same on every
    dataset. The pose of lowest loss seen is returned (never worse than the start); a pose from which
    no Gaussian is visible is returned as it is.

    Args:
        render: Differentiable renderer of the frozen scene at an OpenCV camera-to-world pose.
        c2w: Initial pose (e.g. the dataset's, in the frame the scene was aligned to).
        target: The image to match, in [0, 1].
        steps, lr: Adam steps and learning rate.
        translation_scale: Units of the translation parameter (see above).
    """
    if steps < 0 or lr <= 0 or translation_scale <= 0:
        raise ValueError(f"need steps >= 0, lr > 0 and translation_scale > 0, got {steps}, {lr}, {translation_scale}")
    c2w = c2w.detach().float()
    target = target.detach().float()
    delta = torch.zeros(6, device=c2w.device, requires_grad=True)
    units = torch.tensor([1.0, 1.0, 1.0] + [translation_scale] * 3, device=c2w.device)
    optimizer = torch.optim.Adam([delta], lr=lr)
    best_loss, best_pose, initial_loss = math.inf, c2w, math.nan
    for step in range(steps + 1):
        pose = c2w @ se3_exp(delta * units)
        loss = (render(pose) - target).abs().mean()
        value = loss.item()
        if step == 0:
            initial_loss = value
        if value < best_loss:
            best_loss, best_pose = value, pose.detach()
        if step == steps or not loss.requires_grad:  # nothing of the scene in view: nothing to refine
            break
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return PoseRefinement(c2w=best_pose, initial_loss=initial_loss, final_loss=best_loss)
