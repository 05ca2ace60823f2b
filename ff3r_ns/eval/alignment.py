"""Aligning predicted cameras to the dataset's, and pose errors after alignment.

Predicted cameras live in the model's own frame (first camera at the origin, arbitrary scale); to render
the dataset's target views or to score poses they are brought into the dataset's frame by the similarity
``x -> s R x + t`` that best maps predicted camera centres onto the true ones (Umeyama 1991), as
AnySplat and Uni3R do. Poses are OpenCV camera-to-world ``[N, 4, 4]`` matrices (``SceneData``); all
computation is float64 numpy, torch inputs are accepted and converted.
"""

from __future__ import annotations

from typing import Union

import numpy as np
from jaxtyping import Float
from torch import Tensor

ArrayLike = Union[np.ndarray, Tensor]
Sim3 = tuple[float, np.ndarray, np.ndarray]
"""(s, R [3, 3], t [3]) of the similarity x -> s R x + t."""

COLLINEAR_TOLERANCE = 1e-9
"""Points count as collinear when their second principal extent is below this share of the first."""


def _as_numpy(values: ArrayLike) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def _is_collinear(points: np.ndarray) -> bool:
    """True for fewer than 3 points or points on one line (including all equal)."""
    if len(points) < 3:
        return True
    singular = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    return singular[0] == 0 or singular[1] <= COLLINEAR_TOLERANCE * singular[0]


def umeyama_sim3(
    src: Float[ArrayLike, "n 3"], dst: Float[ArrayLike, "n 3"], with_scale: bool = True
) -> Sim3:
    """Similarity ``(s, R, t)`` minimising ``sum_i ||dst_i - (s R src_i + t)||^2`` (Umeyama 1991).

    With means ``mu``, centred points ``X = src - mu_src``, ``Y = dst - mu_dst`` and
    ``Sigma = Y^T X / n = U D V^T``: ``R = U S V^T`` with ``S = diag(1, 1, det(U) det(V))`` (a rotation,
    never a reflection), ``s = trace(D S) / (||X||^2 / n)`` (1 when ``with_scale`` is False) and
    ``t = mu_dst - s R mu_src``.

    Raises:
        ValueError: fewer than 3 points, or ``src`` collinear (the rotation about the line is undetermined).
    """
    src_np, dst_np = _as_numpy(src), _as_numpy(dst)
    if src_np.ndim != 2 or src_np.shape[1] != 3 or src_np.shape != dst_np.shape:
        raise ValueError(f"src and dst must both be [n, 3], got {src_np.shape} and {dst_np.shape}")
    if _is_collinear(src_np) or _is_collinear(dst_np):
        raise ValueError(
            f"a Sim(3) fit needs at least 3 non-collinear points in src and dst, got {len(src_np)} "
            "(collinear or too few); use align_poses, which falls back to aligning a camera pose"
        )
    mu_src, mu_dst = src_np.mean(axis=0), dst_np.mean(axis=0)
    x, y = src_np - mu_src, dst_np - mu_dst
    covariance = y.T @ x / len(src_np)
    u, d, vt = np.linalg.svd(covariance)
    sign = np.ones(3)
    sign[2] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0
    rotation = (u * sign) @ vt
    scale = float(np.dot(d, sign) / np.mean(np.sum(x**2, axis=1))) if with_scale else 1.0
    translation = mu_dst - scale * rotation @ mu_src
    return scale, rotation, translation


def apply_sim3(c2w: Float[ArrayLike, "n 4 4"], sim3: Sim3) -> np.ndarray:
    """Camera-to-world poses moved by ``x -> s R x + t``: rotation ``R R_c``, centre ``s R c + t``."""
    scale, rotation, translation = sim3
    poses = _as_numpy(c2w).copy()
    poses[..., :3, :3] = rotation @ poses[..., :3, :3]
    poses[..., :3, 3] = scale * poses[..., :3, 3] @ rotation.T + translation
    return poses


