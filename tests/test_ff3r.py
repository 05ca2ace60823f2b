"""The whole network at the tiny preset: shapes, gradients, determinism, geometry, presets."""

import pytest
import torch

from ff3r_ns.network.cameras import project_points
from ff3r_ns.network.config import FF3RConfig, preset
import ff3r_ns.network.ff3r as ff3r_module
from ff3r_ns.network.ff3r import FF3R


@pytest.fixture(scope="module")
def model() -> FF3R:
    torch.manual_seed(0)
    return FF3R.from_preset("tiny").eval()


@pytest.mark.parametrize("views", [2, 3, 5, 8])
def test_forward_shapes(model, views):
    images = torch.rand(1, views, 3, 56, 56)
    with torch.no_grad():
        out = model(images, keep_pixel_gaussians=True)
    assert out.depth.shape == (1, views, 56, 56)
    assert out.depth_conf.shape == (1, views, 56, 56)
    assert out.extrinsics.shape == (1, views, 3, 4)
    assert out.intrinsics.shape == (1, views, 3, 3)
    assert len(out.pose_enc_list) == model.config.heads.camera_iterations
    assert out.semantic_2d.shape[:3] == (1, views, 512)
    assert out.num_pixel_gaussians == views * 56 * 56 == len(out.pixel_gaussians)
    g = out.gaussians
    assert 0 < len(g) <= out.num_pixel_gaussians
    assert g.sh.shape[1:] == (1, 3) and g.semantic.shape[1] == model.config.heads.semantic_dim
    for tensor in (g.means, g.log_scales, g.quats, g.opacity_logits, g.sh, g.semantic, out.depth):
        assert torch.isfinite(tensor).all()
    assert (out.depth > 0).all() and (out.depth_conf >= 1).all()


def test_semantic_encoder_in_chunks_gives_the_one_pass_result(model, monkeypatch):
    # 256 views of 448 overflow an upsampling in one pass: outside training the LSeg encoder takes chunks of views.
    images = torch.rand(5, 3, 56, 56)
    with torch.no_grad():
        tokens, features, _ = model.encode_semantics(images)
        monkeypatch.setattr(ff3r_module, "SEMANTIC_CHUNK", 2)
        chunked_tokens, chunked_features, _ = model.encode_semantics(images)
    torch.testing.assert_close(chunked_tokens, tokens, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chunked_features, features, rtol=1e-5, atol=1e-6)
    assert not torch.equal(features[0], features[1])  # views differ: a chunk mix-up would show


def test_batch_of_scenes_keeps_scenes_apart(model):
    images = torch.rand(2, 3, 3, 56, 56)
    with torch.no_grad():
        batched = model(images)
        single = model(images[1:])
    assert set(batched.gaussians.batch_index.tolist()) == {0, 1}
    torch.testing.assert_close(batched.depth[1:], single.depth, atol=1e-4, rtol=1e-4)
    assert len(batched.gaussians.scene(1)) == len(single.gaussians)


def test_means_are_depth_unprojected_with_predicted_cameras(model):
    """Pixel-aligned centres project back onto their own pixel at their own depth."""
    images = torch.rand(1, 2, 3, 56, 56)
    with torch.no_grad():
        out = model(images, voxelize=False)
    means = out.gaussians.means.reshape(1, 2, 56 * 56, 3)
    uv, z = project_points(means.double(), out.extrinsics.double(), out.intrinsics.double())
    v, u = torch.meshgrid(torch.arange(56.0), torch.arange(56.0), indexing="ij")
    expected = torch.stack([u, v], -1).reshape(-1, 2).double() + 0.5
    torch.testing.assert_close(uv[0, 1], expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(z[0, 1].float(), out.depth[0, 1].reshape(-1), atol=1e-4, rtol=1e-4)


def test_gradients_reach_every_trainable_module():
    torch.manual_seed(1)
    model = FF3R.from_preset("tiny").train()
    # The fusion's output projection starts at zero (identity fusion), which blocks W_Q/W_K/W_V's
    # gradient on the first step only; perturb it as one optimizer step would.
    torch.nn.init.normal_(model.fusion.out_proj.weight, std=0.02)
    out = model(torch.rand(1, 3, 3, 56, 56), keep_pixel_gaussians=True)
    g = out.gaussians
    lifted = model.gaussian_head.lift_semantic(g.semantic.T[None, :, :, None])
    loss = (
        sum(p.square().mean() for p in out.pose_enc_list)
        + out.depth.mean()
        + out.depth_conf.mean()
        + out.semantic_2d.square().mean()
        + sum(t.square().mean() for t in (g.means, g.log_scales, g.quats, g.opacity_logits, g.sh, g.semantic))
        + lifted.square().mean()
    )
    loss.backward()
    frozen = {"aggregator.patch_embed.mask_token"}  # DINOv2's unused masking token, frozen as in VGGT
    no_grad = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and name not in frozen and (p.grad is None or p.grad.abs().sum() == 0)
    ]
    assert not no_grad, no_grad


def test_determinism_with_fixed_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = FF3R.from_preset("tiny").eval()
        torch.manual_seed(7)
        images = torch.rand(1, 4, 3, 56, 56)
        with torch.no_grad():
            outs.append(model(images))
    assert torch.equal(outs[0].depth, outs[1].depth)
    assert torch.equal(outs[0].gaussians.means, outs[1].gaussians.means)
    assert torch.equal(outs[0].gaussians.semantic, outs[1].gaussians.semantic)


def test_voxelization_switches(model):
    images = torch.rand(1, 4, 3, 56, 56)
    with torch.no_grad():
        merged = model(images)
        pixel = model(images, voxelize=False)
    assert len(pixel.gaussians) == pixel.num_pixel_gaussians
    assert len(merged.gaussians) < len(pixel.gaussians)


def test_fusion_off_builds_no_fusion_module():
    config = preset("tiny")
    config.fusion.enabled = False
    model = FF3R(config)
    assert model.fusion is None
    with torch.no_grad():
        model(torch.rand(1, 2, 3, 28, 42))


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(ValueError, match="at least 2 views"):
        model(torch.rand(1, 1, 3, 56, 56))
    with pytest.raises(ValueError, match="multiple of the patch size"):
        model(torch.rand(1, 2, 3, 50, 56))
    with pytest.raises(ValueError, match=r"\[b, s, 3, h, w\]"):
        model(torch.rand(2, 3, 56, 56))


@pytest.mark.parametrize("name", ["tiny", "small", "large"])
def test_presets_round_trip_through_json(name):
    import json

    config = preset(name)
    assert FF3RConfig.from_dict(json.loads(config.to_json())) == config


def test_large_preset_builds_on_meta_device():
    with torch.device("meta"):
        model = FF3R.from_preset("large")
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in ("aggregator", "camera_head", "depth_head")}
    # VGGT-1B's aggregator (patch embedding + frame + global blocks + tokens), camera and depth heads.
    assert counts["camera_head"] == 216_174_610
    assert counts["depth_head"] == 32_654_562
    assert counts["aggregator"] == 304_372_736 + 2 * 302_364_672 + 2 * 1 * 1024 + 2 * 4 * 1024
