"""The teachers of annotation-free training (paper Sec. 3.3): where the targets of L_p, L_d and L_feat come from.

Training sees a :class:`TrainBatch` (b scenes of s views each) and asks two teachers for targets:

Geometry (pose encodings for ``L_p``, Eq. 11; depth and its confidence for ``L_d``, Eq. 12), one of

- ``"vggt"``: a frozen VGGT (:class:`VGGTTeacher`, VGGT-1B's layout, weights from a file or the hub),
  as in the paper and AnySplat;
- ``"dataset"``: the views' own poses, intrinsics and depth maps (synthetic ground truth, or a scene's
  SfM poses), which stand in for VGGT where its weights are not at hand.

Semantics (the 512-d 2D features of ``L_feat``, Eq. 10), one of

- ``"lseg"``: the network's own frozen semantic encoder output (``FF3ROutput.semantic_2d``), which is
  LSeg's once LSeg's weights are loaded;
- ``"dataset"``: the views' stored teacher features (the synthetic rooms' stand-in for LSeg).

The normalized frame
--------------------
Every geometry target is expressed in one frame, the one VGGT predicts in and FF3R learns to predict in:

1. the world is the first view's camera (OpenCV): ``w2c_i <- w2c_i @ c2w_0``, so view 0 is the identity;
2. the scale is divided by ``scale = mean over valid pixels of all s views of ||X||``, ``X`` being the
   pixel's depth unprojected in that frame, i.e. its Euclidean distance to the first camera's centre
   (VGGT's normalization of its training ground truth: mean point distance 1). Translations and depth
   are divided by ``scale``; rotations and fields of view are unchanged.

The dataset teacher applies it to the ground truth; the VGGT teacher re-applies it to VGGT's own
prediction (VGGT predicts in this frame already, up to its error), so that both teachers agree exactly.
A view set without depth maps (a SfM scene) falls back to ``scale = mean distance of the other camera
centres to the first``; that is another gauge, and ``L_d`` is then left out (``depth`` is None).
The pose encoding is :func:`ff3r_ns.network.cameras.encode_pose` of the normalized world-to-camera
matrices and the intrinsics at the training resolution (the principal point is not encoded).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal, Optional, Protocol, Tuple, Union

import torch
import torch.nn as nn
from jaxtyping import Float
from torch import Tensor

from ff3r_ns.network.cameras import c2w_to_w2c, encode_pose, to_4x4, unproject_depth, w2c_to_c2w
from ff3r_ns.network.config import FF3RConfig, preset
from ff3r_ns.network.ff3r import decode_cameras, geometry_modules
from ff3r_ns.network.precision import full_precision, parameter_dtype
from ff3r_ns.network.weights import VGGT_HUB_ID, Source, load_vggt_weights

GeometryTeacherKind = Literal["dataset", "vggt"]
SemanticTeacherKind = Literal["dataset", "lseg"]

VGGT_TOP_FRACTION = 0.7
"""Share of VGGT's most confident pixels per view kept by ``L_d``'s mask M (the paper's top 70%)."""


@dataclass
class TrainBatch:
    """One training sample: b scenes with s views each, as the datamanager yields it."""

    images: Float[Tensor, "b s 3 h w"]
    """RGB in [0, 1]; the network's input and the target of ``L_rgb``."""
    intrinsics: Optional[Float[Tensor, "b s 3 3"]] = None
    """Pinhole intrinsics at the view size, where the scenes have them."""
    camera_to_worlds: Optional[Float[Tensor, "b s 4 4"]] = None
    """The scenes' OpenCV camera-to-world poses (any frame and scale), where they have them."""
    depth: Optional[Float[Tensor, "b s h w"]] = None
    """Z-depth in the scenes' units, 0 where unknown, where they have it."""
    features: Optional[Float[Tensor, "b s c hf wf"]] = None
    """Stored 2D teacher features (synthetic rooms), where they have them."""
    seeds: Tuple[int, ...] = ()
    """One seed per scene for its other random choices (the view pairs of ``L_warp``), drawn by the
    datamanager; per scene, so a scene's choices do not depend on its place in the batch or on the rank that
    holds it. Empty: seed 0 for every scene."""

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    def to(self, device: Union[str, torch.device]) -> "TrainBatch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return TrainBatch(**{k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in moved.items()})


@dataclass
class GeometryTargets:
    """Targets of ``L_p`` and ``L_d``, in the normalized frame (module docstring)."""

    pose_enc: Float[Tensor, "b s 9"]
    """VGGT pose encodings (translation, xyzw quaternion, fov_h, fov_w) of the normalized world-to-cameras."""
    depth: Optional[Float[Tensor, "b s h w"]]
    """Normalized z-depth, 0 where unknown; None when the teacher has no depth (then no ``L_d``)."""
    depth_conf: Optional[Float[Tensor, "b s h w"]]
    """Confidence of each depth pixel; ``L_d`` keeps the ``top_fraction`` most confident valid pixels."""
    top_fraction: float
    """Share of valid pixels per view that ``L_d`` uses: 1 for exact depth, 0.7 for VGGT."""
    scale: Float[Tensor, " b"]
    """What translations and depth of each scene were divided by."""


class GeometryTeacher(Protocol):
    """Anything that turns a batch into geometry targets."""

    def __call__(self, batch: TrainBatch) -> GeometryTargets: ...


def normalize_geometry(
    camera_to_worlds: Float[Tensor, "b s 4 4"],
    intrinsics: Float[Tensor, "b s 3 3"],
    depth: Optional[Float[Tensor, "b s h w"]],
) -> tuple[Float[Tensor, "b s 3 4"], Optional[Float[Tensor, "b s h w"]], Float[Tensor, " b"]]:
    """Views moved into the normalized frame: (world-to-cameras, depth, scale), see the module docstring.

    Raises:
        ValueError: a scene whose scale is 0 (no valid depth pixel and all cameras at one place).
    """
    c2w = to_4x4(camera_to_worlds.double())
    relative = c2w_to_w2c(c2w[:, :1]) @ c2w  # camera-to-first-camera
    w2c = c2w_to_w2c(relative)[..., :3, :]
    if depth is not None:
        points = unproject_depth(depth.double(), w2c, intrinsics.double())  # [b, s, h, w, 3], first-camera frame
        valid = (depth > 0).double()
        scale = (points.norm(dim=-1) * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)
        scale = torch.where(valid.flatten(1).sum(1) > 0, scale, torch.zeros_like(scale))
    else:
        scale = relative[:, 1:, :3, 3].norm(dim=-1).mean(dim=1)
    if bool((scale <= 0).any()):
        raise ValueError(
            "a training sample has no scale: no valid depth pixel and every camera at the first camera's place; "
            "check the scene's depth maps and poses"
        )
    w2c = torch.cat([w2c[..., :3], w2c[..., 3:] / scale[:, None, None, None]], dim=-1)
    if depth is not None:
        depth = depth.double() / scale[:, None, None, None]
    return w2c.to(camera_to_worlds.dtype), None if depth is None else depth.to(camera_to_worlds.dtype), scale.float()


class DatasetGeometryTeacher:
    """Ground truth as the teacher: the views' poses, intrinsics and depth, normalized.

    The depth confidence is 1 on valid pixels (all of them count: ``top_fraction = 1``).
    """

    def __call__(self, batch: TrainBatch) -> GeometryTargets:
        if batch.camera_to_worlds is None or batch.intrinsics is None:
            raise ValueError(
                "the 'dataset' geometry teacher needs the views' poses and intrinsics, and these scenes have none "
                "(unposed images): train with the VGGT teacher instead (teacher geometry 'vggt' and its weights)"
            )
        w2c, depth, scale = normalize_geometry(batch.camera_to_worlds, batch.intrinsics, batch.depth)
        pose_enc = encode_pose(w2c, batch.intrinsics, batch.image_hw)
        conf = None if depth is None else (depth > 0).to(depth.dtype)
        return GeometryTargets(pose_enc=pose_enc, depth=depth, depth_conf=conf, top_fraction=1.0, scale=scale)


class VGGTTeacher(nn.Module):
    """A frozen VGGT: aggregator, camera head and depth head in VGGT-1B's layout (``load_vggt_weights`` fits it).

    Its prediction is re-normalized (module docstring); the depth confidence is VGGT's, and ``L_d`` keeps the
    ``top_fraction`` most confident pixels of each view.

    Args:
        config: the network sizes; the default, the ``large`` preset, is VGGT-1B's.
        top_fraction: share of the most confident pixels of each view used by ``L_d``.
    """

    def __init__(self, config: Optional[FF3RConfig] = None, top_fraction: float = VGGT_TOP_FRACTION) -> None:
        super().__init__()
        self.config = config if config is not None else preset("large")
        self.top_fraction = top_fraction
        self.aggregator, self.camera_head, self.depth_head = geometry_modules(self.config)
        self.requires_grad_(False)
        self.eval()

    @classmethod
    def from_weights(
        cls, source: Source = VGGT_HUB_ID, config: Optional[FF3RConfig] = None, top_fraction: float = VGGT_TOP_FRACTION
    ) -> "VGGTTeacher":
        """A teacher with VGGT weights from a file, a folder or a hub id (``WeightsUnavailable`` if none)."""
        teacher = cls(config, top_fraction)
        load_vggt_weights(teacher, source)  # type: ignore[arg-type]  # duck-typed: aggregator, camera_head, depth_head
        return teacher.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "VGGTTeacher":
        return super().train(False)  # frozen: never in training mode

    @torch.no_grad()
    def forward(self, batch: TrainBatch) -> GeometryTargets:
        images = batch.images
        hw = batch.image_hw
        tokens, patch_start = self.aggregator(images, keep_layers=self.config.geometry.intermediate_layer_idx)
        # VGGT's heads run with autocast off, in float32 (network/precision.py).
        with full_precision(images.device):
            dtype = parameter_dtype(self.depth_head)
            tokens, images = [t.to(dtype) for t in tokens], images.to(dtype)
            pose_enc = self.camera_head(tokens, num_iterations=self.config.heads.camera_iterations)[-1]
            depth, conf = self.depth_head(tokens, images, patch_start, frames_chunk_size=self.config.heads.frames_chunk_size)
        w2c, intrinsics = decode_cameras(pose_enc, hw)
        w2c, depth, scale = normalize_geometry(w2c_to_c2w(to_4x4(w2c)), intrinsics, depth[..., 0].float())
        return GeometryTargets(
            pose_enc=encode_pose(w2c, intrinsics, hw),
            depth=depth,
            depth_conf=conf.float(),
            top_fraction=self.top_fraction,
            scale=scale,
        )


def semantic_targets(
    kind: SemanticTeacherKind, batch: TrainBatch, semantic_2d: Float[Tensor, "b s c hs ws"]
) -> Float[Tensor, "b s c ht wt"]:
    """The 2D features ``L_feat`` pulls the rendered features towards (no gradient).

    Args:
        kind: ``"lseg"``: the network's semantic encoder output ``semantic_2d`` (LSeg once its weights are
            loaded); ``"dataset"``: the batch's stored teacher features.
        batch: the training batch.
        semantic_2d: ``FF3ROutput.semantic_2d`` of this batch.
    """
    if kind == "lseg":
        return semantic_2d.detach().float()
    if kind == "dataset":
        if batch.features is None:
            raise ValueError(
                "the 'dataset' semantic teacher needs stored teacher features (synthetic rooms have them in "
                "features/); for other scenes use the 'lseg' teacher with LSeg's weights"
            )
        return batch.features.float()
    raise ValueError(f"unknown semantic teacher {kind!r}; choose 'dataset' or 'lseg'")
