"""Train FF3R on procedural rooms: generate the rooms, train (one GPU or several), time and plot the runs.

    python scripts/train_synthetic.py generate data/rooms --train 64 --eval 8 --views 96 --size 224
    python scripts/train_synthetic.py train data/rooms/train --name full --steps 3000
    python scripts/train_synthetic.py train data/rooms/train --name no-fusion --steps 600 --no-fusion
    python scripts/train_synthetic.py plot runs/*/ff3r-train/*/losses.jsonl --out docs/training_curves.png
    python scripts/train_synthetic.py speed runs/*/ff3r-train/*/losses.jsonl --from-step 40

``train`` is ``ns-train ff3r-train`` with the settings of docs/TRAINING.md filled in (it builds the same
TrainerConfig and hands it to nerfstudio's ``ns-train`` entry function, multi-GPU launch included); every
flag maps to one ns-train option, listed in ``--help``. Training rooms use seeds 0..N-1, evaluation rooms
seeds 100000.. (never trained on). Rooms are video-like captures by default (``--trajectory video``: a few
centimetres and degrees a frame), so a training sample spans ``--min-gap``..``--max-gap`` frames (16-64: about
0.3-1 m and 15-50 degrees from its first to its last view; docs/TRAINING.md, "Camera trajectories").
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

EVAL_SEED_OFFSET = 100_000
"""Seeds of the evaluation rooms start here, far from the training rooms' 0..N-1."""


def generate(args: argparse.Namespace) -> None:
    from ff3r_ns.data.synthetic import RoomConfig, write_scenes

    if len(args.fov) > 2:
        raise SystemExit(f"--fov takes one value or a low and a high one, got {args.fov}")
    fov = (args.fov[0], args.fov[-1])

    def room(split: str, i: int, seed: int):
        config = RoomConfig(seed=seed, num_views=args.views, image_size=args.size, trajectory=args.trajectory, fov_deg=fov)
        return args.root / split / f"room_{i:04d}", config

    jobs = [room("train", i, i) for i in range(args.train)] + [room("eval", i, EVAL_SEED_OFFSET + i) for i in range(args.eval)]
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        if done % 16 == 0 or done == total:
            print(f"{done}/{total} rooms ({time.perf_counter() - start:.0f} s)", flush=True)

    write_scenes(jobs, args.workers, progress)


def build_config(args: argparse.Namespace):
    """The ff3r-train TrainerConfig for these arguments (ns-train option in each comment)."""
    from ff3r_ns.ns.optimization import default_optimizers
    from ff3r_ns.ns.train import ff3r_train_method
    from ff3r_ns.training.losses import LossWeights

    config = copy.deepcopy(ff3r_train_method.config)
    config.data = args.data  # --data
    config.output_dir, config.experiment_name, config.timestamp = args.output, "synthetic", args.name
    config.max_num_iterations = args.steps  # --max-num-iterations
    config.steps_per_save = args.steps_per_save  # --steps-per-save
    config.machine.num_devices = args.num_devices  # --machine.num-devices
    config.machine.device_type = args.device  # --machine.device-type
    config.machine.seed = args.seed  # --machine.seed
    config.logging.steps_per_log = 25  # --logging.steps-per-log
    # The rooms carry ground-truth poses and depth and a stand-in 2D teacher's features: no VGGT or LSeg weights.
    config.pipeline.geometry_teacher = "dataset"  # --pipeline.geometry-teacher dataset
    config.pipeline.semantic_teacher = "dataset"  # --pipeline.semantic-teacher dataset
    datamanager = config.pipeline.datamanager
    datamanager.scenes_per_batch = args.scenes_per_batch  # --pipeline.datamanager.scenes-per-batch
    datamanager.sampling.image_size = args.size  # --pipeline.datamanager.sampling.image-size
    datamanager.sampling.min_views = args.min_views  # --pipeline.datamanager.sampling.min-views
    datamanager.sampling.max_views = args.max_views  # --pipeline.datamanager.sampling.max-views
    datamanager.sampling.min_gap = args.min_gap  # --pipeline.datamanager.sampling.min-gap
    datamanager.sampling.max_gap = args.max_gap  # --pipeline.datamanager.sampling.max-gap
    datamanager.num_workers, datamanager.prefetch = args.workers, 4  # --pipeline.datamanager.num-workers/prefetch
    datamanager.cache_views = True  # --pipeline.datamanager.cache-views True
    datamanager.feature_downsample = args.feature_downsample  # --pipeline.datamanager.feature-downsample
    model = config.pipeline.model
    model.preset = args.preset  # --pipeline.model.preset
    model.init_checkpoint = args.init  # --pipeline.model.init-checkpoint
    model.fusion = not args.no_fusion  # --pipeline.model.fusion False
    model.voxel_lambda = args.voxel_lambda  # --pipeline.model.voxel-lambda
    model.loss = LossWeights(lpips=args.lpips, warp=args.warp, points=args.points)  # --pipeline.model.loss.lpips / .warp / .points
    # --optimizers.{heads,backbone}.optimizer.lr and .scheduler.{warmup-steps,max-steps}
    config.optimizers = default_optimizers(args.steps, args.warmup, args.lr, args.backbone_lr_scale)
    return config


