"""The learning objective of FF3R (Sec. 3.3, Eq. 9-13), as pure functions of tensors.

``L_total = L_rgb + 0.1 L_feat + 0.1 L_warp + 1.0 L_d + 10.0 L_p`` (Eq. 13), with
``L_rgb = L1 + 0.05 LPIPS`` (Eq. 9), ``L_feat = 1 - cos`` against the 2D semantic teacher (Eq. 10),
and distillation of the camera head's pose encodings (Eq. 11) and of depth (Eq. 12) from a frozen
geometry teacher. ``L_warp`` (Eq. 2-4) lives in :mod:`ff3r_ns.training.warp`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal, Optional, Union

import lpips
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from ff3r_ns.network.cameras import decode_pose, unproject_depth
from ff3r_ns.network.checkpointing import chunked_sum
from ff3r_ns.network.weights import WeightsUnavailable

LPIPS_BACKBONES = {
    "alex": ("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    "vgg": ("vgg16-397923af.pth", "https://download.pytorch.org/models/vgg16-397923af.pth"),
}
"""torchvision ImageNet checkpoint (file name, address) of each LPIPS backbone."""


@dataclass
class LossWeights:
    """Weights of the terms of Eq. 13 (and of LPIPS inside ``L_rgb``, Eq. 9); paper values by default."""

    rgb: float = 1.0
    """Weight of ``L_rgb`` (Eq. 9), the photometric loss on rendered context views."""
    lpips: float = 0.05
    """``lambda_lpips`` inside ``L_rgb`` (Eq. 9); 0 trains without LPIPS (no backbone weights needed)."""
    feat: float = 0.1
    """``lambda_1``: weight of ``L_feat`` (Eq. 10), rendered features against the 2D semantic teacher."""
    warp: float = 0.1
    """``lambda_2``: weight of ``L_warp`` (Eq. 4), geometry-guided feature warping."""
    depth: float = 1.0
    """``lambda_3``: weight of ``L_d`` (Eq. 12), depth distillation."""
    pose: float = 10.0
    """``lambda_4``: weight of ``L_p`` (Eq. 11), pose-encoding distillation."""
    points: float = 0.0
    """Weight of ``L_pts`` (not in the paper; 0 keeps its objective): distance of the predicted point map from the
    teacher's in the first view's frame, a dense cross-view target for the cameras (VGGT and DUSt3R train so)."""


def rgb_loss(
    pred: Float[Tensor, "*batch 3 h w"],
    gt: Float[Tensor, "*batch 3 h w"],
    lpips_fn: Optional[lpips.LPIPS],
    lpips_weight: float,
    checkpoint_chunk: Optional[int] = None,
) -> Float[Tensor, ""]:
    """``L_rgb`` of Eq. 9: mean absolute error plus ``lpips_weight`` times the mean LPIPS.

    Images are in ``[0, 1]`` (LPIPS is called with ``normalize=True``). ``lpips_fn`` (see
    :func:`make_lpips`) is only used when ``lpips_weight > 0``. ``checkpoint_chunk``: LPIPS runs on that many
    images at a time, each chunk recomputed in the backward pass instead of keeping the backbone's activations
    (the same value and gradient, to float rounding).
    """
    if pred.shape != gt.shape or pred.ndim < 3 or pred.shape[-3] != 3:
        raise ValueError(
            f"pred and gt must both have shape [..., 3, h, w], got {list(pred.shape)} and {list(gt.shape)}"
        )
    # Eq. 9: ||I - I_hat||_1 + lambda_lpips LPIPS(I, I_hat).
    loss = (pred - gt).abs().mean()
    if lpips_weight > 0:
        if lpips_fn is None:
            raise ValueError(
                f"lpips_weight={lpips_weight} but no LPIPS network was given: build one with make_lpips() "
                "(it needs the backbone's ImageNet weights) or set the LPIPS weight to 0"
            )
        flat_pred, flat_gt = pred.reshape(-1, *pred.shape[-3:]), gt.reshape(-1, *gt.shape[-3:])

        def lpips_sum(p: Tensor, g: Tensor) -> Tensor:
            return lpips_fn(p, g, normalize=True).sum()

        total = chunked_sum(lpips_sum, checkpoint_chunk, flat_pred, flat_gt)
        loss = loss + lpips_weight * total / len(flat_pred)
    return loss


def feature_loss(
    pred: Float[Tensor, "b v f h w"],
    teacher: Float[Tensor, "b v f ht wt"],
    checkpoint_chunk: Optional[int] = None,
) -> Float[Tensor, ""]:
    """``L_feat`` of Eq. 10: mean over pixels of ``1 - cos(rendered feature, teacher feature)``.

    The teacher map is resized (bilinear, ``align_corners=False``) to the rendered resolution, so the
    loss is taken where the renderer predicts and the rendered features' gradient is untouched. The
    teacher is a target: no gradient reaches it. ``checkpoint_chunk``: that many views at a time, each chunk
    recomputed in the backward pass (the same value and gradient, to float rounding).
    """
    if pred.ndim != 5 or teacher.ndim != 5 or pred.shape[:3] != teacher.shape[:3]:
        raise ValueError(
            f"pred [b, v, f, h, w] and teacher [b, v, f, h', w'] must agree on b, v, f; "
            f"got {list(pred.shape)} and {list(teacher.shape)}"
        )
    b, v, f, h, w = pred.shape
    pred, teacher = pred.flatten(0, 1), teacher.detach().flatten(0, 1)

    def distance_sum(p: Tensor, t: Tensor) -> Tensor:
        if tuple(t.shape[-2:]) != (h, w):
            t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False)
        # Eq. 10: 1 - F_hat . F / (||F_hat|| ||F||).
        return (1 - F.cosine_similarity(p, t, dim=1)).sum()

    total = chunked_sum(distance_sum, checkpoint_chunk, pred, teacher)
    return total / (len(pred) * h * w)


def pose_distillation_loss(
    pred_pose_enc_list: list[Float[Tensor, "b v 9"]],
    teacher_pose_enc: Float[Tensor, "b v 9"],
    gamma: float = 0.6,
    delta: float = 1.0,
) -> Float[Tensor, ""]:
    """``L_p`` of Eq. 11 over the camera head's ``n`` refinement iterations.

    ``(1 / n) sum_i gamma^(n-1-i) mean(Huber_delta(p_i - p_teacher))``: the last iteration has weight
    1 and earlier ones decay by ``gamma``. As in VGGT's ``compute_camera_loss`` and AnySplat's
    distillation loss, the weights are not normalized to sum to 1; the sum is divided by ``n``. The
    Huber mean runs over batch, views and the 9 encoding entries. The teacher gets no gradient.
    """
    if len(pred_pose_enc_list) == 0:
        raise ValueError("pred_pose_enc_list is empty: give the pose encoding of every refinement iteration")
    teacher = teacher_pose_enc.detach()
    n = len(pred_pose_enc_list)
    loss = teacher.new_zeros(())
    for i, pred in enumerate(pred_pose_enc_list):
        if pred.shape != teacher.shape or pred.shape[-1] != 9:
            raise ValueError(
                f"pose encoding {i} has shape {list(pred.shape)}; it and the teacher's {list(teacher.shape)} "
                "must both be [b, v, 9]"
            )
        # Eq. 11: Huber (||.||_eps) on pose encodings, iteration i weighted by gamma^(n-1-i).
        loss = loss + gamma ** (n - 1 - i) * F.huber_loss(pred, teacher, delta=delta)
    return loss / n


def depth_distillation_loss(
    pred_depth: Float[Tensor, "b v h w"],
    teacher_depth: Float[Tensor, "b v h w"],
    teacher_conf: Float[Tensor, "b v h w"],
    top_fraction: float = 0.7,
) -> Float[Tensor, ""]:
    """``L_d`` of Eq. 12: squared depth error over the teacher's most confident pixels of each view.

    In each view the mask ``M`` keeps ``round(top_fraction * n_valid)`` pixels of highest
    ``teacher_conf`` among the ``n_valid`` valid ones (finite positive teacher depth, finite
    confidence); ties are broken arbitrarily. The loss is the mean squared error over ``M`` of each
    view, averaged over views that keep at least one pixel (0, with zero gradient, if none does). The
    teacher gets no gradient.
    """
    if not (pred_depth.ndim == 4 and pred_depth.shape == teacher_depth.shape == teacher_conf.shape):
        raise ValueError(
            f"pred_depth, teacher_depth and teacher_conf must share one shape [b, v, h, w], got "
            f"{list(pred_depth.shape)}, {list(teacher_depth.shape)} and {list(teacher_conf.shape)}"
        )
    pred = pred_depth.flatten(0, 1).flatten(1)  # [views, pixels]
    target = teacher_depth.detach().flatten(0, 1).flatten(1)
    mask = confident_pixels(teacher_depth, teacher_conf, top_fraction)
    target = torch.where(mask, target, torch.zeros_like(target))
    # Eq. 12: (1 / N) sum_i mean over M of (D_teacher - D_hat)^2.
    return _mean_over_views(torch.where(mask, (pred - target) ** 2, torch.zeros_like(pred)), mask)


def confident_pixels(
    teacher_depth: Float[Tensor, "b v h w"], teacher_conf: Float[Tensor, "b v h w"], top_fraction: float
) -> Bool[Tensor, "bv hw"]:
    """``M`` of Eq. 12 per view (flattened): the ``round(top_fraction * n_valid)`` valid pixels of highest
    confidence, valid meaning finite positive teacher depth and finite confidence; ties broken arbitrarily."""
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    target = teacher_depth.detach().flatten(0, 1).flatten(1)
    conf = teacher_conf.detach().flatten(0, 1).flatten(1)
    valid = torch.isfinite(target) & (target > 0) & torch.isfinite(conf)
    keep = torch.round(top_fraction * valid.sum(dim=1))  # [views]
    order = torch.where(valid, conf, torch.full_like(conf, -torch.inf)).argsort(dim=1, descending=True)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    ranks = torch.empty_like(order).scatter_(1, order, positions)  # rank of each pixel, 0 = most confident
    return valid & (ranks < keep[:, None])


def _mean_over_views(per_pixel: Float[Tensor, "bv hw"], mask: Bool[Tensor, "bv hw"]) -> Float[Tensor, ""]:
    """Mean over each view's masked pixels, then over the views that have any (0, no gradient, if none has)."""
    keep = mask.sum(dim=1).to(per_pixel.dtype)
    per_view = per_pixel.sum(dim=1) / keep.clamp(min=1)
    has_pixels = (keep > 0).to(per_view.dtype)
    return (per_view * has_pixels).sum() / has_pixels.sum().clamp(min=1)


