"""FF3RModel: filling, rendering, semantic outputs, checkpoints and metrics on the CPU."""

import warnings

import pytest
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.scene_box import SceneBox

from ff3r_ns.network.cameras import opencv_to_opengl_c2w
from ff3r_ns.network.gaussian_head import SH_C0
from ff3r_ns.network.gaussians import Gaussians
from ff3r_ns.network.semantic import TextEncoder
from ff3r_ns.ns.model import FF3RModel, FF3RModelConfig, label_palette, lifted_dot, parse_prompts

SIZE, FOCAL = 32, 32.0
DEPTHS = (2.0, 3.0)
"""Depth of the left and right halves of the test wall."""
COLOURS = ((1.0, 0.1, 0.1), (0.1, 0.1, 1.0))
LABELS = ["chair", "table", "wall", "floor"]
"""The left half is a chair, the right half a table."""


def make_camera(x: float = 0.0) -> Cameras:
    """A 32x32 pinhole camera at (x, 0, 0) looking down +z (OpenCV), as nerfstudio's OpenGL camera."""
    c2w = torch.eye(4)[:3]
    c2w[0, 3] = x
    return Cameras(
        camera_to_worlds=opencv_to_opengl_c2w(c2w)[None],
        fx=FOCAL,
        fy=FOCAL,
        cx=SIZE / 2,
        cy=SIZE / 2,
        width=SIZE,
        height=SIZE,
        camera_type=CameraType.PERSPECTIVE,
    )


def make_model(**overrides) -> FF3RModel:
    # A missing local file: "openai" would spend seconds asking the (offline) hub.
    defaults = {"sh_degree": 1, "semantic_dim": len(LABELS), "text_encoder_weights": "/nonexistent/clip.safetensors"}
    config = FF3RModelConfig(**{**defaults, **overrides})
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-2.0, -2.0, 0.0], [2.0, 2.0, 4.0]])), num_train_data=1)
    return model.eval()


def wall_gaussians(sh_degree: int = 1) -> Gaussians:
    """A 16x16 grid of opaque Gaussians filling the view: the left half at depth 2 (red, semantic e_0), the
    right half at depth 3 (blue, semantic e_1); each sits on a pixel ray, 2 pixels wide."""
    pixels = torch.arange(1.0, SIZE, 2.0)
    v, u = torch.meshgrid(pixels, pixels, indexing="ij")
    right = (u > SIZE / 2).reshape(-1).long()
    z = torch.tensor(DEPTHS)[right]
    n = len(z)
    means = torch.stack([(u.reshape(-1) - SIZE / 2) / FOCAL * z, (v.reshape(-1) - SIZE / 2) / FOCAL * z, z], dim=-1)
    sh = torch.zeros(n, (sh_degree + 1) ** 2, 3)
    sh[:, 0] = (torch.tensor(COLOURS)[right] - 0.5) / SH_C0
    return Gaussians(
        means=means,
        log_scales=torch.log(2.0 * z / FOCAL)[:, None].expand(n, 3).clone(),
        quats=torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(n, 4).clone(),
        opacity_logits=torch.full((n,), 5.0),
        sh=sh,
        semantic=torch.eye(len(LABELS))[right],
        batch_index=torch.zeros(n, dtype=torch.long),
    )


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(weights=None).eval()


@pytest.fixture(scope="module")
def label_state(text_encoder) -> dict:
    """A lifting layer that maps the one-hot semantic e_j to the text embedding of LABELS[j]."""
    with torch.no_grad():
        embeddings = text_encoder.encode(LABELS)
    return {"weight": embeddings.T[:, :, None, None].clone(), "bias": torch.zeros(512)}


@pytest.fixture(scope="module")
def semantic_model(text_encoder, label_state) -> FF3RModel:
    model = make_model()
    model.load_gaussians(wall_gaussians(), label_state)
    model.set_text_encoder(text_encoder)
    model.segmentation_labels.value = ";".join(LABELS)
    return model


