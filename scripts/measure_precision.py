"""How far each reduced-precision inference path lands from its own float32 pass: FF3R's and VGGT-1B's own.

    python scripts/measure_precision.py --reference-vggt .ref --scene SCENE --views 8 --out precision.json

Both networks get the same random VGGT weights with every parameter perturbed (LayerScale, norms, biases,
special tokens: nothing constant or zero, so every path carries signal); FF3R's other parts are random and
perturbed too. Views: ``--views`` evenly spaced real views of ``--scene``, long side ``--size``. The
float32 references run with TF32 off; the reduced paths keep torch's defaults. Each path is scored against
its own network's float32 pass:

- ``vggt-autocast``: VGGT's code under bf16 autocast, as its demo runs it (heads in float32 by its design);
- ``ff3r-mixed``: today's inference (``network/precision.py``): backbone matmul weights in bf16 under
  autocast, heads, unprojection and voxelization in float32;
- ``ff3r-autocast-fp32-weights``: the same with the backbone's weights left in float32 (autocast casts
  them per call); it must equal ``ff3r-mixed``, which only moves that cast ahead of time;
- ``ff3r-cast-heads-fp32``: the whole backbone cast to bf16 (no float32 residual stream, norms or
  softmax), heads in float32: what the backbone's float32 islands are worth;
- ``ff3r-cast``: everything in bf16 (the previous inference): what the float32 heads are worth on top.

Depth: relative error per pixel (median, 99th percentile, max), and the error in units of the reference
depth's spread over its view (``depth_spread_err``: a random head's depth is nearly constant, so the relative
error alone understates what precision costs); pose: the final pose encoding's max
absolute error; means: the pixel-aligned centres' error in voxels of the preset (median, 99th percentile).
A sanity row compares FF3R's float32 geometry path (fusion bypassed) with VGGT's float32 pass.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch

from ff3r_ns.network.cameras import unproject_depth
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.precision import cast_backbone_matmuls


def perturb_(module: torch.nn.Module, generator: torch.Generator, strength: float = 0.1) -> None:
    """Moves every parameter off its initial value by ``strength`` of its spread (constants: of their scale, or 0.02)."""
    with torch.no_grad():
        for p in module.parameters():
            noise = torch.randn(p.shape, generator=generator, device="cpu").to(p.device, p.dtype)
            spread = p.std().item() if p.numel() > 1 else 0.0
            scale = strength * spread if spread > 0 else strength * p.abs().mean().item() + 0.02
            p.add_(noise * scale)


def summary(err: torch.Tensor, with_max: bool = True) -> dict[str, float]:
    """Median, 99th percentile (of at most a million samples: torch.quantile's limit) and max of ``err``."""
    err = err.flatten()
    sample = err[torch.randperm(len(err), device=err.device)[:1_000_000]]
    out = {"median": err.median().item(), "p99": torch.quantile(sample, 0.99).item()}
    return {**out, "max": err.max().item()} if with_max else out


def relative_errors(pred: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    return summary((pred.float() - ref.float()).abs() / ref.float().abs().clamp_min(1e-6))


def spread_errors(pred: torch.Tensor, ref: torch.Tensor) -> dict[str, float]:
    """Error per pixel in units of the reference's spread over its view's pixels.

    A random depth head puts out nearly the same depth everywhere (its bias dominates), so an error relative to
    the value is tiny whatever the precision; relative to how much the depth varies it says what a user sees.
    """
    ref = ref.float().flatten(-2)  # [..., views, pixels]
    pred = pred.float().reshape(ref.shape)
    return summary((pred - ref).abs() / ref.std(dim=-1, keepdim=True).clamp_min(1e-12))


def voxel_errors(pred: torch.Tensor, ref: torch.Tensor, voxel: float) -> dict[str, float]:
    # FF3R keeps its pixel-aligned centres flat ([b, views*h*w, 3]), VGGT's unprojection [b, views, h, w, 3]:
    # both in the order views, rows, columns.
    return summary((pred.float().reshape(-1, 3) - ref.float().reshape(-1, 3)).norm(dim=-1) / voxel, with_max=False)


def score(out: dict, ref: dict, voxel: float) -> dict:
    return {
        "depth_rel_err": relative_errors(out["depth"], ref["depth"]),
        "depth_spread_err": spread_errors(out["depth"], ref["depth"]),
        "pose_enc_max_abs_err": (out["pose_enc"].float() - ref["pose_enc"].float()).abs().max().item(),
        "means_voxel_err": voxel_errors(out["means"], ref["means"], voxel),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference-vggt", required=True, help="folder holding VGGT's `vggt` package")
    parser.add_argument("--scene", required=True, help="a scene with at least --views views")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--perturb", type=float, default=0.1, help="noise on every parameter, in units of its spread")
    parser.add_argument("--out", default="precision.json")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("measure_precision.py compares CUDA precision paths: run it on a GPU")
    sys.path.insert(0, str(Path(args.reference_vggt).resolve()))
    from vggt.models.vggt import VGGT  # noqa: E402  (reference code, never shipped with this project)
    from vggt.utils.pose_enc import pose_encoding_to_extri_intri  # noqa: E402

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from benchmark import real_images  # noqa: E402

    device = torch.device("cuda")
    generator = torch.Generator().manual_seed(args.seed)
    with device:
        vggt = VGGT()
        ff3r = FF3R.from_preset("large")
    vggt.point_head = vggt.track_head = None
    vggt.to(device)  # its normalization buffers are made with torch.FloatTensor, on the CPU
    perturb_(vggt, generator, args.perturb)
    perturb_(ff3r, generator, args.perturb)
    state = vggt.state_dict()
    for name in ("aggregator", "camera_head", "depth_head"):
        getattr(ff3r, name).load_state_dict({k[len(name) + 1 :]: v for k, v in state.items() if k.startswith(name + ".")})
    vggt.eval()
    ff3r.eval()
    images = real_images(args.scene, args.views, args.size).to(device)
    hw = tuple(images.shape[-2:])
    voxel = ff3r.config.voxel.voxel_size

    @torch.inference_mode()
    def run_vggt(autocast: bool) -> dict:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            pred = vggt(images)
        extrinsics, intrinsics = pose_encoding_to_extri_intri(pred["pose_enc"], hw)
        return {
            "depth": pred["depth"][..., 0],
            "pose_enc": pred["pose_enc"],
            "means": unproject_depth(pred["depth"][..., 0].float(), extrinsics.float(), intrinsics.float()),
        }

    @torch.inference_mode()
    def run_ff3r(network: FF3R, dtype: torch.dtype = torch.float32, outer_autocast: bool = False) -> dict:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=outer_autocast):
            out = network(images.to(dtype), voxelize=False, keep_pixel_gaussians=True)
        return {"depth": out.depth, "pose_enc": out.pose_enc_list[-1], "means": out.pixel_gaussians.means}

    def float32_pass(fn):
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        try:
            return fn()
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    results: dict = {"views": args.views, "image_hw": list(hw), "scene": Path(args.scene).name, "voxel_size": voxel,
                     "perturb": args.perturb}  # fmt: skip
    vggt_ref = float32_pass(lambda: run_vggt(False))
    d = vggt_ref["depth"].float()
    results["vggt_float32_depth"] = {"mean": d.mean().item(), "std_over_mean": (d.std() / d.mean()).item()}
    results["vggt-autocast"] = score(run_vggt(True), vggt_ref, voxel)
    print("vggt-autocast", json.dumps(results["vggt-autocast"]), flush=True)

    # Sanity: FF3R's geometry path in float32 (fusion bypassed) is VGGT's float32 pass.
    fusion, ff3r.fusion = ff3r.fusion, None
    results["ff3r-geometry-float32-vs-vggt-float32"] = score(float32_pass(lambda: run_ff3r(ff3r)), vggt_ref, voxel)
    print("sanity", json.dumps(results["ff3r-geometry-float32-vs-vggt-float32"]), flush=True)
    ff3r.fusion = fusion

    ff3r_ref = float32_pass(lambda: run_ff3r(ff3r))
    mixed = cast_backbone_matmuls(copy.deepcopy(ff3r), torch.bfloat16)
    results["ff3r-mixed"] = score(run_ff3r(mixed), ff3r_ref, voxel)
    del mixed
    results["ff3r-autocast-fp32-weights"] = score(run_ff3r(ff3r, outer_autocast=True), ff3r_ref, voxel)
    cast_backbone = copy.deepcopy(ff3r)
    for name in ("aggregator", "semantic_encoder", "fusion"):
        getattr(cast_backbone, name).to(torch.bfloat16)
    results["ff3r-cast-heads-fp32"] = score(run_ff3r(cast_backbone, torch.bfloat16), ff3r_ref, voxel)
    del cast_backbone
    results["ff3r-cast"] = score(run_ff3r(copy.deepcopy(ff3r).to(torch.bfloat16), torch.bfloat16), ff3r_ref, voxel)
    for key in ("ff3r-mixed", "ff3r-autocast-fp32-weights", "ff3r-cast-heads-fp32", "ff3r-cast"):
        print(key, json.dumps(results[key]), flush=True)
    results["gpu"] = torch.cuda.get_device_name(0)
    results["torch"] = torch.__version__
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
