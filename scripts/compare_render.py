"""Compare the two backends of ``render_gaussians`` (PyTorch compositor vs gsplat CUDA) on a random scene.

Run on a CUDA machine from the repository root:

    python scripts/compare_render.py --out compare_render.json

It prints and writes, per output (rgb, depth, alpha, features), the mean and max absolute difference
between the backends, the same for the gradients of a random linear loss w.r.t. every Gaussian input
(relative L2 difference), and the forward time of each backend. The first gsplat call compiles its
CUDA kernels (about 90 s on a fresh machine); that call is not timed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ff3r_ns.network.cameras import c2w_to_w2c
from ff3r_ns.network.render import render_gaussians

INPUTS = ("means", "quats", "scales", "opacities", "sh_coeffs", "features")


def look_at_w2c(eye: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """OpenCV world-to-camera matrix of a camera at ``eye`` looking at ``target`` (world y is up)."""
    z = torch.nn.functional.normalize(target - eye, dim=-1)
    down = torch.tensor([0.0, -1.0, 0.0])
    x = torch.nn.functional.normalize(torch.linalg.cross(down, z), dim=-1)
    y = torch.linalg.cross(z, x)
    c2w = torch.eye(4)
    c2w[:3, :3] = torch.stack([x, y, z], dim=-1)
    c2w[:3, 3] = eye
    return c2w_to_w2c(c2w)


def random_scene(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(args.seed)
    n, k = args.num_gaussians, (args.sh_degree + 1) ** 2
    scene = {
        "means": torch.randn(n, 3, generator=g),
        "quats": torch.randn(n, 4, generator=g),
        "scales": 0.005 + 0.05 * torch.rand(n, 3, generator=g),
        "opacities": torch.rand(n, generator=g),
        "sh_coeffs": 0.4 * torch.randn(n, k, 3, generator=g),
        "features": torch.randn(n, args.num_features, generator=g),
    }
    angles = torch.linspace(0, 2 * torch.pi, args.num_cameras + 1)[:-1]
    eyes = torch.stack([4 * torch.sin(angles), 0.5 * torch.ones_like(angles), -4 * torch.cos(angles)], dim=-1)
    viewmats = torch.stack([look_at_w2c(eye, torch.zeros(3)) for eye in eyes])
    focal = 0.9 * args.width
    K = torch.tensor([[focal, 0, args.width / 2], [0, focal, args.height / 2], [0, 0, 1]])
    Ks = K.expand(args.num_cameras, 3, 3)
    return scene, viewmats, Ks


def render(scene, viewmats, Ks, args, backend):
    inputs = {name: value.detach().clone().requires_grad_() for name, value in scene.items()}
    out = render_gaussians(
        inputs["means"], inputs["quats"], inputs["scales"], inputs["opacities"], inputs["sh_coeffs"],
        inputs["features"], viewmats, Ks, args.width, args.height, args.sh_degree, backend=backend,
    )  # fmt: skip
    return out, inputs


def forward_ms(scene, viewmats, Ks, args, backend, repeats=5) -> float:
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            torch.cuda.synchronize()
            start = time.perf_counter()
            render(scene, viewmats, Ks, args, backend)
            torch.cuda.synchronize()
            times.append(1000 * (time.perf_counter() - start))
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-gaussians", type=int, default=20_000)
    parser.add_argument("--num-cameras", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--num-features", type=int, default=16)
    parser.add_argument("--sh-degree", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("compare_render.json"))
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("compare_render.py needs a CUDA GPU: the gsplat backend runs only on CUDA tensors")

    scene, viewmats, Ks = random_scene(args)
    scene = {name: value.cuda() for name, value in scene.items()}
    viewmats, Ks = viewmats.cuda(), Ks.cuda()

    outputs, grads = {}, {}
    for backend in ("gsplat", "torch"):
        out, inputs = render(scene, viewmats, Ks, args, backend)
        g = torch.Generator(device="cuda").manual_seed(args.seed + 1)
        loss = sum((value * torch.randn(value.shape, generator=g, device="cuda")).sum() for value in out.values())
        loss.backward()
        outputs[backend] = {name: value.detach() for name, value in out.items()}
        grads[backend] = {name: inputs[name].grad for name in INPUTS}

    report = {"config": vars(args) | {"out": str(args.out)}, "device": torch.cuda.get_device_name(), "outputs": {}}
    for name in ("rgb", "depth", "alpha", "features"):
        diff = (outputs["torch"][name] - outputs["gsplat"][name]).abs()
        report["outputs"][name] = {"mean_abs": diff.mean().item(), "max_abs": diff.max().item()}
    # Expected depth divides by alpha, so it is ill-conditioned where almost nothing was hit.
    covered = outputs["gsplat"]["alpha"] > 0.5
    depth_diff = (outputs["torch"]["depth"] - outputs["gsplat"]["depth"]).abs()[covered]
    report["outputs"]["depth_where_alpha>0.5"] = {
        "mean_abs": depth_diff.mean().item(),
        "max_abs": depth_diff.max().item(),
    }
    report["gradients_relative_l2"] = {}
    for name in INPUTS:
        reference = grads["gsplat"][name]
        error = (grads["torch"][name] - reference).norm() / reference.norm().clamp(min=1e-12)
        report["gradients_relative_l2"][name] = error.item()
    report["forward_ms"] = {backend: forward_ms(scene, viewmats, Ks, args, backend) for backend in ("gsplat", "torch")}
    report["mean_alpha"] = outputs["gsplat"]["alpha"].mean().item()

    print(json.dumps(report, indent=2))
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
