"""Training-step benchmark: seconds and peak GPU memory of ff3r-train steps versus views, with and without
activation checkpointing, in one run.

    python scripts/benchmark_train.py --preset large --size 448 --views 2 8 16 24 32 --plain-views 8 16

Each step is what ``ns-train ff3r-train`` runs at the paper's setting (Appendix A), less the data loading: one
scene of random images, the frozen VGGT teacher's targets, the student's forward pass (bf16 autocast), rendering
of every view, Eq. 13 with LPIPS (VGG) and L_warp, backward, global clipping and AdamW. Random weights: no
checkpoint is needed to time a network (VGGT-1B and LSeg weights change no shape). The semantic encoder is frozen,
as with LSeg's weights. One model serves every row (the switch is flipped between rows), so the optimizer state
is allocated in every row's peak, as in a real run. A row is the median of ``--steps`` timed steps after
``--warmup`` steps, and the peak of ``torch.cuda.max_memory_allocated`` over them; a row that runs out of memory
is recorded with ``"oom": true``. ``--ddp-views`` rows come last, with the model wrapped in DDP as ``ns-train
--machine.num-devices N`` wraps it, in a one-process group: the memory of one rank of a multi-GPU run. Writes
``--out`` (``{"gpu", "static_gib", "rows": [{"views", "image_size", "checkpointing", "step_seconds",
"peak_gib"}]}``) and a plot beside it. ``--static-only`` prints, on any machine,
what a step holds before any activation (weights, gradients, AdamW moments, the teacher), counted from the
parameter shapes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import gpu_name  # noqa: E402


def build(preset_name: str, lpips_weight: float, device: torch.device):
    """The training model, its teacher and its optimizers at random weights (LPIPS's VGG too: no download)."""
    import lpips
    from nerfstudio.data.scene_box import SceneBox

    from ff3r_ns.network.config import preset
    from ff3r_ns.ns.optimization import GlobalClipOptimizers, default_optimizers
    from ff3r_ns.ns.train_model import FF3RTrainModelConfig
    from ff3r_ns.training.losses import LossWeights
    from ff3r_ns.training.teachers import VGGTTeacher

    torch.manual_seed(0)
    config = FF3RTrainModelConfig(preset=preset_name, train_semantic_encoder=False, loss=LossWeights(lpips=0.0))
    with device:  # 2.7 B parameters initialized where they live: seconds instead of a minute on the host
        model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1, device=device)
        if lpips_weight > 0:
            # ImageNet weights can't be downloaded here; random VGG features cost the same time and memory.
            model._unregistered.lpips = lpips.LPIPS(net="vgg", pnet_rand=True, verbose=False)
            model.config.loss = LossWeights(lpips=lpips_weight)
        teacher = VGGTTeacher(preset("large")).requires_grad_(False).eval()
    model.to(device).train()
    teacher.to(device)
    optimizers = GlobalClipOptimizers(default_optimizers(), model.get_param_groups(), max_norm=0.5)
    return model, teacher, optimizers


def static_memory(preset_name: str) -> dict:
    """GiB a step holds before any activation, from the parameter shapes (meta tensors, no memory): float32
    weights, gradients and AdamW's two moments of the trainable part (the semantic encoder is frozen), and the
    frozen VGGT teacher's weights."""
    from ff3r_ns.network.config import preset
    from ff3r_ns.network.ff3r import FF3R
    from ff3r_ns.training.teachers import VGGTTeacher

    with torch.device("meta"):
        network, teacher = FF3R(preset(preset_name)), VGGTTeacher(preset("large"))
    total = sum(p.numel() for p in network.parameters())
    trainable = total - sum(p.numel() for p in network.semantic_encoder.parameters())
    parts = {
        "weights": 4 * total, "gradients": 4 * trainable, "adamw_moments": 8 * trainable,
        "teacher": 4 * sum(p.numel() for p in teacher.parameters()),
    }  # fmt: skip
    gib = {name: round(size / 2**30, 2) for name, size in parts.items()}
    gib["total"] = round(sum(parts.values()) / 2**30, 2)
    return gib


