"""The Feature-3DGS primitive set G_i = (mu_i, Sigma_i, c_i, alpha_i, f_i) of the paper's Sec. 3.1.

Gaussians are kept in the raw (pre-activation) parameterization that 3DGS and nerfstudio store, because
that is the space in which voxelization averages them (as AnySplat does) and in which ``ns-export``
writes them: log scales, unnormalized wxyz quaternions, opacity logits and SH coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor


@dataclass
class Gaussians:
    """A set of 3D Gaussians, possibly from several scenes (``batch_index`` tells which)."""

    means: Float[Tensor, "n 3"]
    """Centres in the world frame of the prediction (the first camera's frame)."""
    log_scales: Float[Tensor, "n 3"]
    """Natural log of the per-axis standard deviations."""
    quats: Float[Tensor, "n 4"]
    """Rotations as wxyz quaternions (gsplat's order), not necessarily unit length."""
    opacity_logits: Float[Tensor, "n"]
    """Opacity before the sigmoid."""
    sh: Float[Tensor, "n k 3"]
    """Spherical-harmonics colour coefficients, k = (degree + 1) ** 2; the DC term is sh[:, 0]."""
    semantic: Float[Tensor, "n f"]
    """Low-dimensional semantic feature, mapped to the 512-d LSeg space after rendering."""
    batch_index: Int[Tensor, "n"]
    """Which scene of the batch each Gaussian belongs to."""

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(round(self.sh.shape[1] ** 0.5)) - 1

    @property
    def scales(self) -> Float[Tensor, "n 3"]:
        return self.log_scales.exp()

    @property
    def opacities(self) -> Float[Tensor, "n"]:
        return torch.sigmoid(self.opacity_logits)

    @property
    def unit_quats(self) -> Float[Tensor, "n 4"]:
        return F.normalize(self.quats, dim=-1)

    def select(self, mask_or_index: Tensor) -> "Gaussians":
        """The Gaussians picked by a boolean mask or an index tensor."""
        return Gaussians(**{f.name: getattr(self, f.name)[mask_or_index] for f in fields(self)})

    def scene(self, b: int) -> "Gaussians":
        """The Gaussians of scene ``b`` of the batch."""
        return self.select(self.batch_index == b)

    def to(self, device: torch.device | str) -> "Gaussians":
        return Gaussians(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def detach(self) -> "Gaussians":
        return Gaussians(**{f.name: getattr(self, f.name).detach() for f in fields(self)})

    # Voxelization averages one flat attribute matrix (the semantic feature travels separately,
    # since Eq. 6 needs it on its own); these two pack and unpack it.
    def attribute_matrix(self) -> Float[Tensor, "n d"]:
        """log_scales | quats | opacity_logit | sh (flattened), as one [n, 8 + 3k] matrix."""
        n = len(self)
        return torch.cat([self.log_scales, self.quats, self.opacity_logits[:, None], self.sh.reshape(n, -1)], dim=-1)

    @staticmethod
    def from_attribute_matrix(
        means: Float[Tensor, "m 3"],
        attributes: Float[Tensor, "m d"],
        semantic: Float[Tensor, "m f"],
        batch_index: Int[Tensor, "m"],
    ) -> "Gaussians":
        """The inverse of ``attribute_matrix``."""
        log_scales, quats, opacity, sh = torch.split(attributes, [3, 4, 1, attributes.shape[-1] - 8], dim=-1)
        return Gaussians(
            means=means,
            log_scales=log_scales,
            quats=quats,
            opacity_logits=opacity[:, 0],
            sh=sh.reshape(means.shape[0], -1, 3),
            semantic=semantic,
            batch_index=batch_index,
        )