def align_poses(
    pred_c2w: Float[ArrayLike, "n 4 4"], gt_c2w: Float[ArrayLike, "n 4 4"]
) -> tuple[np.ndarray, Sim3]:
    """Predicted camera-to-world poses expressed in the ground truth's frame, and the similarity used.

    - at least 3 cameras whose centres (predicted and true) are not collinear: Umeyama Sim(3) on the
      camera centres (:func:`umeyama_sim3`);
    - otherwise (2 cameras, or all centres on one line, as in a straight dolly): the rotation maps the
      first predicted camera's orientation onto the true one, ``R = R_gt0 R_pred0^T``; the scale is the
      ratio of true to predicted distance between the first camera and the one farthest from it (the
      baseline; 1 when the predicted centres coincide); ``t`` puts the first camera's centre on the true
      one. The first aligned pose then equals the true first pose exactly.

    Returns:
        ``(aligned_pred [n, 4, 4], (s, R, t))``.
    """
    pred, gt = _as_numpy(pred_c2w), _as_numpy(gt_c2w)
    if pred.ndim != 3 or pred.shape[1:] != (4, 4) or pred.shape != gt.shape or len(pred) == 0:
        raise ValueError(f"pred_c2w and gt_c2w must both be [n, 4, 4] with n >= 1, got {pred.shape} and {gt.shape}")
    pred_centres, gt_centres = pred[:, :3, 3], gt[:, :3, 3]
    if not (_is_collinear(pred_centres) or _is_collinear(gt_centres)):
        sim3 = umeyama_sim3(pred_centres, gt_centres)
    else:
        rotation = gt[0, :3, :3] @ pred[0, :3, :3].T
        far = int(np.argmax(np.linalg.norm(gt_centres - gt_centres[0], axis=1)))
        pred_baseline = np.linalg.norm(pred_centres[far] - pred_centres[0])
        gt_baseline = np.linalg.norm(gt_centres[far] - gt_centres[0])
        scale = float(gt_baseline / pred_baseline) if pred_baseline > 0 else 1.0
        translation = gt_centres[0] - scale * rotation @ pred_centres[0]
        sim3 = (scale, rotation, translation)
    return apply_sim3(pred, sim3), sim3


def rotation_angle_deg(rotation_a: np.ndarray, rotation_b: np.ndarray) -> np.ndarray:
    """Geodesic angle in degrees between rotations ``[..., 3, 3]``: the angle of ``R_a^T R_b``.

    Uses ``atan2(|axis| sin, cos)`` from the skew and trace parts, accurate near 0 and 180 degrees.
    """
    relative = np.swapaxes(rotation_a, -1, -2) @ rotation_b
    cos = (np.trace(relative, axis1=-2, axis2=-1) - 1.0) / 2.0
    skew = np.stack(
        [
            relative[..., 2, 1] - relative[..., 1, 2],
            relative[..., 0, 2] - relative[..., 2, 0],
            relative[..., 1, 0] - relative[..., 0, 1],
        ],
        axis=-1,
    )
    sin = np.linalg.norm(skew, axis=-1) / 2.0
    return np.degrees(np.arctan2(sin, cos))


def pose_errors(
    pred_c2w: Float[ArrayLike, "n 4 4"], gt_c2w: Float[ArrayLike, "n 4 4"], align: bool = True
) -> dict[str, float]:
    """Per-camera rotation and camera-centre errors, summarised by mean and median.

    Rotation error: geodesic angle between predicted and true camera orientation (degrees).
    Translation error: distance between predicted and true camera centres, in ground-truth units.
    With ``align`` (default) the predictions are first brought into the ground truth's frame with
    :func:`align_poses`; pass False for poses already aligned.

    Returns:
        ``{"rotation_deg_mean", "rotation_deg_median", "translation_mean", "translation_median"}``.
    """
    pred, gt = _as_numpy(pred_c2w), _as_numpy(gt_c2w)
    if align:
        pred, _ = align_poses(pred, gt)
    elif pred.shape != gt.shape or pred.shape[-2:] != (4, 4):
        raise ValueError(f"pred_c2w and gt_c2w must both be [n, 4, 4], got {pred.shape} and {gt.shape}")
    rotation = rotation_angle_deg(pred[:, :3, :3], gt[:, :3, :3])
    translation = np.linalg.norm(pred[:, :3, 3] - gt[:, :3, 3], axis=1)
    return {
        "rotation_deg_mean": float(np.mean(rotation)),
        "rotation_deg_median": float(np.median(rotation)),
        "translation_mean": float(np.mean(translation)),
        "translation_median": float(np.median(translation)),
    }
