"""FF3R's reconstruction as a nerfstudio model: a splatfacto model that one forward pass fills.

The Gaussians are not optimized per scene: the pipeline runs the network once and hands its output to
:meth:`FF3RModel.load_gaussians`. Being a ``SplatfactoModel`` with splatfacto's ``gauss_params`` is what
``ns-export gaussian-splat`` and the viewer's splat-specific paths expect; an extra ``semantic`` entry
holds the low-dimensional semantic feature and ``semantic_proj`` the 1x1 layer that lifts it to the
512-d LSeg/CLIP space.

Rendering goes through :func:`ff3r_ns.network.render.render_gaussians` (gsplat on CUDA, PyTorch on the
CPU). Besides rgb/depth/accumulation, the model renders semantic views for the viewer:

- ``semantic_pca``: the lifted features through a 3-component PCA fitted once on the Gaussians' own
  lifted features, so a surface keeps its colour from every viewpoint.
- ``segmentation`` / ``segmentation_ids``: per-pixel argmax of the cosine to the label prompts.
- ``relevancy``: LERF's score of the query against canonical negatives.

Pixel features are never lifted to 512-d explicitly (a 1080p frame would need 4 GB): every score is a
dot product with the unit lifted feature, computed from the low-dimensional one (:func:`lifted_dot`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type

import torch
import torch.nn.functional as F
import torchvision
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.scene_box import OrientedBox
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes
from nerfstudio.model_components.lib_bilagrid import color_correct
from nerfstudio.models.splatfacto import SH2RGB, SplatfactoModel, SplatfactoModelConfig, num_sh_bases
from nerfstudio.utils import colormaps
from nerfstudio.viewer.viewer_elements import ViewerText
from pytorch_msssim import SSIM
from torch import Tensor, nn
from torch.nn import Parameter
from torchmetrics.image import PeakSignalNoiseRatio

from ff3r_ns.network.cameras import c2w_to_w2c, opengl_to_opencv_c2w
from ff3r_ns.network.gaussians import Gaussians
from ff3r_ns.network.render import Backend, render_gaussians
from ff3r_ns.network.semantic import TextEncoder

LIFTED_DIM = 512
"""Width of the space semantic_proj lifts to: CLIP ViT-B/32's embeddings, which LSeg's features live in."""
RELEVANCY_SCALE = 10.0
"""LERF's softmax scale over a (positive, negative) pair of cosines."""
PCA_MAX_SAMPLES = 1 << 16
"""Gaussians (a fixed random subset) the semantic PCA is fitted on; plenty for a 3-component basis."""
PCA_RANGE_QUANTILE = 0.01
"""PCA coordinates between this quantile and its complement map to [0, 1], so outliers don't wash out the colours."""
PCA_MIN_SPAN = 0.01
"""Narrowest coordinate range stretched to [0, 1] (coordinates of unit vectors: closer features look alike)."""
GAUSSIAN_PARAMS = ("means", "scales", "quats", "features_dc", "features_rest", "opacities", "semantic")
"""Entries of ``gauss_params``: splatfacto's six (which ``ns-export`` reads) and the semantic feature."""


@dataclass
class FF3RModelConfig(SplatfactoModelConfig):
    """Gaussians predicted by FF3R in one forward pass, rendered with colour, depth and semantics."""

    _target: Type = field(default_factory=lambda: FF3RModel)
    sh_degree: int = 1
    """SH degree of the Gaussians' colour; must equal the network's (``FF3RConfig.heads.sh_degree``)."""
    semantic_dim: int = 32
    """Channels of the per-Gaussian semantic feature; must equal the network's (``FF3RConfig.heads.semantic_dim``)."""
    text_encoder_weights: str = "openai"
    """CLIP ViT-B/32 text tower for labels and queries: "openai" (the Hugging Face cache, or the hub when
    online) or a local file (open_clip weights, or LSeg's demo_e200.ckpt). Without it, only the text outputs are off."""
    segmentation_labels: str = "wall;floor;ceiling;chair;table;sofa;bed;other"
    """Class prompts of the segmentation output, separated by ';' (editable in the viewer)."""
    relevancy_negatives: str = "object;things;stuff;texture"
    """Canonical negative phrases the relevancy query is scored against, separated by ';' (LERF's)."""
    background_color: Literal["random", "black", "white"] = "black"
    """Colour behind the Gaussians ("random": a new one per training step, the viewer's grey otherwise)."""
    render_backend: Backend = "auto"
    """Rasterizer: "gsplat" (CUDA), "torch" (any device, slow), "auto" (gsplat for CUDA tensors)."""


