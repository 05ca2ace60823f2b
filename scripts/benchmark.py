"""End-to-end inference benchmark: images in, voxelized Gaussians out, versus the number of views.

    python scripts/benchmark.py --preset large --views 2 8 16 32 64 128 --size 448
    python scripts/benchmark.py --reference-vggt .ref     # VGGT-1B's own code, for the ratio

Random weights (no checkpoint is needed to time a network). On CUDA FF3R runs as ``ns-train ff3r`` does
(``--precision mixed``, ``network/precision.py``): the backbone's matmuls in bf16 under autocast, heads,
unprojection and voxelization in float32; ``--precision cast`` times the whole network cast to bf16 (the
previous inference, less exact). VGGT's reference runs as its own demo does: float32 weights under bf16
autocast, heads in float32. ``--kernels N`` adds a profile of the N costliest CUDA kernels.
Each row is the median of ``--repeats`` timed runs after one warm-up run, synchronized, and the peak
GPU memory of those runs. Writes docs/benchmarks/<gpu>-<preset>.json (rows: views, seconds, peak_gib,
gaussians_before, gaussians_after) and a plot beside it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch


def gpu_name() -> str:
    if not torch.cuda.is_available():
        return "cpu"
    name = torch.cuda.get_device_name(0)
    match = re.search(r"(H100|H200|A100|L40S?|RTX \w+|V100)", name)
    return (match.group(1) if match else name).replace(" ", "").lower()


def time_call(fn: Callable[[], dict], repeats: int, device: torch.device) -> tuple[float, float, dict]:
    """Median seconds and peak GiB of ``fn`` over ``repeats`` runs after one warm-up."""
    info = fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        info = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")
    return statistics.median(times), peak, info


STAGES = ("aggregator", "semantic_encoder", "fusion", "camera_head", "depth_head", "gaussian_head")


def stage_timer(model: torch.nn.Module) -> dict[str, list]:
    """CUDA events around each top-level stage; the rest of the time is unprojection and voxelization."""
    events: dict[str, list] = {}
    for name in STAGES:
        module = getattr(model, name, None)
        if module is None:
            continue

        def pre(_module, _args, name=name):
            events.setdefault(name, []).append([torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)])
            events[name][-1][0].record()

        def post(_module, _args, _out, name=name):
            events[name][-1][1].record()

        module.register_forward_pre_hook(pre)
        module.register_forward_hook(post)
    return events


def real_images(scene_path: str, views: int, size: int, repeat: bool = False) -> torch.Tensor:
    """``views`` evenly spaced views of a real scene, aspect kept, long side ``size`` (multiples of 14).

    With ``repeat``, a scene of fewer views gives all of them plus evenly spaced repeats: the network's work
    depends on the number of views, not on their content, so this times a longer capture of the same scene.
    """
    from ff3r_ns.data.readers import read_scene
    from ff3r_ns.data.sampling import evenly_spaced
    from ff3r_ns.data.views import fit_size, load_views

    scene = read_scene(scene_path)
    n = len(scene)
    if views > n and not repeat:
        raise ValueError(f"{scene_path} has {n} views, fewer than {views} (--repeat-views times it with repeats)")
    if views <= n:
        frames = evenly_spaced(n, views)
    else:
        frames = np.sort(np.concatenate([np.arange(n), evenly_spaced(n, views - n)]))
    hw = fit_size(*(int(v) for v in scene.image_sizes[0]), size)
    return load_views(scene, frames, hw).images[None]


def ff3r_runner(
    preset: str, size: int, device: torch.device, dtype: torch.dtype, profile: bool = False, precision: str = "mixed",
    compile_blocks: bool = False, weights: str | None = None, scene: str | None = None, repeat_views: bool = False,
):
    from ff3r_ns.network.ff3r import FF3R
    from ff3r_ns.network.precision import prepare_inference
    from ff3r_ns.network.weights import load_ff3r_checkpoint

    if weights:
        model = load_ff3r_checkpoint(weights, device)
    else:
        with device:  # random init directly on the GPU: seconds instead of minutes for 1.6 B parameters
            model = FF3R.from_preset(preset)
    if precision == "mixed":
        model = prepare_inference(model, device, dtype)
        input_dtype = torch.float32
    else:
        model, input_dtype = model.to(dtype=dtype).eval(), dtype
    events = stage_timer(model) if profile and device.type == "cuda" else None
    if compile_blocks:
        for blocks in (model.aggregator.frame_blocks, model.aggregator.global_blocks, model.aggregator.patch_embed.blocks):
            for block in blocks:
                block.compile()

    def run(views: int) -> Callable[[], dict]:
        if scene:
            images = real_images(scene, views, size, repeat_views).to(device=device, dtype=input_dtype)
        else:
            images = torch.rand(1, views, 3, size, size, device=device, dtype=input_dtype)

        @torch.inference_mode()
        def call() -> dict:
            out = model(images)
            info = {"gaussians_before": out.num_pixel_gaussians, "gaussians_after": len(out.gaussians)}
            if events is not None:
                torch.cuda.synchronize()
                info["stage_ms"] = {k: round(v[-1][0].elapsed_time(v[-1][1]), 1) for k, v in events.items()}
            return info

        return call

    return run


def vggt_reference_runner(path: str, size: int, device: torch.device, dtype: torch.dtype):
    """VGGT-1B's released code (aggregator + camera + depth heads), random weights, as its demo runs it."""
    sys.path.insert(0, str(Path(path).resolve()))
    from vggt.models.vggt import VGGT  # noqa: E402  (reference code, never shipped with this project)

    with device:  # random init directly on the GPU
        model = VGGT()
    model.point_head = model.track_head = None  # aggregator + camera + depth heads, as FF3R uses them
    model = model.to(device).eval()  # its normalization buffers are made with torch.FloatTensor, on the CPU

    def run(views: int) -> Callable[[], dict]:
        images = torch.rand(1, views, 3, size, size, device=device)

        @torch.inference_mode()
        def call() -> dict:
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                model(images)
            return {"gaussians_before": None, "gaussians_after": None}

        return call

    return run