def random_views(views: int, size: int, device: torch.device):
    from ff3r_ns.training.teachers import TrainBatch

    return TrainBatch(images=torch.rand(1, views, 3, size, size, device=device), seeds=(0,))


def wrap_ddp(model):
    """``model`` in DDP as nerfstudio wraps it under ``--machine.num-devices N`` (find_unused_parameters), in a
    one-process NCCL group: each rank of an N-GPU run holds the same buckets and runs the same step, less the
    all-reduce's wait for the other ranks."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29517")
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0))
    return DistributedDataParallel(model, device_ids=[0], find_unused_parameters=True)


def step(model, teacher, optimizers, views, forward=None) -> float:
    """One training step; its seconds, synchronized."""
    from ff3r_ns.ns.train_model import training_step

    torch.cuda.synchronize()
    start = time.perf_counter()
    _, loss_dict, _ = training_step(model, teacher, "lseg", views, forward)
    loss_dict["total"].backward()
    optimizers.optimizer_scaler_step_all(_NO_SCALER)
    optimizers.scheduler_step_all(0)
    optimizers.zero_grad_all()
    torch.cuda.synchronize()
    return time.perf_counter() - start


_NO_SCALER = torch.amp.GradScaler("cuda", enabled=False)
"""What nerfstudio's trainer passes with mixed_precision off (ff3r-train's own bf16 autocast needs no scaler)."""


def run_row(
    model, teacher, optimizers, views: int, size: int, checkpointing: bool, warmup: int, steps: int, ddp=None
) -> dict:
    model.set_activation_checkpointing(checkpointing)
    row = {"views": views, "image_size": size, "checkpointing": checkpointing, **({"ddp": True} if ddp else {})}
    batch = random_views(views, size, torch.device("cuda"))
    try:
        for _ in range(warmup):
            step(model, teacher, optimizers, batch, ddp)
        gc.collect()
        torch.cuda.reset_peak_memory_stats()
        times = [step(model, teacher, optimizers, batch, ddp) for _ in range(steps)]
        row.update(step_seconds=round(statistics.median(times), 4), peak_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))
    except torch.cuda.OutOfMemoryError:
        row.update(step_seconds=None, peak_gib=None, oom=True)
    except Exception as error:  # a broken row must not cost the other rows of a GPU call
        traceback.print_exc()
        row.update(step_seconds=None, peak_gib=None, error=repr(error)[:500])
    optimizers.zero_grad_all()
    del batch
    gc.collect()
    torch.cuda.empty_cache()
    return row


def gradient_agreement(model, teacher, views: int, size: int) -> dict:
    """Loss and gradient of one batch with checkpointing against without, next to two runs without: on the GPU
    neither is bitwise (bf16, atomics in the rasterizer and voxelization), so the plain pair is the noise floor."""
    from ff3r_ns.ns.train_model import training_step

    torch.manual_seed(1)
    batch = random_views(views, size, torch.device("cuda"))
    runs = []
    for enabled in (False, False, True):
        model.set_activation_checkpointing(enabled)
        model.zero_grad(set_to_none=True)
        _, loss_dict, _ = training_step(model, teacher, "lseg", batch)
        loss_dict["total"].backward()
        grad = torch.cat([p.grad.flatten().float() for p in model.parameters() if p.grad is not None])
        runs.append((loss_dict["total"].item(), grad))
        model.zero_grad(set_to_none=True)
    (loss_a, grad_a), (loss_b, grad_b), (loss_c, grad_c) = runs
    norm = float(grad_a.norm())

    def relative(x: float, y: float) -> float:
        return abs(x - y) / abs(y)

    return {
        "views": views, "image_size": size, "loss": loss_a,
        "plain_vs_plain": {"loss": relative(loss_b, loss_a), "gradient": float((grad_b - grad_a).norm()) / norm},
        "checkpointed_vs_plain": {"loss": relative(loss_c, loss_a), "gradient": float((grad_c - grad_a).norm()) / norm},
    }  # fmt: skip


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (mem, sec) = plt.subplots(1, 2, figsize=(10, 4))
    for enabled, ddp, style in ((True, False, "o-"), (False, False, "s--"), (True, True, "k^")):
        rows = [r for r in result["rows"] if (r["checkpointing"], r.get("ddp", False)) == (enabled, ddp)]
        rows = [r for r in rows if r.get("peak_gib") is not None]
        if not rows:
            continue
        label = ("checkpointing" if enabled else "no checkpointing") + (", DDP (one rank)" if ddp else "")
        mem.plot([r["views"] for r in rows], [r["peak_gib"] for r in rows], style, label=label)
        sec.plot([r["views"] for r in rows], [r["step_seconds"] for r in rows], style, label=label)
    for limit, name in ((40, "40 GiB: A100 40GB"), (80, "80 GiB: A100/H100 80GB")):
        mem.axhline(limit, color="gray", lw=0.8, ls=":")
        mem.text(1, limit, name, va="bottom", fontsize=8, color="gray")
    size = result["rows"][0]["image_size"]
    mem.set(xlabel="context views", ylabel="peak GPU memory (GiB)", title=f"{result['preset']} preset, {size} px")
    sec.set(xlabel="context views", ylabel="seconds per step", title=f"one training step on {result['gpu']}")
    for ax in (mem, sec):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="large", choices=["tiny", "small", "large"])
    parser.add_argument("--size", type=int, default=448, help="square image size (a multiple of 14)")
    parser.add_argument("--views", type=int, nargs="+", default=[2, 8, 16, 24, 32], help="view counts, checkpointed")
    parser.add_argument("--plain-views", type=int, nargs="*", default=[8, 16], help="view counts without checkpointing")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per row")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row (the median is reported)")
    parser.add_argument("--lpips", type=float, default=0.05, help="LPIPS weight of L_rgb (the paper's 0.05; 0: none)")
    parser.add_argument(
        "--ddp-views", type=int, nargs="*", default=[], help="view counts, checkpointed, run last under DDP (one rank)"
    )
    parser.add_argument("--agreement-views", type=int, default=4, help="views of the gradient check (0: none)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/train-large.json"))
    parser.add_argument("--static-only", action="store_true", help="print the static memory (any machine) and stop")
    args = parser.parse_args(argv)
    if args.static_only:
        print(json.dumps(static_memory(args.preset)))
        return 0
    if not torch.cuda.is_available():
        print("benchmark_train.py times GPU training steps: no CUDA device here", file=sys.stderr)
        return 2
    if args.size % 14:
        parser.error(f"--size must be a multiple of 14, got {args.size}")
    device = torch.device("cuda")
    torch.backends.cuda.matmul.allow_tf32 = True
    model, teacher, optimizers = build(args.preset, args.lpips, device)
    result = {"gpu": gpu_name(), "preset": args.preset, "static_gib": static_memory(args.preset), "rows": []}
    # Each checkpointed row is followed by the plain row of the same views, so that a call cut short still has
    # the comparisons it reached; the file lists the rows sorted.
    plan = [(v, enabled) for v in args.views for enabled in (True, False) if enabled or v in args.plain_views]
    plan += [(v, False) for v in args.plain_views if v not in args.views]
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def keep(row: dict, tag: str) -> None:
        result["rows"] = sorted(
            [*result["rows"], row], key=lambda r: (r.get("ddp", False), not r["checkpointing"], r["views"])
        )
        print(f"[{tag}] {json.dumps(row)}", flush=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")  # after every row: a killed run keeps its rows

    for i, (views, enabled) in enumerate(plan, start=1):
        row = run_row(model, teacher, optimizers, views, args.size, enabled, args.warmup, args.steps)
        keep(row, f"{i}/{len(plan)}")
    if args.agreement_views:
        # before DDP wraps the model: the comparison is of checkpointing alone
        result["agreement"] = gradient_agreement(model, teacher, args.agreement_views, args.size)
        print(f"agreement: {json.dumps(result['agreement'])}", flush=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    if args.ddp_views:
        try:
            ddp = wrap_ddp(model)
        except Exception:  # a DDP group that can't start must not cost the rows above their plot
            traceback.print_exc()
        else:
            for views in args.ddp_views:
                keep(run_row(model, teacher, optimizers, views, args.size, True, args.warmup, args.steps, ddp), "ddp")
    plot(result, args.out.with_suffix(".png"))
    print(f"wrote {args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
