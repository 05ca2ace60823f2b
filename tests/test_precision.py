"""Mixed precision as VGGT runs it: bf16 matmuls in the backbone, float32 heads, unprojection and voxelization.

CPU autocast supports bf16, so the CUDA inference policy (``network/precision.py``) runs here as it does on
a GPU, at the tiny preset's size.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import ff3r_ns.network.ff3r as ff3r_module
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.precision import BACKBONE_PARTS, cast_backbone_matmuls, prepare_inference


@pytest.fixture(scope="module")
def network() -> FF3R:
    torch.manual_seed(0)
    net = FF3R.from_preset("tiny").eval()
    # Perturb every parameter (LayerScale, norms, biases included) so that every path carries signal.
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return net


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(1, 3, 3, 56, 56, generator=torch.Generator().manual_seed(1))


def _output_dtypes(net: nn.Module, run) -> dict[str, torch.dtype]:
    """dtype of the (first) tensor output of every submodule during ``run()``."""
    seen: dict[str, torch.dtype] = {}

    def hook(name):
        def record(_module, _args, out):
            first = out[0] if isinstance(out, (tuple, list)) and out else out
            if torch.is_tensor(first) and first.is_floating_point():
                seen.setdefault(name, first.dtype)

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in net.named_modules() if n]
    try:
        run()
    finally:
        for h in handles:
            h.remove()
    return seen


def test_cast_keeps_norms_scales_and_heads_in_float32(network):
    mixed = cast_backbone_matmuls(copy.deepcopy(network), torch.bfloat16)
    assert mixed.backbone_dtype == torch.bfloat16
    for name, module in mixed.named_modules():
        params = list(module.parameters(recurse=False))
        if not params:
            continue
        in_backbone = name.split(".")[0] in BACKBONE_PARTS
        is_matmul = isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))
        want = torch.bfloat16 if in_backbone and is_matmul else torch.float32
        assert {p.dtype for p in params} == {want}, name
    # LayerScale and LayerNorm of the geometry blocks stay float32 (autocast reads them in float32).
    block = mixed.aggregator.frame_blocks[0]
    assert block.ls1.gamma.dtype == block.norm1.weight.dtype == torch.float32


def test_backbone_runs_bf16_matmuls_and_the_rest_runs_float32(network, images, monkeypatch):
    mixed = cast_backbone_matmuls(copy.deepcopy(network), torch.bfloat16)
    voxelized: list[torch.dtype] = []
    original = ff3r_module.semantic_aware_voxelize

    def spy(**kwargs):
        voxelized.extend(kwargs[k].dtype for k in ("means", "confidence", "semantic", "attributes"))
        return original(**kwargs)

    monkeypatch.setattr(ff3r_module, "semantic_aware_voxelize", spy)
    holder = {}
    with torch.no_grad():
        dtypes = _output_dtypes(mixed, lambda: holder.setdefault("out", mixed(images, keep_pixel_gaussians=True)))
    out = holder["out"]
    linears = [n for n, m in mixed.named_modules() if isinstance(m, nn.Linear) and n in dtypes]
    backbone_linears = [n for n in linears if n.split(".")[0] in BACKBONE_PARTS]
    head_modules = [n for n in dtypes if n.split(".")[0] in ("camera_head", "depth_head", "gaussian_head")]
    assert backbone_linears and head_modules
    assert {dtypes[n] for n in backbone_linears} == {torch.bfloat16}
    assert {dtypes[n] for n in head_modules} == {torch.float32}
    # The residual stream leaves the backbone in float32 (bf16 branches added to float32 tokens).
    blocks = [n for n in dtypes if n.startswith("aggregator.") and n.rsplit(".", 1)[-1].isdigit() and "blocks" in n]
    assert blocks and {dtypes[n] for n in blocks} == {torch.float32}
    assert voxelized and set(voxelized) == {torch.float32}
    for tensor in (out.depth, out.depth_conf, out.extrinsics, out.intrinsics, out.pose_enc_list[-1],
                   out.pixel_gaussians.means, out.gaussians.means, out.gaussians.semantic):  # fmt: skip
        assert tensor.dtype == torch.float32


def _errors(out, ref) -> dict[str, float]:
    depth = ((out.depth.float() - ref.depth) / ref.depth.abs().clamp_min(1e-6)).abs().median().item()
    pose = (out.pose_enc_list[-1].float() - ref.pose_enc_list[-1]).abs().max().item()
    means = (out.pixel_gaussians.means.float() - ref.pixel_gaussians.means).abs().median().item()
    return {"depth": depth, "pose": pose, "means": means}


def test_mixed_precision_is_closer_to_float32_than_an_all_bf16_cast(network, images):
    with torch.no_grad():
        ref = network(images, keep_pixel_gaussians=True)
        mixed = prepare_inference(copy.deepcopy(network), torch.device("cpu"), torch.bfloat16)
        out_mixed = mixed(images, keep_pixel_gaussians=True)
        everything = copy.deepcopy(network).to(torch.bfloat16)
        out_bf16 = everything(images.to(torch.bfloat16), keep_pixel_gaussians=True)
    e_mixed, e_bf16 = _errors(out_mixed, ref), _errors(out_bf16, ref)
    print(f"relative to float32: mixed {e_mixed}, all-bf16 cast {e_bf16}")
    # bf16 keeps 8 mantissa bits (relative 4e-3): the mixed path must be off the float32 pass by about that
    # at most, and clearly closer than casting everything.
    assert e_mixed["pose"] < 2e-2 and e_mixed["means"] < 1e-2
    for key in ("depth", "pose", "means"):
        assert e_mixed[key] < 0.7 * e_bf16[key], key


def test_float32_inference_is_the_plain_float32_network(network, images):
    """With float32 the policy changes nothing: the pass equals the untouched network's, bit for bit."""
    with torch.no_grad():
        ref = network(images)
        same = prepare_inference(copy.deepcopy(network), torch.device("cpu"), torch.float32)
        assert same.backbone_dtype is None
        out = same(images)
    assert torch.equal(out.depth, ref.depth) and torch.equal(out.gaussians.means, ref.gaussians.means)
