"""Semantic encoder (LSeg image encoder, CLIP text encoder) and token-wise fusion (Eq. 1)."""

import argparse
import dataclasses

import pytest
import torch

from ff3r_ns.network.config import preset
from ff3r_ns.network.fusion import TokenWiseFusion, patch_centre_rope
from ff3r_ns.network.semantic import (
    LSegImageEncoder,
    TextEncoder,
    load_lseg_checkpoint,
    segmentation_logits,
)
from ff3r_ns.network.transformer import apply_rope

TINY = dataclasses.asdict(preset("tiny").semantic)


@pytest.fixture(scope="module")
def tiny_encoder() -> LSegImageEncoder:
    torch.manual_seed(0)
    return LSegImageEncoder(**TINY).eval()


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(weights=None)


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (32, 32), (112, 112)])
def test_tiny_encoder_shapes(tiny_encoder, size):
    h, w = size
    with torch.no_grad():
        tokens, features = tiny_encoder(torch.rand(2, 3, h, w))
    assert tokens.shape == (2, (h // 16) * (w // 16), TINY["embed_dim"])
    assert features.shape == (2, TINY["out_dim"], h // 2, w // 2)
    assert torch.isfinite(features).all()


def test_encoder_rejects_size_off_the_patch_grid(tiny_encoder):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        tiny_encoder(torch.rand(1, 3, 40, 64))


def lseg_release_state(
    embed_dim=32, depth=4, grid=4, patch=16, dims=(8, 16, 32, 32), features=16, out_dim=512
) -> dict[str, torch.Tensor]:
    """A state dict in the layout of LSeg's ``demo_e200.ckpt`` at the given sizes, written from LSeg's source
    (``lseg_net.py``, ``lseg_blocks.py``, ``lseg_vit.py`` with timm 0.4.12's ViT), not from our module."""
    d = embed_dim
    shapes = {
        "pretrained.model.cls_token": (1, 1, d),
        "pretrained.model.pos_embed": (1, 1 + grid * grid, d),
        "pretrained.model.patch_embed.proj.weight": (d, 3, patch, patch),
        "pretrained.model.patch_embed.proj.bias": (d,),
        "pretrained.model.norm.weight": (d,),
        "pretrained.model.norm.bias": (d,),
        "pretrained.model.head.weight": (1000, d),
        "pretrained.model.head.bias": (1000,),
    }
    for i in range(depth):
        block = f"pretrained.model.blocks.{i}."
        for name, shape in {
            "norm1.weight": (d,), "norm1.bias": (d,),
            "attn.qkv.weight": (3 * d, d), "attn.qkv.bias": (3 * d,),
            "attn.proj.weight": (d, d), "attn.proj.bias": (d,),
            "norm2.weight": (d,), "norm2.bias": (d,),
            "mlp.fc1.weight": (4 * d, d), "mlp.fc1.bias": (4 * d,),
            "mlp.fc2.weight": (d, 4 * d), "mlp.fc2.bias": (d,),
        }.items():  # fmt: skip
            shapes[block + name] = shape
    for i, c in enumerate(dims, start=1):
        act = f"pretrained.act_postprocess{i}."
        shapes[act + "0.project.0.weight"] = (d, 2 * d)  # ProjectReadout: Linear(2D, D) + GELU
        shapes[act + "0.project.0.bias"] = (d,)
        shapes[act + "3.weight"] = (c, d, 1, 1)
        shapes[act + "3.bias"] = (c,)
        if i in (1, 2):  # ConvTranspose2d, kernel = stride = 4, 2
            k = 4 if i == 1 else 2
            shapes[act + "4.weight"] = (c, c, k, k)
            shapes[act + "4.bias"] = (c,)
        if i == 4:  # Conv2d 3x3, stride 2
            shapes[act + "4.weight"] = (c, c, 3, 3)
            shapes[act + "4.bias"] = (c,)
        shapes[f"scratch.layer{i}_rn.weight"] = (features, c, 3, 3)
        ref = f"scratch.refinenet{i}."
        shapes[ref + "out_conv.weight"] = (features, features, 1, 1)
        shapes[ref + "out_conv.bias"] = (features,)
        for unit in ("resConfUnit1.", "resConfUnit2."):  # refinenet4 has an (unused) resConfUnit1 too
            for conv in ("conv1", "conv2"):
                shapes[ref + unit + conv + ".weight"] = (features, features, 3, 3)
            for bn in ("bn1", "bn2"):
                for stat in ("weight", "bias", "running_mean", "running_var"):
                    shapes[ref + unit + f"{bn}.{stat}"] = (features,)
    shapes["scratch.head1.weight"] = (out_dim, features, 1, 1)
    shapes["scratch.head1.bias"] = (out_dim,)
    # A few entries of the OpenAI CLIP ViT-B/32 that LSeg keeps as clip_pretrained.
    shapes["clip_pretrained.positional_embedding"] = (77, 512)
    shapes["clip_pretrained.visual.conv1.weight"] = (768, 3, 32, 32)
    generator = torch.Generator().manual_seed(1)
    state = {"net." + key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}
    for key in [k for k in state if k.endswith("running_var")]:
        state[key] = state[key].abs() + 0.5
        state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(7)
    return state


def test_lseg_release_layout_loads_strictly(tmp_path):
    state = lseg_release_state()
    encoder = LSegImageEncoder(**TINY)
    # A Lightning checkpoint with Python objects besides the weights (callbacks keyed by class, hparams).
    path = tmp_path / "demo_e200.ckpt"
    torch.save({"state_dict": state, "callbacks": {argparse.Namespace: {}}, "hparams": argparse.Namespace()}, path)
    load_lseg_checkpoint(encoder, path)
    own = encoder.state_dict()
    assert torch.equal(own["vit.blocks.2.attn.qkv.weight"], state["net.pretrained.model.blocks.2.attn.qkv.weight"])
    assert torch.equal(own["reassemble.3.resample.weight"], state["net.pretrained.act_postprocess4.4.weight"])
    assert torch.equal(
        own["refine.0.skip_unit.bn2.running_var"], state["net.scratch.refinenet1.resConfUnit1.bn2.running_var"]
    )
    assert torch.equal(own["head.bias"], state["net.scratch.head1.bias"])
    with torch.no_grad():
        assert torch.isfinite(encoder.eval()(torch.rand(1, 3, 64, 64))[1]).all()


@pytest.mark.parametrize(
    "edit, key",
    [
        (lambda s: s.pop("net.scratch.refinenet2.out_conv.weight"), "scratch.refinenet2.out_conv.weight"),
        (lambda s: s.update({"net.scratch.extra.weight": torch.zeros(1)}), "scratch.extra.weight"),
        (lambda s: s.update({"net.scratch.head1.weight": torch.zeros(8, 16, 1, 1)}), "scratch.head1.weight"),
    ],
    ids=["missing", "unexpected", "misshaped"],
)
def test_lseg_checkpoint_mismatch_names_the_key(edit, key):
    state = lseg_release_state()
    edit(state)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        load_lseg_checkpoint(LSegImageEncoder(**TINY), state)


def test_large_encoder_has_lseg_vit_l16_size():
    with torch.device("meta"):
        encoder = LSegImageEncoder()  # the defaults are LSeg's clip_vitl16_384
    d, grid = 1024, 384 // 16
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d)
    vit = (d * 3 * 16 * 16 + d) + d + (1 + grid**2) * d + 24 * block + 2 * d
    assert vit == 303_690_752  # timm vit_large_patch16_384 (304_715_752) without its 1000-class head
    assert sum(p.numel() for p in encoder.vit.parameters()) == vit
    readout = 4 * (2 * d * d + d)
    reassemble = (d * 256 + 256 + 256 * 256 * 16 + 256) + (d * 512 + 512 + 512 * 512 * 4 + 512)
    reassemble += (d * d + d) + (d * d + d + d * d * 9 + d)
    layer_rn = (256 + 512 + 1024 + 1024) * 256 * 9
    unit = 2 * 256 * 256 * 9 + 2 * 2 * 256
    refine = 7 * unit + 4 * (256 * 256 + 256)  # refinenet4 has no skip unit
    head = 256 * 512 + 512
    total = vit + readout + reassemble + layer_rn + refine + head
    assert total == 341_653_504
    assert sum(p.numel() for p in encoder.parameters()) == total


def test_text_encoder_unit_vectors(text_encoder):
    with torch.no_grad():
        embeddings = text_encoder.encode(["a chair", "a wooden table", "the floor"])
    assert embeddings.shape == (3, 512)
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(3))
    assert not hasattr(text_encoder.clip, "visual")


def test_text_encoder_loads_lseg_clip_entries(text_encoder):
    own = text_encoder.clip.state_dict()
    state = {"net.clip_pretrained." + k: torch.full_like(v, 0.01) for k, v in own.items()}
    state["net.clip_pretrained.visual.proj"] = torch.zeros(768, 512)
    state["net.scratch.head1.bias"] = torch.zeros(512)
    text_encoder.load_weights({"state_dict": state})  # as in LSeg's Lightning checkpoint
    assert torch.equal(text_encoder.clip.text_projection, torch.full_like(own["text_projection"], 0.01))


def test_text_encoder_without_weights_says_what_to_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="open_clip_model.safetensors"):
        TextEncoder(weights="openai", cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        TextEncoder(weights=tmp_path / "nowhere.safetensors")


def test_segmentation_logits_by_hand():
    features = torch.zeros(1, 4, 1, 2)
    features[0, :, 0, 0] = torch.tensor([3.0, 4.0, 0.0, 0.0])  # cos with text 0: 0.6, with text 1: 0.8
    features[0, :, 0, 1] = torch.tensor([0.0, 0.0, 2.0, 0.0])  # orthogonal to both
    text = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]])
    logits = segmentation_logits(features, text)
    expected = torch.tensor([[[[0.6, 0.0]], [[0.8, 0.0]]]]) / 0.07
    torch.testing.assert_close(logits, expected)


