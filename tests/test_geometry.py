"""Geometry part of the network: VGGT-1B sizes, VGGT checkpoint layout, shapes, gradients, numerics."""

from __future__ import annotations

import pytest
import torch

from ff3r_ns.network.camera_head import CameraHead
from ff3r_ns.network.dpt import DPTHead, uv_sincos_embedding
from ff3r_ns.network.geometry import GeometryEncoder
from ff3r_ns.network.transformer import RotaryEmbedding2D, apply_rope

# tiny preset: patch 14, C = 32, 4 block pairs, 2 heads, a 2-block DINOv2 at 56 px.
C, DEPTH, HEADS, IMG, PATCH, REG = 32, 4, 2, 56, 14, 4
DPT_CHANNELS, DPT_FEATURES = (8, 16, 32, 32), 16
LAYERS = (0, 1, 2, 3)


def tiny_modules(seed: int = 0) -> tuple[GeometryEncoder, CameraHead, DPTHead]:
    torch.manual_seed(seed)
    encoder = GeometryEncoder(IMG, PATCH, C, DEPTH, HEADS, patch_embed_depth=2, patch_embed_num_heads=HEADS)
    camera = CameraHead(2 * C, trunk_depth=2, num_heads=HEADS)
    depth = DPTHead(2 * C, PATCH, features=DPT_FEATURES, out_channels=DPT_CHANNELS, intermediate_layer_idx=LAYERS)
    return encoder, camera, depth


def run(encoder, camera, depth, images):
    tokens, start = encoder(images, keep_layers=depth.intermediate_layer_idx)
    return tokens, camera(tokens), depth(tokens, images, start, frames_chunk_size=3)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_vggt_1b_parameter_counts():
    with torch.device("meta"):
        encoder, camera, depth = GeometryEncoder(), CameraHead(), DPTHead()
    assert count(encoder.patch_embed) == 304_372_736
    assert count(encoder.frame_blocks) == 302_364_672
    assert count(encoder.global_blocks) == 302_364_672
    assert count(camera) == 216_174_610
    assert count(depth) == 32_654_562
    assert tuple(encoder.camera_token.shape) == (1, 2, 1, 1024)
    assert tuple(encoder.register_token.shape) == (1, 2, 4, 1024)
    assert tuple(encoder.patch_embed.pos_embed.shape) == (1, 1 + 37 * 37, 1024)