def train(args: argparse.Namespace) -> None:
    from nerfstudio.scripts.train import main as ns_train

    ns_train(build_config(args))


def speed(args: argparse.Namespace) -> None:
    """Seconds per step of runs from their losses.jsonl (wall-clock stamps), from a step on (a warm view cache)."""
    for path in args.logs:
        records = [json.loads(line) for line in Path(path).read_text().splitlines()]
        late = [r for r in records if args.from_step <= r["step"] <= (args.to_step if args.to_step is not None else r["step"])]
        if len(late) < 2:
            raise SystemExit(f"{path}: fewer than 2 logged steps from step {args.from_step} on; lower --from-step")
        per_step = (late[-1]["time"] - late[0]["time"]) / (late[-1]["step"] - late[0]["step"])
        tail = records[-args.last :]
        print(
            f"{path}: {per_step:.4f} s/step over steps {late[0]['step']}-{late[-1]['step']}, "
            f"mean data wait {sum(r['data_seconds'] for r in late) / len(late):.4f} s, "
            f"last {len(tail)} steps: loss {sum(r['loss_total'] for r in tail) / len(tail):.3f}, "
            f"context PSNR {sum(r['psnr'] for r in tail) / len(tail):.2f}"
        )


def plot(args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    terms = ("loss_total", "loss_rgb", "loss_feat", "loss_warp", "loss_depth", "loss_pose", "psnr")
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    labels = args.labels or [Path(p).parent.name for p in args.logs]
    for index, (path, label) in enumerate(zip(args.logs, labels)):
        records = [json.loads(line) for line in Path(path).read_text().splitlines()]
        steps = np.array([r["step"] for r in records])
        for ax, term in zip(axes.flat, terms):
            if term not in records[0]:
                continue
            values = np.array([r[term] for r in records], dtype=float)
            window = max(1, min(args.smooth, len(values)))
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, label=label, color=f"C{index}")  # one colour per run in every panel
            ax.set_title(term.replace("loss_", "L_") + (" (dB, context renders)" if term == "psnr" else ""))
            ax.set_xlabel("step")
    axes.flat[-1].axis("off")
    axes.flat[-1].legend(*axes.flat[0].get_legend_handles_labels(), loc="center")  # in the empty panel
    fig.suptitle(f"ff3r-train on synthetic rooms (moving average over {args.smooth} steps; unweighted terms)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    gen = commands.add_parser("generate", help="write train/ and eval/ rooms (parallel processes)")
    gen.add_argument("root", type=Path)
    gen.add_argument("--train", type=int, default=64, help="training rooms (seeds 0..N-1)")
    gen.add_argument("--eval", type=int, default=8, help=f"evaluation rooms (seeds {EVAL_SEED_OFFSET}..)")
    gen.add_argument("--views", type=int, default=96, help="views (frames) per room")
    gen.add_argument("--trajectory", choices=("video", "loop"), default="video",
                     help="video: handheld captures (default); loop: the closed loop of the shipped model's rooms")  # fmt: skip
    gen.add_argument("--fov", type=float, nargs="+", default=[50.0, 90.0], metavar="DEG",
                     help="field of view in degrees: one value (the shipped model's rooms: 70) or a range drawn per room")  # fmt: skip
    gen.add_argument("--size", type=int, default=224, help="image size (even)")
    gen.add_argument("--workers", type=int, default=8, help="processes")

    run = commands.add_parser("train", help="ns-train ff3r-train with these settings")
    run.add_argument("data", type=Path, help="folder of training rooms")
    run.add_argument("--name", default="full", help="run name (the timestamp folder)")
    run.add_argument("--output", type=Path, default=Path("runs"))
    run.add_argument("--preset", default="small", choices=("tiny", "small", "large"))
    run.add_argument("--init", type=Path, default=None, help="start from this FF3R checkpoint (e.g. the shipped one)")
    run.add_argument("--steps", type=int, default=3000)
    run.add_argument("--warmup", type=int, default=200)
    run.add_argument("--lr", type=float, default=2e-4, help="peak learning rate of the new heads")
    run.add_argument("--backbone-lr-scale", type=float, default=1.0,
                     help="backbone lr / heads lr (the paper's 0.1 is for a pretrained backbone; here all is random)")
    run.add_argument("--scenes-per-batch", type=int, default=4)
    run.add_argument("--size", type=int, default=224)
    run.add_argument("--min-views", type=int, default=4)
    run.add_argument("--max-views", type=int, default=10)
    run.add_argument("--min-gap", type=int, default=16, help="fewest frames from a sample's first to its last view")
    run.add_argument("--max-gap", type=int, default=64, help="most frames from a sample's first to its last view")
    run.add_argument("--no-fusion", action="store_true", help="ablation: no token-wise fusion")
    run.add_argument("--warp", type=float, default=0.1, help="L_warp weight (0: ablation without G->S warping)")
    run.add_argument("--voxel-lambda", type=float, default=None, help="Eq. 7 lambda (0: ablation without S->G)")
    run.add_argument("--lpips", type=float, default=0.0, help="LPIPS weight (needs the VGG backbone file; 0 here)")
    run.add_argument("--points", type=float, default=0.0,
                     help="L_pts weight (dense point maps in the first view's frame; not in the paper, 0 = off)")
    run.add_argument("--num-devices", type=int, default=1)
    run.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    run.add_argument("--feature-downsample", type=int, default=2, help="teacher features at 1/(2 f) of the view size")
    run.add_argument("--workers", type=int, default=6, help="view-loading threads per process")
    run.add_argument("--steps-per-save", type=int, default=1000)
    run.add_argument("--seed", type=int, default=42)

    fig = commands.add_parser("plot", help="loss curves of runs (their losses.jsonl)")
    fig.add_argument("logs", nargs="+", type=Path)
    fig.add_argument("--labels", nargs="*")
    fig.add_argument("--smooth", type=int, default=25)
    fig.add_argument("--out", type=Path, default=Path("docs/training_curves.png"))

    timing = commands.add_parser("speed", help="seconds per step of runs (their losses.jsonl)")
    timing.add_argument("logs", nargs="+", type=Path)
    timing.add_argument("--from-step", type=int, default=40, help="first step timed (after the view cache warms)")
    timing.add_argument("--to-step", type=int, default=None, help="last step timed (default: the run's last)")
    timing.add_argument("--last", type=int, default=30, help="steps averaged for the final loss and PSNR")

    args = parser.parse_args(argv)
    {"generate": generate, "train": train, "speed": speed, "plot": plot}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