def fusion_inputs(b=2, s=3, special=5, geometry_grid=(4, 4), semantic_grid=(3, 3)):
    torch.manual_seed(0)
    geometry = torch.randn(b, s, special + geometry_grid[0] * geometry_grid[1], 64)
    semantic = torch.randn(b, s, semantic_grid[0] * semantic_grid[1], 32)
    return geometry, semantic, special, geometry_grid, semantic_grid


def tiny_fusion() -> TokenWiseFusion:
    return TokenWiseFusion(geometry_dim=64, semantic_dim=32, num_heads=2, position_scale=4.0)


def test_fusion_is_identity_at_initialization():
    geometry, semantic, *rest = fusion_inputs()
    assert torch.equal(tiny_fusion()(geometry, semantic, *rest), geometry)


@pytest.mark.parametrize("semantic_grid", [(3, 3), (5, 2), (4, 4), (1, 1)])
def test_fusion_keeps_special_tokens_and_handles_any_semantic_grid(semantic_grid):
    geometry, semantic, special, geometry_grid, _ = fusion_inputs(semantic_grid=semantic_grid)
    fusion = tiny_fusion()
    torch.nn.init.normal_(fusion.out_proj.weight)
    out = fusion(geometry, semantic, special, geometry_grid, semantic_grid)
    assert out.shape == geometry.shape
    assert torch.equal(out[:, :, :special], geometry[:, :, :special])
    assert not torch.allclose(out[:, :, special:], geometry[:, :, special:])


