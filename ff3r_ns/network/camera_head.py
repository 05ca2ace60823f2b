"""Camera head (VGGT): iterative refinement of a 9-d pose encoding from each view's camera token.

Parameter names follow VGGT's ``vggt/heads/camera_head.py`` (``trunk.N.*``, ``token_norm``, ``trunk_norm``,
``empty_pose_tokens``, ``embed_pose``, ``poseLN_modulation``, ``adaln_norm``, ``pose_branch``), so the
``camera_head.*`` entries of the VGGT-1B checkpoint load with the prefix stripped.

Pose encoding "absT_quaR_FoV", per view: [tx, ty, tz, qx, qy, qz, qw, fov_h, fov_w]: translation and
rotation (quaternion, xyzw) of the OpenCV world-to-camera transform, and the vertical and horizontal fields
of view in radians (principal point at the image center). The world frame is the first view's camera.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from ff3r_ns.network.transformer import Block, Mlp

POSE_ENCODING_DIM = 9


class CameraHead(nn.Module):
    """Predicts each view's camera from the camera token of the last encoder layer.

    A DiT-style adaptive LayerNorm conditions the (normalized) camera tokens on the current pose estimate
    (a learned "empty" pose at the first step); a trunk of transformer blocks attends across the views'
    tokens and an MLP predicts a pose update. The estimate is detached before each update is added, as in VGGT,
    so the gradient of iteration i's output reaches only iteration i's delta.

    Args:
        dim_in: Token channels (2C).
        trunk_depth: Transformer blocks in the trunk.
        num_heads: Attention heads of the trunk.
        mlp_ratio: MLP hidden channels over dim_in in the trunk.
        init_values: LayerScale initial value of the trunk.
    """

    def __init__(
        self,
        dim_in: int = 2048,
        trunk_depth: int = 4,
        num_heads: int = 16,
        mlp_ratio: float = 4.0,
        init_values: float = 0.01,
    ) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            *(Block(dim_in, num_heads, mlp_ratio, init_values=init_values) for _ in range(trunk_depth))
        )
        self.token_norm = nn.LayerNorm(dim_in)
        self.trunk_norm = nn.LayerNorm(dim_in)
        self.empty_pose_tokens = nn.Parameter(torch.zeros(1, 1, POSE_ENCODING_DIM))
        self.embed_pose = nn.Linear(POSE_ENCODING_DIM, dim_in)
        self.poseLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim_in, 3 * dim_in))
        self.adaln_norm = nn.LayerNorm(dim_in, elementwise_affine=False, eps=1e-6)
        self.pose_branch = Mlp(dim_in, dim_in // 2, POSE_ENCODING_DIM)

    def forward(
        self, tokens_list: Sequence[Float[Tensor, "b s p c"]], num_iterations: int = 4
    ) -> list[Float[Tensor, "b s 9"]]:
        """Refines the pose encoding ``num_iterations`` times.

        Args:
            tokens_list: Encoder layers; only the last one is read, and only its token 0 (camera token).
            num_iterations: Refinement steps.

        Returns:
            The activated pose encoding after each step (the last is the prediction): translation and
            quaternion unchanged (linear), fields of view through ReLU.
        """
        tokens = self.token_norm(tokens_list[-1][:, :, 0])
        b, s, _ = tokens.shape
        normed = self.adaln_norm(tokens)
        pose = None
        poses = []
        for _ in range(num_iterations):
            if pose is None:
                condition = self.empty_pose_tokens.expand(b, s, -1)
            else:
                # VGGT detaches the running estimate itself: iteration i learns only its own delta.
                condition = pose = pose.detach()
            shift, scale, gate = self.poseLN_modulation(self.embed_pose(condition)).chunk(3, dim=-1)
            x = tokens + gate * (normed * (1 + scale) + shift)
            delta = self.pose_branch(self.trunk_norm(self.trunk(x)))
            pose = delta if pose is None else pose + delta
            poses.append(torch.cat((pose[..., :7], F.relu(pose[..., 7:])), dim=-1))
        return poses