@dataclass
class _Helpers:
    """What the model computes or loads on demand, kept out of its state dict so that checkpoints carry the
    reconstruction only (and load whether or not LPIPS or CLIP weights exist where they are read)."""

    lpips: Optional[nn.Module] = None
    lpips_checked: bool = False
    text_encoder: Optional[TextEncoder] = None
    text_encoder_failed: bool = False
    text_embeddings: Dict[str, Tensor] = field(default_factory=dict)
    pca: Optional[Tuple[Tensor, Tensor, Tensor, Tensor]] = None


def parse_prompts(text: str) -> List[str]:
    """Prompts of a ';'-separated list, stripped, empty ones dropped."""
    return [prompt.strip() for prompt in text.split(";") if prompt.strip()]


def label_palette(num_labels: int) -> Float[Tensor, "k 3"]:
    """A fixed colour per label index: hues a golden angle apart, so neighbouring ids contrast."""
    hue = (torch.arange(num_labels, dtype=torch.float64) * (math.sqrt(5) - 1) / 2) % 1.0
    # HSV to RGB at saturation 0.65, value 0.95.
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64) + hue[:, None] * 6) % 6
    rgb = 0.95 - 0.95 * 0.65 * torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return rgb.float()


def semantic_projection(semantic_proj_state: Mapping[str, Tensor]) -> Float[Tensor, "c f_plus_1"]:
    """The 1x1 lifting layer as one matrix ``M = [W | b]``, so that the lifted feature is ``M [x; 1]``."""
    weight, bias = semantic_proj_state["weight"], semantic_proj_state["bias"]
    weight = weight.reshape(weight.shape[0], -1)
    return torch.cat([weight, bias[:, None]], dim=1).detach().float()


def _augmented(features: Float[Tensor, "*batch f"]) -> Float[Tensor, "*batch f_plus_1"]:
    return torch.cat([features, torch.ones_like(features[..., :1])], dim=-1)


def lift_features(
    semantic: Float[Tensor, "*batch f"], projection: Float[Tensor, "c f_plus_1"]
) -> Float[Tensor, "*batch c"]:
    """``W x + b`` for every feature ``x`` (materialized: for per-Gaussian features, not for images)."""
    return _augmented(semantic) @ projection.T


def lifted_dot(
    features: Float[Tensor, "*batch f"],
    projection: Float[Tensor, "c f_plus_1"],
    directions: Float[Tensor, "k c"],
) -> Float[Tensor, "*batch k"]:
    """Dot products of the unit lifted features ``M [x; 1] / |M [x; 1]|`` with ``k`` directions.

    For unit directions (text embeddings) these are cosines. The c-dimensional lifted vectors are never
    formed: ``|M x~|^2 = x~^T (M^T M) x~`` needs only an (f+1)^2 Gram matrix.
    """
    augmented = _augmented(features)
    gram = projection.T @ projection
    norm = ((augmented @ gram) * augmented).sum(-1, keepdim=True).clamp(min=1e-12).sqrt()
    return (augmented @ (projection.T @ directions.T)) / norm


def relevancy_score(
    positive: Float[Tensor, "*batch p"], negative: Float[Tensor, "*batch q"]
) -> Float[Tensor, "*batch"]:
    """LERF's relevancy from cosines: per positive, the softmax of (positive, negative) taken against the
    hardest negative; the best positive wins."""
    pairwise = torch.sigmoid(RELEVANCY_SCALE * (positive[..., :, None] - negative[..., None, :]))  # [*, p, q]
    return pairwise.amin(dim=-1).amax(dim=-1)