@pytest.mark.parametrize("views,height,width", [(2, 56, 56), (5, 56, 56), (8, 56, 56), (3, 42, 70)])
def test_tiny_forward_shapes(views, height, width):
    encoder, camera, depth = tiny_modules()
    images = torch.rand(2, views, 3, height, width)
    with torch.no_grad():
        tokens, poses, (pred, conf) = run(encoder, camera, depth, images)
    p = 1 + REG + (height // PATCH) * (width // PATCH)
    assert [tuple(t.shape) for t in tokens] == [(2, views, p, 2 * C)] * len(LAYERS)
    assert len(poses) == 4 and all(tuple(x.shape) == (2, views, 9) for x in poses)
    assert tuple(pred.shape) == (2, views, height, width, 1) and tuple(conf.shape) == (2, views, height, width)
    assert (pred > 0).all() and (conf > 1).all() and (poses[-1][..., 7:] >= 0).all()
    assert all(torch.isfinite(t).all() for t in [*tokens, *poses, pred, conf])

    features = DPTHead(2 * C, PATCH, features=DPT_FEATURES, out_channels=DPT_CHANNELS, intermediate_layer_idx=LAYERS,
                       feature_only=True)(tokens, images, 1 + REG)
    assert tuple(features.shape) == (2, views, DPT_FEATURES, height, width)


def test_keep_layers_selects_and_orders():
    encoder, _, _ = tiny_modules()
    images = torch.rand(1, 3, 3, IMG, IMG)
    with torch.no_grad():
        every, _ = encoder(images, keep_layers=range(DEPTH))
        some, start = encoder(images, keep_layers=[2, 0])
    assert start == 1 + REG
    torch.testing.assert_close(some[0], every[2])
    torch.testing.assert_close(some[1], every[0])
    with pytest.raises(ValueError, match="keep_layers"):
        encoder(images, keep_layers=[DEPTH])
    with pytest.raises(ValueError, match="multiple of the patch size"):
        encoder(torch.rand(1, 2, 3, 50, 56), keep_layers=[0])


def test_bf16_autocast_runs():
    encoder, camera, depth = tiny_modules()
    images = torch.rand(1, 2, 3, IMG, IMG)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        tokens, poses, (pred, conf) = run(encoder, camera, depth, images)
    assert all(torch.isfinite(t.float()).all() for t in [*tokens, poses[-1], pred, conf])


def _block_names(prefix: str, dim: int, qk_norm: bool) -> dict[str, tuple[int, ...]]:
    names = {
        "norm1.weight": (dim,), "norm1.bias": (dim,),
        "attn.qkv.weight": (3 * dim, dim), "attn.qkv.bias": (3 * dim,),
        "attn.proj.weight": (dim, dim), "attn.proj.bias": (dim,),
        "ls1.gamma": (dim,),
        "norm2.weight": (dim,), "norm2.bias": (dim,),
        "mlp.fc1.weight": (4 * dim, dim), "mlp.fc1.bias": (4 * dim,),
        "mlp.fc2.weight": (dim, 4 * dim), "mlp.fc2.bias": (dim,),
        "ls2.gamma": (dim,),
    }  # fmt: skip
    if qk_norm:
        head = dim // HEADS
        names |= {f"attn.{q}_norm.{w}": (head,) for q in "qk" for w in ("weight", "bias")}
    return {f"{prefix}{k}": v for k, v in names.items()}


def vggt_layout() -> dict[str, tuple[int, ...]]:
    """Key names and shapes of a VGGT checkpoint at tiny size, written from VGGT's documented layout."""
    grid = IMG // PATCH
    keys = {
        "aggregator.camera_token": (1, 2, 1, C),
        "aggregator.register_token": (1, 2, REG, C),
        "aggregator.patch_embed.cls_token": (1, 1, C),
        "aggregator.patch_embed.pos_embed": (1, 1 + grid * grid, C),
        "aggregator.patch_embed.register_tokens": (1, REG, C),
        "aggregator.patch_embed.mask_token": (1, C),
        "aggregator.patch_embed.patch_embed.proj.weight": (C, 3, PATCH, PATCH),
        "aggregator.patch_embed.patch_embed.proj.bias": (C,),
        "aggregator.patch_embed.norm.weight": (C,),
        "aggregator.patch_embed.norm.bias": (C,),
    }
    for i in range(2):
        keys |= _block_names(f"aggregator.patch_embed.blocks.{i}.", C, qk_norm=False)
    for i in range(DEPTH):
        keys |= _block_names(f"aggregator.frame_blocks.{i}.", C, qk_norm=True)
        keys |= _block_names(f"aggregator.global_blocks.{i}.", C, qk_norm=True)

    d = 2 * C
    for i in range(2):
        keys |= _block_names(f"camera_head.trunk.{i}.", d, qk_norm=False)
    keys |= {
        "camera_head.token_norm.weight": (d,), "camera_head.token_norm.bias": (d,),
        "camera_head.trunk_norm.weight": (d,), "camera_head.trunk_norm.bias": (d,),
        "camera_head.empty_pose_tokens": (1, 1, 9),
        "camera_head.embed_pose.weight": (d, 9), "camera_head.embed_pose.bias": (d,),
        "camera_head.poseLN_modulation.1.weight": (3 * d, d), "camera_head.poseLN_modulation.1.bias": (3 * d,),
        "camera_head.pose_branch.fc1.weight": (d // 2, d), "camera_head.pose_branch.fc1.bias": (d // 2,),
        "camera_head.pose_branch.fc2.weight": (9, d // 2), "camera_head.pose_branch.fc2.bias": (9,),
    }  # fmt: skip

    f, (c0, c1, _, c3) = DPT_FEATURES, DPT_CHANNELS
    keys |= {"depth_head.norm.weight": (d,), "depth_head.norm.bias": (d,)}
    for i, oc in enumerate(DPT_CHANNELS):
        keys |= {f"depth_head.projects.{i}.weight": (oc, d, 1, 1), f"depth_head.projects.{i}.bias": (oc,)}
        keys[f"depth_head.scratch.layer{i + 1}_rn.weight"] = (f, oc, 3, 3)
    keys |= {
        "depth_head.resize_layers.0.weight": (c0, c0, 4, 4), "depth_head.resize_layers.0.bias": (c0,),
        "depth_head.resize_layers.1.weight": (c1, c1, 2, 2), "depth_head.resize_layers.1.bias": (c1,),
        "depth_head.resize_layers.3.weight": (c3, c3, 3, 3), "depth_head.resize_layers.3.bias": (c3,),
        "depth_head.scratch.output_conv1.weight": (f // 2, f, 3, 3), "depth_head.scratch.output_conv1.bias": (f // 2,),
        "depth_head.scratch.output_conv2.0.weight": (32, f // 2, 3, 3), "depth_head.scratch.output_conv2.0.bias": (32,),
        "depth_head.scratch.output_conv2.2.weight": (2, 32, 1, 1), "depth_head.scratch.output_conv2.2.bias": (2,),
    }  # fmt: skip
    for r in range(1, 5):
        block = f"depth_head.scratch.refinenet{r}."
        keys |= {block + "out_conv.weight": (f, f, 1, 1), block + "out_conv.bias": (f,)}
        for unit in ("resConfUnit1", "resConfUnit2") if r < 4 else ("resConfUnit2",):
            for conv in ("conv1", "conv2"):
                keys |= {f"{block}{unit}.{conv}.weight": (f, f, 3, 3), f"{block}{unit}.{conv}.bias": (f,)}
    keys["point_head.norm.weight"] = (d,)  # other VGGT heads are present in the checkpoint and ignored
    return keys


def _split(checkpoint: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in checkpoint.items() if k.startswith(prefix)}


def test_vggt_checkpoint_layout_loads_strictly():
    torch.manual_seed(1)
    checkpoint = {k: torch.randn(shape) for k, shape in vggt_layout().items()}
    modules = dict(zip(("aggregator.", "camera_head.", "depth_head."), tiny_modules()))
    for prefix, module in modules.items():
        module.load_state_dict(_split(checkpoint, prefix), strict=True)
        for name, tensor in module.state_dict().items():
            assert torch.equal(tensor, checkpoint[prefix + name])

    encoder = modules["aggregator."]
    bad_shape = _split(checkpoint, "aggregator.")
    bad_shape["frame_blocks.0.attn.q_norm.weight"] = torch.zeros(C)
    with pytest.raises(RuntimeError, match="size mismatch"):
        encoder.load_state_dict(bad_shape, strict=True)
    missing = _split(checkpoint, "aggregator.")
    del missing["global_blocks.3.ls2.gamma"]
    with pytest.raises(RuntimeError, match="Missing key"):
        encoder.load_state_dict(missing, strict=True)


def test_gradients_reach_every_parameter():
    encoder, camera, depth = tiny_modules()
    images = torch.rand(1, 3, 3, IMG, IMG)
    with torch.inference_mode():  # cached position tables made here must stay usable for training
        run(encoder, camera, depth, images)
    _, poses, (pred, conf) = run(encoder, camera, depth, images)
    (sum(p.square().sum() for p in poses) + pred.mean() + conf.mean()).backward()
    frozen = [n for n, p in encoder.named_parameters() if not p.requires_grad]
    assert frozen == ["patch_embed.mask_token"]
    for module in (encoder, camera, depth):
        for name, param in module.named_parameters():
            if param.requires_grad:
                assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_gradient_checkpointing_matches():
    encoder, _, _ = tiny_modules()
    images = torch.rand(1, 2, 3, IMG, IMG)
    grads = []
    for checkpointing in (False, True):
        encoder.zero_grad()
        encoder.checkpointing = checkpointing
        encoder(images, keep_layers=[DEPTH - 1])[0][0].sum().backward()
        grads.append(encoder.frame_blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_deterministic_with_seed():
    images = torch.rand(1, 2, 3, IMG, IMG)
    outputs = []
    for _ in range(2):
        modules = tiny_modules(seed=3)
        with torch.no_grad():
            tokens, poses, (pred, conf) = run(*modules, images)
        outputs.append((tokens[-1], poses[-1], pred, conf))
    for a, b in zip(*outputs):
        assert torch.equal(a, b)


def test_rope_matches_direct_formula():
    """RoPE as VGGT defines it: first half of each head rotates with the row, second with the column,
    rotate-half pairing inside each half; special tokens at position 0, patches at (row + 1, col + 1)."""
    head_dim, grid_h, grid_w, special, freq = 16, 3, 4, 2, 100.0
    x = torch.randn(2, 3, 2 * (special + grid_h * grid_w), head_dim)  # two frames end to end
    rows = torch.tensor([0] * special + [r + 1 for r in range(grid_h) for _ in range(grid_w)])
    cols = torch.tensor([0] * special + [c + 1 for _ in range(grid_h) for c in range(grid_w)])
    quarter = head_dim // 4
    inv_freq = 1.0 / freq ** (torch.arange(quarter) * 2 / (head_dim // 2))

    def rotate(half, pos):
        angle = (pos[:, None] * inv_freq).repeat(1, 2)
        rotated = torch.cat((-half[..., quarter:], half[..., :quarter]), dim=-1)
        return half * angle.cos() + rotated * angle.sin()

    frames = x.unflatten(2, (2, -1))
    expected = torch.cat((rotate(frames[..., : 2 * quarter], rows), rotate(frames[..., 2 * quarter :], cols)), -1)
    tables = RotaryEmbedding2D(head_dim, freq)(grid_h, grid_w, special, x.device)
    torch.testing.assert_close(apply_rope(x, tables), expected.flatten(2, 3))


def test_dpt_position_embedding_matches_direct_formula():
    """VGGT's UV embedding: u, v at pixel centers of the diagonal-normalized plane, [sin u, cos u, sin v, cos v]."""
    h, w, channels, aspect = 3, 5, 8, 5 / 3
    diag = (aspect**2 + 1) ** 0.5
    u = (torch.arange(w) + 0.5) / w * 2 - 1
    v = (torch.arange(h) + 0.5) / h * 2 - 1
    omega = 100.0 ** (-torch.arange(channels // 4) / (channels // 4))
    emb = torch.zeros(channels, h, w)
    for i in range(h):
        for j in range(w):
            a, b = u[j] * aspect / diag * omega, v[i] / diag * omega
            emb[:, i, j] = 0.1 * torch.cat((a.sin(), a.cos(), b.sin(), b.cos()))
    torch.testing.assert_close(uv_sincos_embedding(h, w, channels, aspect, torch.float32, torch.device("cpu")), emb)


@pytest.mark.parametrize("height,width", [(56, 56), (42, 70)])
def test_patch_embedding_matches_timm_dinov2(height, width):
    """Our DINOv2 equals timm's DINOv2-with-registers once the class position is folded into the class token."""
    timm = pytest.importorskip("timm")
    encoder, _, _ = tiny_modules()
    ours = encoder.patch_embed
    reference = timm.models.vision_transformer.VisionTransformer(
        img_size=IMG, patch_size=PATCH, embed_dim=C, depth=2, num_heads=HEADS, init_values=1.0, reg_tokens=REG,
        no_embed_class=True, dynamic_img_size=True, num_classes=0, global_pool="",
    )  # fmt: skip
    state = {k: v for k, v in ours.state_dict().items() if k not in ("mask_token", "register_tokens")}
    state |= {
        "cls_token": ours.cls_token + ours.pos_embed[:, :1],
        "pos_embed": ours.pos_embed[:, 1:],
        "reg_token": ours.register_tokens,
    }
    reference.load_state_dict(state, strict=True)
    images = torch.randn(2, 3, height, width)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), reference.forward_features(images)[:, 1 + REG :])