def point_map_loss(
    pred_depth: Float[Tensor, "b v h w"],
    pred_pose_enc: Float[Tensor, "b v 9"],
    teacher_depth: Float[Tensor, "b v h w"],
    teacher_pose_enc: Float[Tensor, "b v 9"],
    teacher_conf: Float[Tensor, "b v h w"],
    top_fraction: float = 0.7,
) -> Float[Tensor, ""]:
    """``L_pts``: mean Euclidean distance between the predicted and the teacher's point maps.

    Each point map is the depth unprojected with the cameras its pose encoding decodes to (principal point at the
    image centre, as the encoding assumes), in the world of both encodings: the first view's camera, normalized
    scale. A wrong relative pose of view i moves every point of view i, so the cameras get a dense, geometry-
    weighted target, unlike ``L_p``'s nine numbers. Pixels are Eq. 12's ``M``; views are averaged as in ``L_d``.
    The teacher gets no gradient.
    """
    shapes = {tuple(pred_depth.shape), tuple(teacher_depth.shape), tuple(teacher_conf.shape)}
    encodings = {tuple(pred_pose_enc.shape), tuple(teacher_pose_enc.shape)}
    if pred_depth.ndim != 4 or len(shapes) != 1 or encodings != {(*pred_depth.shape[:2], 9)}:
        raise ValueError(
            f"depths and confidence must share one shape [b, v, h, w] and the pose encodings be [b, v, 9]; got "
            f"{list(pred_depth.shape)}, {list(teacher_depth.shape)}, {list(teacher_conf.shape)}, "
            f"{list(pred_pose_enc.shape)} and {list(teacher_pose_enc.shape)}"
        )
    hw = tuple(pred_depth.shape[-2:])
    mask = confident_pixels(teacher_depth, teacher_conf, top_fraction)
    target_depth = torch.where(torch.isfinite(teacher_depth), teacher_depth, 0).detach()
    pred = unproject_depth(pred_depth, *decode_pose(pred_pose_enc, hw)).flatten(0, 1).flatten(1, 2)  # [bv, hw, 3]
    target = unproject_depth(target_depth, *decode_pose(teacher_pose_enc.detach(), hw)).flatten(0, 1).flatten(1, 2)
    # sqrt's gradient at 0 is infinite: take it only where the distance is positive (0 elsewhere, exactly).
    squared = ((pred - torch.where(mask[..., None], target, pred.detach())) ** 2).sum(-1)
    positive = mask & (squared > 0)
    distance = torch.where(positive, torch.where(positive, squared, 1.0).sqrt(), 0.0)
    return _mean_over_views(distance, mask)