def _lpips_backbone_path() -> Path:
    """Where torchvision looks for LPIPS's AlexNet backbone (its linear heads ship with torchmetrics)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(torchvision.models.AlexNet_Weights.DEFAULT.url).name


class FF3RModel(SplatfactoModel):
    """Splatfacto's Gaussians plus a semantic feature, filled by :meth:`load_gaussians`, never densified.

    Viewer controls (nerfstudio finds them on the model): ``relevancy_query`` (positives separated by
    ';') and ``segmentation_labels``.
    """

    config: FF3RModelConfig

    def populate_modules(self) -> None:
        if self.config.sh_degree < 0 or self.config.semantic_dim < 1:
            raise ValueError(
                f"FF3RModelConfig needs sh_degree >= 0 and semantic_dim >= 1, got {self.config.sh_degree} and "
                f"{self.config.semantic_dim}"
            )
        # Empty until load_gaussians (or a checkpoint) fills them; shapes past the first are final.
        shapes = {
            "means": (3,),
            "scales": (3,),
            "quats": (4,),
            "features_dc": (3,),
            "features_rest": (num_sh_bases(self.config.sh_degree) - 1, 3),
            "opacities": (1,),
            "semantic": (self.config.semantic_dim,),
        }
        self.gauss_params = nn.ParameterDict({name: Parameter(torch.zeros(0, *s)) for name, s in shapes.items()})
        self.semantic_proj = nn.Conv2d(self.config.semantic_dim, LIFTED_DIM, 1)
        self.camera_optimizer = self.config.camera_optimizer.setup(num_cameras=self.num_train_data, device="cpu")
        # splatfacto builds LPIPS here, which downloads AlexNet; ours is built on first use, from local files only.
        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = SSIM(data_range=1.0, size_average=True, channel=3)
        self.step = 0
        self.crop_box: Optional[OrientedBox] = None
        if self.config.background_color == "random":
            self.background_color = torch.tensor([0.1490, 0.1647, 0.2157])  # viser's grey, as splatfacto
        else:
            self.background_color = torch.tensor(
                [1.0, 1.0, 1.0] if self.config.background_color == "white" else [0.0, 0.0, 0.0]
            )
        self._helpers = _Helpers()
        self.relevancy_query = ViewerText(
            "Relevancy query", "", hint="Positive phrases separated by ';' (empty: no relevancy output)"
        )
        self.segmentation_labels = ViewerText(
            "Segmentation labels", self.config.segmentation_labels, hint="Class prompts separated by ';'"
        )

    # splatfacto's shs_0/colors treat features_dc as a colour logit at SH degree 0; ours is always SH.
    @property
    def shs_0(self) -> Float[Tensor, "n 3"]:
        return self.features_dc

    @property
    def colors(self) -> Float[Tensor, "n 3"]:
        return SH2RGB(self.features_dc)

    @property
    def semantic(self) -> Float[Tensor, "n f"]:
        return self.gauss_params["semantic"]

    @torch.no_grad()
    def load_gaussians(self, gaussians: Gaussians, semantic_proj_state: Mapping[str, Tensor]) -> None:
        """Makes ``gaussians`` (one scene) the model's reconstruction, with the network's lifting layer.

        The parameters keep their identity (only their data is replaced), so optimizers built earlier
        still refer to them.

        Args:
            gaussians: The network's Gaussians of one scene (``FF3ROutput.gaussians.scene(b)``).
            semantic_proj_state: State dict of the network's ``gaussian_head.semantic_proj``.

        Raises:
            ValueError: If the SH degree, semantic width or lifting layer differ from the model config's,
                or the Gaussians span several scenes.
        """
        sh_bases, dim = num_sh_bases(self.config.sh_degree), self.config.semantic_dim
        if gaussians.sh.shape[1] != sh_bases:
            raise ValueError(
                f"the Gaussians have {gaussians.sh.shape[1]} SH coefficients per channel, FF3RModelConfig.sh_degree="
                f"{self.config.sh_degree} needs {sh_bases}: set it to the network's heads.sh_degree"
            )
        if gaussians.semantic.shape[1] != dim:
            raise ValueError(
                f"the Gaussians have {gaussians.semantic.shape[1]}-d semantic features, FF3RModelConfig.semantic_dim "
                f"is {dim}: set it to the network's heads.semantic_dim"
            )
        if len(gaussians) and bool((gaussians.batch_index != gaussians.batch_index[0]).any()):
            raise ValueError("the Gaussians span several scenes; pass one, e.g. output.gaussians.scene(0)")
        expected = {name: tuple(value.shape) for name, value in self.semantic_proj.state_dict().items()}
        given = {name: tuple(value.shape) for name, value in semantic_proj_state.items()}
        if given != expected:
            raise ValueError(f"semantic_proj_state has shapes {given}, the model's lifting layer {expected}")
        values = {
            "means": gaussians.means,
            "scales": gaussians.log_scales,
            "quats": gaussians.quats,
            "features_dc": gaussians.sh[:, 0],
            "features_rest": gaussians.sh[:, 1:],
            "opacities": gaussians.opacity_logits[:, None],
            "semantic": gaussians.semantic,
        }
        for name, value in values.items():
            param = self.gauss_params[name]
            param.data = value.detach().to(device=param.device, dtype=param.dtype).clone()
        self.semantic_proj.load_state_dict(semantic_proj_state)
        self._helpers.pca = None

    @torch.no_grad()
    def to_gaussians(self) -> Gaussians:
        """The model's reconstruction as ``Gaussians`` (copies, one scene), the inverse of ``load_gaussians``."""
        p = {name: self.gauss_params[name].detach().clone() for name in GAUSSIAN_PARAMS}
        return Gaussians(
            means=p["means"],
            log_scales=p["scales"],
            quats=p["quats"],
            opacity_logits=p["opacities"][:, 0],
            sh=torch.cat([p["features_dc"][:, None], p["features_rest"]], dim=1),
            semantic=p["semantic"],
            batch_index=torch.zeros(len(p["means"]), dtype=torch.long, device=p["means"].device),
        )

    def render_params(
        self,
        params: Mapping[str, Tensor],
        viewmats: Float[Tensor, "c 4 4"],
        Ks: Float[Tensor, "c 3 3"],
        width: int,
        height: int,
        background: Optional[Float[Tensor, "3"]],
        features: bool = True,
    ) -> Dict[str, Optional[Tensor]]:
        """``render_gaussians`` of Gaussians in ``gauss_params``' form (log scales, opacity logits, DC + rest SH):
        all of the model's, a crop of them, or detached copies; the semantic features only when asked for."""
        return render_gaussians(
            means=params["means"],
            quats=params["quats"],
            scales=params["scales"].exp(),
            opacities=torch.sigmoid(params["opacities"][:, 0]),
            sh_coeffs=torch.cat([params["features_dc"][:, None], params["features_rest"]], dim=1),
            features=params["semantic"] if features else None,
            viewmats=viewmats,
            Ks=Ks,
            width=width,
            height=height,
            sh_degree=self.config.sh_degree,
            backend=self.config.render_backend,
            background=background,
        )

    def load_state_dict(self, state_dict, **kwargs):  # type: ignore[override]
        # splatfacto resizes every gauss_params entry (semantic included) to the checkpoint's count.
        result = super().load_state_dict(state_dict, **kwargs)
        self._helpers.pca = None
        return result

    def set_text_encoder(self, encoder: TextEncoder) -> None:
        """Uses ``encoder`` for labels and queries instead of building one from ``config.text_encoder_weights``."""
        self._helpers.text_encoder = encoder.to(self.device).eval()
        self._helpers.text_encoder_failed = False
        self._helpers.text_embeddings.clear()

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        return []  # feed-forward: no densification, no SH schedule

    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = {name: [self.gauss_params[name]] for name in GAUSSIAN_PARAMS}
        self.camera_optimizer.get_param_groups(param_groups=groups)
        return groups

    def _get_downscale_factor(self) -> int:
        return 1  # no coarse-to-fine schedule: the Gaussians are final

    def get_outputs(self, camera: Cameras) -> Dict[str, Tensor]:
        """Renders one camera.

        Returns:
            ``rgb`` [H, W, 3], ``depth`` [H, W, 1] (z-depth; the farthest depth where nothing is hit, as
            splatfacto), ``accumulation`` [H, W, 1], ``background``; with semantics loaded also
            ``semantic_pca`` [H, W, 3], and when the text encoder is available ``segmentation`` [H, W, 3]
            with ``segmentation_ids`` [H, W, 1] (long, index into the label list) and, for a non-empty
            query, ``relevancy`` [H, W, 1] (0 where nothing is hit).
        """
        if camera.camera_to_worlds.reshape(-1, 3, 4).shape[0] != 1:
            raise ValueError(f"FF3RModel renders one camera at a time, got cameras of shape {tuple(camera.shape)}")
        if int(camera.camera_type.reshape(-1)[0]) != CameraType.PERSPECTIVE.value:
            raise ValueError("FF3RModel renders pinhole (perspective) cameras only")
        c2w = self.camera_optimizer.apply_to_camera(camera) if self.training else camera.camera_to_worlds
        viewmat = c2w_to_w2c(opengl_to_opencv_c2w(c2w.reshape(1, 3, 4).to(self.device)))
        K = camera.get_intrinsics_matrices().reshape(1, 3, 3).to(self.device)
        width, height = int(camera.width.reshape(-1)[0]), int(camera.height.reshape(-1)[0])
        background = self._get_background_color()

        keep = None
        if self.crop_box is not None and not self.training:
            keep = self.crop_box.within(self.means).reshape(-1)
        params = {name: value if keep is None else value[keep] for name, value in self.gauss_params.items()}
        if params["means"].shape[0] == 0:
            outputs = self.get_empty_outputs(width, height, background)
        else:
            rendered = self.render_params(params, viewmat, K, width, height, background, features=True)
            alpha, depth = rendered["alpha"][0], rendered["depth"][0]
            outputs = {
                "rgb": rendered["rgb"][0].clamp(0.0, 1.0),
                "depth": torch.where(alpha > 0, depth, depth.detach().max()),
                "accumulation": alpha,
                "background": background,
            }
            outputs.update(self._semantic_outputs(rendered["features"][0], alpha, background))
        if not self.training:
            outputs["background"] = background.expand(height, width, 3)
        return outputs

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box: Optional[OrientedBox] = None) -> Dict[str, Tensor]:
        """``get_outputs`` for the viewer and evaluation; ``segmentation_ids`` come as float (integral
        values) because nerfstudio's viewer colour-maps only float or bool single-channel outputs."""
        outputs = super().get_outputs_for_camera(camera, obb_box)
        if "segmentation_ids" in outputs:
            outputs["segmentation_ids"] = outputs["segmentation_ids"].float()
        return outputs

    def _semantic_outputs(
        self, features: Float[Tensor, "h w f"], alpha: Float[Tensor, "h w 1"], background: Float[Tensor, "3"]
    ) -> Dict[str, Tensor]:
        # The blend weights of a pixel sum to its alpha: dividing by it gives the weighted mean of its
        # Gaussians' features, so faint pixels and soft edges read like opaque ones.
        features = features.detach() / alpha.clamp(min=1e-6)
        projection = semantic_projection(self.semantic_proj.state_dict())
        outputs = {}

        basis, offset, low, high = self._semantic_pca(projection)
        pca = ((lifted_dot(features, projection, basis.T) - offset - low) / (high - low)).clamp(0.0, 1.0)
        outputs["semantic_pca"] = pca * alpha + background * (1 - alpha)

        labels = parse_prompts(self.segmentation_labels.value)
        text = self._text_embeddings(labels) if labels else None
        if text is not None:
            ids = lifted_dot(features, projection, text).argmax(dim=-1, keepdim=True)
            colours = label_palette(len(labels)).to(features.device)[ids[..., 0]]
            outputs["segmentation"] = colours * alpha + background * (1 - alpha)
            outputs["segmentation_ids"] = ids

        positives = parse_prompts(self.relevancy_query.value)
        negatives = parse_prompts(self.config.relevancy_negatives)
        text = self._text_embeddings(positives + negatives) if positives and negatives else None
        if text is not None:
            cosines = lifted_dot(features, projection, text)
            relevancy = relevancy_score(cosines[..., : len(positives)], cosines[..., len(positives) :])
            outputs["relevancy"] = relevancy[..., None] * alpha
        return outputs

    def _semantic_pca(self, projection: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Basis [c, 3], offset, low and high [3] of the PCA colouring, fitted once per reconstruction."""
        if self._helpers.pca is None:
            semantic = self.gauss_params["semantic"].detach()
            order = torch.randperm(len(semantic), generator=torch.Generator().manual_seed(0))
            sample = _augmented(semantic[order[:PCA_MAX_SAMPLES].to(semantic.device)])
            # Lifted features M x~ = Q (R x~) span at most f + 1 dimensions: fitting in Q's basis takes an
            # (f+1)^2 eigenproblem instead of a 512^2 one, with the same result.
            q, r = torch.linalg.qr(projection)
            coords = F.normalize(sample @ r.T, dim=-1)  # unit lifted features, in Q's basis
            mean = coords.mean(dim=0)
            centred = coords - mean
            _, vectors = torch.linalg.eigh(centred.T @ centred)  # ascending eigenvalues
            top = vectors.flip(-1)[:, :3]
            top = F.pad(top, (0, 3 - top.shape[1]))  # semantic_dim 1 has two components only
            # Eigenvectors have no sign; fixing one keeps the colours reproducible after a reload.
            largest = top.abs().argmax(dim=0)
            top = top * torch.where(top[largest, torch.arange(3, device=top.device)] < 0, -1.0, 1.0)
            projected = centred @ top
            low = torch.quantile(projected, PCA_RANGE_QUANTILE, dim=0)
            high = torch.quantile(projected, 1 - PCA_RANGE_QUANTILE, dim=0)
            # A component without spread would otherwise blow float noise up to full contrast.
            middle, half = (low + high) / 2, ((high - low) / 2).clamp(min=PCA_MIN_SPAN / 2)
            self._helpers.pca = (q @ top, mean @ top, middle - half, middle + half)
        return self._helpers.pca

    def _text_embeddings(self, prompts: List[str]) -> Optional[Float[Tensor, "k 512"]]:
        """Unit embeddings of ``prompts``, each string encoded once; None when no text encoder is available."""
        cache = self._helpers.text_embeddings
        missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in cache]
        if missing:
            encoder = self._text_encoder()
            if encoder is None:
                return None
            with torch.no_grad():
                cache.update(zip(missing, encoder.encode(missing).float()))
        return torch.stack([cache[prompt] for prompt in prompts]).to(self.device)

    def _text_encoder(self) -> Optional[TextEncoder]:
        helpers = self._helpers
        if helpers.text_encoder is None and not helpers.text_encoder_failed:
            try:
                helpers.text_encoder = TextEncoder(weights=self.config.text_encoder_weights).to(self.device).eval()
            except FileNotFoundError as error:
                helpers.text_encoder_failed = True
                warnings.warn(f"FF3R segmentation and relevancy outputs are off: {error}", stacklevel=3)
        return helpers.text_encoder

    def _lpips(self) -> Optional[nn.Module]:
        """torchmetrics' LPIPS when its AlexNet backbone is on disk, else None (warned once)."""
        helpers = self._helpers
        if not helpers.lpips_checked:
            helpers.lpips_checked = True
            path = _lpips_backbone_path()
            if path.is_file():
                from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

                helpers.lpips = LearnedPerceptualImagePatchSimilarity(normalize=True)
            else:
                warnings.warn(f"LPIPS is not computed: its AlexNet backbone is not at {path}", stacklevel=3)
        return helpers.lpips

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """PSNR and SSIM, LPIPS only where its weights are on disk (absent from the dict otherwise)."""
        gt_rgb = self.composite_with_background(self.get_gt_img(batch["image"]), outputs["background"])
        predicted_rgb = outputs["rgb"]
        gt, predicted = gt_rgb.permute(2, 0, 1)[None], predicted_rgb.permute(2, 0, 1)[None]
        candidates = {"": predicted}
        if self.config.color_corrected_metrics:
            candidates["cc_"] = color_correct(predicted_rgb, gt_rgb).clamp(0.0, 1.0).permute(2, 0, 1)[None]
        lpips = self._lpips()
        metrics = {}
        for prefix, image in candidates.items():
            metrics[f"{prefix}psnr"] = float(self.psnr(gt, image))
            metrics[f"{prefix}ssim"] = float(self.ssim(gt, image))
            if lpips is not None:
                metrics[f"{prefix}lpips"] = float(lpips.to(image.device)(gt, image))
        images = {
            "img": torch.cat([gt_rgb, predicted_rgb], dim=1),
            "depth": colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"]),
            "accumulation": colormaps.apply_colormap(outputs["accumulation"]),
        }
        images.update({key: outputs[key] for key in ("semantic_pca", "segmentation") if key in outputs})
        return metrics, images