def assert_gaussians_equal(a: Gaussians, b: Gaussians) -> None:
    for name in ("means", "log_scales", "quats", "opacity_logits", "sh", "semantic", "batch_index"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def test_renders_colour_and_depth_of_the_gaussians(label_state):
    model = make_model()
    model.load_gaussians(wall_gaussians(), label_state)
    with pytest.warns(UserWarning, match="clip.safetensors"):
        outputs = model.get_outputs_for_camera(make_camera())
    assert outputs["rgb"].shape == (SIZE, SIZE, 3)
    assert outputs["depth"].shape == outputs["accumulation"].shape == (SIZE, SIZE, 1)
    # Opaque inside the outermost Gaussian centres; the image border gets their flanks only.
    inner = slice(1, SIZE - 1)
    assert outputs["accumulation"][inner, inner].min() > 0.99 and outputs["accumulation"].min() > 0.9
    # Columns that only one half reaches (the other half's Gaussians end 3.3 sigma from their centres).
    for columns, depth, colour in zip((slice(0, 10), slice(22, 32)), DEPTHS, COLOURS):
        assert torch.allclose(outputs["depth"][:, columns], torch.tensor(depth), atol=1e-4)
        assert torch.allclose(outputs["rgb"][inner, columns], torch.tensor(colour), atol=0.02)
    # No text encoder: the text outputs are absent, the rest is there, and the warning came once.
    assert {"semantic_pca", "background"} <= outputs.keys()
    assert not {"segmentation", "segmentation_ids", "relevancy"} & outputs.keys()
    model.relevancy_query.value = "chair"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "relevancy" not in model.get_outputs_for_camera(make_camera())


def test_load_and_to_gaussians_round_trip(label_state):
    model = make_model()
    gaussians = wall_gaussians()
    gaussians.quats = torch.randn(len(gaussians), 4)
    gaussians.sh = torch.randn_like(gaussians.sh)
    gaussians.semantic = torch.randn_like(gaussians.semantic)
    model.load_gaussians(gaussians, label_state)
    assert_gaussians_equal(model.to_gaussians(), gaussians)
    assert model.gauss_params["features_dc"].shape == (len(gaussians), 3)
    assert model.gauss_params["features_rest"].shape == (len(gaussians), 3, 3)
    assert model.gauss_params["opacities"].shape == (len(gaussians), 1)
    assert torch.equal(model.semantic_proj.weight, label_state["weight"])


def test_load_gaussians_rejects_mismatched_shapes(label_state):
    model = make_model()
    with pytest.raises(ValueError, match="sh_degree"):
        model.load_gaussians(wall_gaussians(sh_degree=0), label_state)
    two_scenes = wall_gaussians()
    two_scenes.batch_index[:3] = 1
    with pytest.raises(ValueError, match="scene"):
        model.load_gaussians(two_scenes, label_state)
    with pytest.raises(ValueError, match="semantic_proj_state"):
        model.load_gaussians(wall_gaussians(), {"weight": torch.zeros(512, 3, 1, 1), "bias": torch.zeros(512)})


@pytest.mark.filterwarnings("ignore:FF3R segmentation and relevancy outputs are off")
def test_checkpoint_loads_into_a_model_of_another_size(semantic_model):
    fresh = make_model()
    bigger = make_model()
    bigger.load_gaussians(Gaussians.from_attribute_matrix(
        torch.randn(100, 3), torch.randn(100, 8 + 12), torch.randn(100, len(LABELS)), torch.zeros(100, dtype=torch.long)
    ), {"weight": torch.randn(512, len(LABELS), 1, 1), "bias": torch.randn(512)})  # fmt: skip
    state = {key: value.clone() for key, value in semantic_model.state_dict().items()}
    for model in (fresh, bigger):
        model.load_state_dict(dict(state))
        assert_gaussians_equal(model.to_gaussians(), semantic_model.to_gaussians())
        assert torch.equal(model.semantic_proj.weight, semantic_model.semantic_proj.weight)
    camera = make_camera()
    rendered = [model.get_outputs_for_camera(camera)["rgb"] for model in (fresh, semantic_model)]
    assert torch.equal(*rendered)


def test_segmentation_and_relevancy_find_the_labelled_halves(semantic_model):
    semantic_model.relevancy_query.value = "sofa; chair"
    outputs = semantic_model.get_outputs(make_camera())
    ids = outputs["segmentation_ids"]
    assert ids.shape == (SIZE, SIZE, 1) and ids.dtype == torch.long
    # The chair half is in front: its Gaussians' flanks cover the table up to column ~21.
    assert (ids[:, :14] == 0).all() and (ids[:, 22:] == 1).all()
    palette = label_palette(len(LABELS))
    assert torch.allclose(outputs["segmentation"][:, :8], palette[0], atol=0.02)
    assert torch.allclose(outputs["segmentation"][:, 24:], palette[1], atol=0.02)
    relevancy = outputs["relevancy"]
    assert relevancy.shape == (SIZE, SIZE, 1)
    chair, table = relevancy[:, :14].mean(), relevancy[:, 22:].mean()
    assert chair > 0.6 and chair > table + 0.1, (chair, table)
    # The viewer's entry point hands the ids over as float (nerfstudio colour-maps float maps only).
    viewer_outputs = semantic_model.get_outputs_for_camera(make_camera())
    assert viewer_outputs["segmentation_ids"].dtype == torch.float32
    assert all(value.ndim == 3 and value.shape[:2] == (SIZE, SIZE) for value in viewer_outputs.values())
    semantic_model.relevancy_query.value = ""
    assert "relevancy" not in semantic_model.get_outputs(make_camera())


def test_semantic_pca_colours_do_not_depend_on_the_view(semantic_model):
    left = [semantic_model.get_outputs(make_camera(x))["semantic_pca"] for x in (0.0, 0.3)]
    assert left[0].shape == (SIZE, SIZE, 3) and 0 <= left[0].min() and left[0].max() <= 1
    # These pixels see only the opaque chair half from both positions.
    assert torch.allclose(left[0][1:-1, 1:6], left[1][1:-1, 1:6], atol=2e-3)
    assert (left[0][:, :6].mean((0, 1)) - left[0][:, 26:].mean((0, 1))).abs().max() > 0.3


def test_viewer_finds_the_text_controls_on_the_model(semantic_model):
    from nerfstudio.viewer.utils import parse_object
    from nerfstudio.viewer.viewer_elements import ViewerElement

    found = {path: element for path, element in parse_object(semantic_model, ViewerElement, "Custom Elements")}
    assert found == {
        "Custom Elements/relevancy_query": semantic_model.relevancy_query,
        "Custom Elements/segmentation_labels": semantic_model.segmentation_labels,
    }


def test_text_embeddings_are_cached_per_prompt(semantic_model):
    cache = semantic_model._helpers.text_embeddings
    semantic_model.get_outputs(make_camera())
    before = dict(cache)
    semantic_model.segmentation_labels.value = "chair;floor"
    semantic_model.get_outputs(make_camera())
    assert {key: id(value) for key, value in before.items()}.items() <= {k: id(v) for k, v in cache.items()}.items()
    semantic_model.segmentation_labels.value = ";".join(LABELS)


def test_metrics_without_and_with_local_lpips_weights(label_state, tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = make_model()
    model.load_gaussians(wall_gaussians(), label_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outputs = model.get_outputs_for_camera(make_camera())
    batch = {"image": (outputs["rgb"] + 0.05 * torch.rand(SIZE, SIZE, 3)).clamp(0, 1)}
    assert set(model.get_metrics_dict(outputs, batch)) >= {"psnr", "gaussian_count"}
    with pytest.warns(UserWarning, match="LPIPS"):
        metrics, images = model.get_image_metrics_and_images(outputs, batch)
    assert set(metrics) == {"psnr", "ssim"} and 20 < metrics["psnr"] < 40
    assert images["img"].shape == (SIZE, 2 * SIZE, 3) and "semantic_pca" in images

    # A backbone file where torchvision looks (random weights here) turns LPIPS on, offline.
    weights = torchvision.models.AlexNet_Weights.DEFAULT
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(torchvision.models.alexnet().state_dict(), tmp_path / "hub" / "checkpoints" / weights.url.split("/")[-1])
    model = make_model()
    model.load_gaussians(wall_gaussians(), label_state)
    metrics, _ = model.get_image_metrics_and_images(outputs, batch)
    assert set(metrics) == {"psnr", "ssim", "lpips"}


def test_empty_model_renders_background_and_shs_stay_sh():
    model = make_model(background_color="white", sh_degree=0)
    outputs = model.get_outputs_for_camera(make_camera())
    assert torch.equal(outputs["rgb"], torch.ones(SIZE, SIZE, 3))
    assert "semantic_pca" not in outputs
    # splatfacto reads features_dc as a colour logit at degree 0; ns-export must get the SH DC term.
    model.gauss_params["features_dc"].data = torch.randn(5, 3)
    assert torch.equal(model.shs_0, model.features_dc)
    assert parse_prompts(" a; ;b ;") == ["a", "b"]


def test_lifted_dot_equals_the_explicit_cosine():
    projection, features, directions = torch.randn(512, 5), torch.randn(7, 4), torch.randn(3, 512)
    lifted = features @ projection[:, :4].T + projection[:, 4]
    expected = torch.nn.functional.normalize(lifted, dim=-1) @ directions.T
    assert torch.allclose(lifted_dot(features, projection, directions), expected, atol=1e-4)