def lpips_backbone_file(weights_path: Union[str, Path, None] = None, net: Literal["alex", "vgg"] = "vgg") -> Path:
    """The torchvision checkpoint of LPIPS's backbone: ``weights_path``, or torchvision's cache when ``None``.

    Raises:
        WeightsUnavailable: no such file; the message says which file to get and where to put it.
    """
    if net not in LPIPS_BACKBONES:
        raise ValueError(f'net must be "alex" or "vgg", got {net!r}')
    file_name, url = LPIPS_BACKBONES[net]
    default_path = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    path = Path(weights_path) if weights_path is not None else default_path
    if not path.is_file():
        raise WeightsUnavailable(
            f"LPIPS ({net}) needs the ImageNet backbone weights {file_name}, not found at {path}. Download "
            f"{url} and put it at {default_path} (or pass its path: ns-train --pipeline.model.lpips-weights PATH), or set the "
            "LPIPS loss weight to 0 to train without LPIPS (--pipeline.model.loss.lpips 0)."
        )
    return path


def make_lpips(weights_path: Union[str, Path, None] = None, net: Literal["alex", "vgg"] = "vgg") -> lpips.LPIPS:
    """A frozen LPIPS network (eval mode) built from local files only.

    LPIPS is an ImageNet backbone (torchvision ``alexnet`` or ``vgg16``) plus linear layers. The
    linear layers ship inside the ``lpips`` package; the backbone is read from ``weights_path``, a
    torchvision checkpoint (e.g. ``vgg16-397923af.pth``), or, when ``None``, from torchvision's cache
    ``$TORCH_HOME/hub/checkpoints/``. VGG is the default, as for training in MVSplat and AnySplat.

    Raises:
        FileNotFoundError: no backbone checkpoint; the message says which file to get and where to put it.
        ValueError: the checkpoint is not a torchvision checkpoint of ``net``.
    """
    path = lpips_backbone_file(weights_path, net)
    state = torch.load(path, map_location="cpu", weights_only=True)
    features = {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}
    if not features:
        raise ValueError(f"{path} is not a torchvision {net} checkpoint: it has no 'features.*' entries")
    with warnings.catch_warnings():  # lpips still builds its backbone with torchvision's deprecated arguments
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(pretrained=True, net=net, pnet_rand=True, verbose=False)
    # lpips splits torchvision's `features` into slices that keep the layer indices: features.i -> sliceK.i.
    remapped = {
        f"{slice_name}.{key}": value
        for slice_name, block in model.net.named_children()
        for layer, _ in block.named_children()
        for key, value in features.items()
        if key.split(".")[0] == layer
    }
    try:
        model.net.load_state_dict(remapped, strict=True)
    except RuntimeError as error:
        raise ValueError(f"{path} does not hold torchvision {net} weights: {error}") from error
    return model.eval().requires_grad_(False)