def test_fusion_attends_within_each_view():
    geometry, semantic, *rest = fusion_inputs()
    fusion = tiny_fusion()
    torch.nn.init.normal_(fusion.out_proj.weight)
    changed = semantic.clone()
    changed[:, 1] += 1.0
    before, after = fusion(geometry, semantic, *rest), fusion(geometry, changed, *rest)
    assert torch.equal(before[:, [0, 2]], after[:, [0, 2]])
    assert not torch.allclose(before[:, 1], after[:, 1])


def test_fusion_gradients_reach_projections_after_one_step():
    geometry, semantic, *rest = fusion_inputs()
    fusion = tiny_fusion()
    target = torch.randn_like(geometry)
    optimizer = torch.optim.SGD(fusion.parameters(), lr=0.1)

    def step() -> None:
        optimizer.zero_grad()
        (fusion(geometry, semantic, *rest) - target).square().mean().backward()

    step()  # zero W_O: only W_O (and its bias) learns at first
    assert fusion.out_proj.weight.grad.abs().sum() > 0
    assert all(not layer.weight.grad.any() for layer in (fusion.to_q, fusion.to_k, fusion.to_v))
    optimizer.step()
    step()
    assert all(layer.weight.grad.abs().sum() > 0 for layer in (fusion.to_q, fusion.to_k, fusion.to_v))


def test_fusion_rejects_token_counts_off_the_grid():
    geometry, semantic, special, geometry_grid, semantic_grid = fusion_inputs()
    with pytest.raises(ValueError, match="geometry tokens"):
        tiny_fusion()(geometry, semantic, special + 1, geometry_grid, semantic_grid)
    with pytest.raises(ValueError, match="semantic tokens"):
        tiny_fusion()(geometry, semantic, special, geometry_grid, (2, 2))


def test_fusion_runs_under_bf16_autocast():
    geometry, semantic, *rest = fusion_inputs()
    fusion = tiny_fusion()
    torch.nn.init.normal_(fusion.out_proj.weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fusion(geometry, semantic, *rest)
    assert out.shape == geometry.shape and torch.isfinite(out).all()


def test_patch_centre_rope_logits_depend_on_image_offset_only():
    """The same image point on a 4x4 and a 2x2 grid gets the same position; logits see offsets only."""
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    fine = patch_centre_rope((4, 4), 8, 100.0, 4.0, torch.device("cpu"))
    coarse = patch_centre_rope((2, 2), 8, 100.0, 4.0, torch.device("cpu"))

    def logit(tables_q, i, tables_k, j) -> torch.Tensor:
        rq = apply_rope(q, tuple(t[i : i + 1] for t in tables_q))
        rk = apply_rope(k, tuple(t[j : j + 1] for t in tables_k))
        return (rq * rk).sum()

    # Fine patch (1, 1) is centred at 1.5, coarse patch (0, 0) at 1.0; fine (3, 3) at 3.5, coarse (1, 1) at 3.0.
    torch.testing.assert_close(logit(fine, 5, coarse, 0), logit(fine, 15, coarse, 3))
    assert not torch.allclose(logit(fine, 5, coarse, 0), logit(fine, 5, coarse, 3))