def kernel_profile(call: Callable[[], dict], top: int) -> dict[str, float]:
    """Milliseconds of the ``top`` costliest CUDA kernels in one call, plus their total and the whole."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    totals: dict[str, float] = {}
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            totals[event.name] = totals.get(event.name, 0.0) + event.device_time_total / 1e3
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    table = {name[:120]: round(ms, 2) for name, ms in ranked[:top]}
    table["(all kernels)"] = round(sum(totals.values()), 2)
    return table


def view_size(meta: dict) -> str:
    """How big the views were: square random images, or a real scene's aspect at a long side."""
    size = meta["size"]
    return f"{size}x{size}" if meta.get("scene", "random images") == "random images" else f"views of long side {size}"


def plot(results: list[dict], title: str, path: Path) -> None:
    """Time and peak memory versus views, one line per result (a result = meta + rows)."""
    try:
        import matplotlib
    except ImportError:
        print(f"matplotlib is missing here: plot later with `python scripts/benchmark.py --plot {path.with_suffix('.json')}`")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    views = sorted({r["views"] for result in results for r in result["rows"]})
    for result in results:
        rows = [r for r in result["rows"] if r.get("seconds") is not None]
        label = result["meta"]["model"]
        a.plot([r["views"] for r in rows], [r["seconds"] for r in rows], "o-", label=label)
        b.plot([r["views"] for r in rows], [r["peak_gib"] for r in rows], "o-", label=label)
    a.set(xlabel="views", ylabel="seconds", title="end-to-end time", xscale="log", yscale="log")
    b.set(xlabel="views", ylabel="GiB", title="peak GPU memory", xscale="log")
    for ax in (a, b):
        ax.set_xticks(views, [str(v) for v in views])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())  # no log-scale minor labels over ours
        ax.grid(alpha=0.3)
    if len(results) > 1:
        a.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def attention_backends(name: str):
    """A context that puts one scaled_dot_product_attention backend first (``default``: torch's order).

    The others stay as fallbacks: the float32 heads' attention (camera head) has no cuDNN or flash kernel.
    """
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel

    order = [SDPBackend.CUDNN_ATTENTION, SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]
    choices = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}
    if name == "default":
        return contextlib.nullcontext()
    return sdpa_kernel([choices[name]] + [b for b in order if b != choices[name]], set_priority=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="large", choices=["tiny", "small", "large"])
    parser.add_argument("--weights", default=None, help="an FF3R checkpoint to time instead of random weights")
    parser.add_argument("--scene", default=None, help="time on evenly spaced views of this scene (aspect kept)")
    parser.add_argument(
        "--repeat-views", action="store_true", help="with --scene: more views than the scene has repeat some of them"
    )
    parser.add_argument("--label", default=None, help="name of the result files (default: the preset)")
    parser.add_argument("--reference-vggt", default=None, help="folder holding VGGT's `vggt` package: time it instead")
    parser.add_argument("--views", type=int, nargs="+", default=[2, 8, 16, 32, 64, 128])
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--out-dir", default="docs/benchmarks")
    parser.add_argument("--sdpa", default="default", choices=["default", "cudnn", "flash", "efficient"], help="attention backend")
    parser.add_argument(
        "--precision", default="mixed", choices=["mixed", "cast"],
        help="mixed: bf16 backbone matmuls, float32 heads (as ns-train ff3r runs); cast: every op in bf16",
    )
    parser.add_argument("--kernels", type=int, default=0, help="profile the N costliest CUDA kernels at each view count")
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer blocks")
    parser.add_argument("--profile", action="store_true", help="also time each stage (CUDA events)")
    parser.add_argument("--plot", nargs="+", default=None, help="only plot existing result JSONs (overlaid)")
    parser.add_argument("--plot-out", default=None, help="where --plot writes (default: beside the first JSON)")
    args = parser.parse_args()
    if args.plot:
        results = [json.loads(Path(p).read_text()) for p in args.plot]
        meta = results[0]["meta"]
        title = f"{' vs '.join(r['meta']['model'] for r in results)} on {meta['device']}, {view_size(meta)}"
        plot(results, title, Path(args.plot_out or Path(args.plot[0]).with_suffix(".png")))
        return

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = getattr(torch, args.dtype) if device.type == "cuda" else torch.float32
    torch.backends.cuda.matmul.allow_tf32 = True
    if args.reference_vggt:
        label, make = args.label or "vggt1b-reference", vggt_reference_runner(args.reference_vggt, args.size, device, dtype)
    else:
        label = args.label or (args.preset + ("-cast" if args.precision == "cast" else "") + ("-compiled" if args.compile else ""))
        make = ff3r_runner(
            args.preset, args.size, device, dtype, args.profile, args.precision, args.compile, args.weights, args.scene,
            args.repeat_views,
        )

    rows = []
    for views in args.views:
        try:
            with attention_backends(args.sdpa):
                call = make(views)
                seconds, peak, info = time_call(call, args.repeats, device)
                if args.kernels and device.type == "cuda":
                    info["kernels_ms"] = kernel_profile(call, args.kernels)
        except torch.OutOfMemoryError:
            print(f"{views:4d} views: out of memory", flush=True)
            rows.append({"views": views, "seconds": None, "peak_gib": None, "oom": True})
            torch.cuda.empty_cache()
            continue
        row = {"views": views, "seconds": round(seconds, 4), "peak_gib": round(peak, 3), **info}
        rows.append(row)
        print(json.dumps(row), flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{gpu_name()}-{label}" + ("" if args.sdpa == "default" else f"-{args.sdpa}")
    meta = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "size": args.size,
        "dtype": str(dtype).replace("torch.", ""),
        "repeats": args.repeats,
        "model": label,
        "precision": "vggt-autocast" if args.reference_vggt else args.precision,
        "sdpa": args.sdpa,
        "weights": args.weights or "random",
        "scene": args.scene or "random images",
        "repeated_views": bool(args.scene and args.repeat_views),
    }
    (out_dir / f"{stem}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    if any(r.get("seconds") is not None for r in rows):
        plot([{"meta": meta, "rows": rows}], f"{label} on {meta['device']}, {view_size(meta)}, {meta['dtype']}", out_dir / f"{stem}.png")
    print(f"wrote {out_dir / stem}.json")


if __name__ == "__main__":
    main()