def total_loss(terms: dict[str, Tensor], weights: LossWeights) -> tuple[Float[Tensor, ""], dict[str, float]]:
    """``L_total`` of Eq. 13: the weighted sum of the given terms.

    ``terms`` maps names of :class:`LossWeights` fields (``rgb``, ``feat``, ``warp``, ``depth``,
    ``pose``, ``points``; LPIPS is inside ``rgb``) to scalar losses; a term left out contributes nothing.
    Returns the total and, for logging, every unweighted term and ``"total"`` as floats.
    """
    names = {field.name for field in fields(LossWeights)} - {"lpips"}
    unknown = set(terms) - names
    if unknown:
        raise ValueError(f"unknown loss terms {sorted(unknown)}; expected some of {sorted(names)}")
    if not terms:
        raise ValueError("terms is empty: give at least one loss term")
    for name, term in terms.items():
        if term.ndim != 0:
            raise ValueError(f"loss term {name!r} must be a scalar, got shape {list(term.shape)}")
    # Eq. 13: L_rgb + lambda_1 L_feat + lambda_2 L_warp + lambda_3 L_d + lambda_4 L_p.
    total = sum(getattr(weights, name) * term for name, term in terms.items())
    log = {name: float(term.detach()) for name, term in terms.items()}
    log["total"] = float(total.detach())
    return total, log
