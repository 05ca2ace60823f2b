"""Does the camera head learn relative poses? Geometry-only training arms at equal steps, against the constant.

    python scripts/pose_study.py OUT_DIR --arms pose pose+points --steps 600 [--preset small] [--size 112]

A lean loop for comparing pose levers quickly (CPU or GPU): no rendering, no semantics, only the geometry terms
of ``ns-train ff3r-train``'s objective on synthetic video rooms, with the same functions (the network, the
dataset geometry teacher, ``L_p``, ``L_d``, ``L_pts``), so a lever that works here can be switched on there
(``--pipeline.model.loss.points``). Each arm trains the same initial network on the same samples (one sample
stream per seed) and is scored every ``--eval-every`` steps on held-out rooms:

- ``L_p`` of the final pose iteration on the held-out samples, beside the **constant baseline**: ``L_p`` of
  predicting, for every non-reference view, the mean target encoding of the training samples (the first view's
  target is the identity, which the head gets right for free);
- the mean rotation error of the non-reference views' predicted world-to-cameras (geodesic angle, degrees; the
  world is the first view's camera, so this is the relative rotation to view 0), beside the same constant's.

and the **cross-view probe**: how far the predicted encodings of views 1.. move when only view 0 (the reference)
is swapped for a view of another room, as a share of how far view 1's moves when view 1 itself is swapped. A head
that compares views moves every relative pose with the reference (a share near 1 or above); a head that reads
each image alone barely moves them (near 0). ``--probe CHECKPOINT...`` runs only the probe (and the held-out
scores) on saved networks, e.g. the shipped ``ff3r_ns/weights/ff3r-small``.

Arms: ``pose`` (``L_p`` + ``L_d``, the paper's geometry terms at its weights 10 and 1), ``pose+points``
(plus ``--points-weight`` ``L_pts``), ``points`` (``L_d`` + ``L_pts`` alone). Writes ``OUT_DIR/pose_study.json``
(every evaluation of every arm, with the training samples' ``L_p`` since the last one: memorizing rooms shows
as a training ``L_p`` far under the held-out one) and ``OUT_DIR/pose_study.png`` (the curves against the constants).

Across device calls: ``--rooms-dir`` keeps the rooms where several runs find them (``--workers`` render them in
parallel, ``--render-only`` stops there), ``--time-limit`` ends an arm in time to be saved (``--save``), and
``--init`` starts from saved weights. ``scripts/pose_study_gpu.sh`` runs arms side by side on one GPU;
``--merge`` draws their JSONs into one figure.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ff3r_ns.data.readers import read_scene
from ff3r_ns.data.sampling import TrainViewSamplingConfig, sample_training_views
from ff3r_ns.data.synthetic import RoomConfig, write_scenes
from ff3r_ns.data.views import load_views
from ff3r_ns.eval.alignment import rotation_angle_deg
from ff3r_ns.network.cameras import decode_pose
from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.weights import WeightsUnavailable, load_ff3r_checkpoint, save_ff3r_checkpoint
from ff3r_ns.training.losses import depth_distillation_loss, point_map_loss, pose_distillation_loss
from ff3r_ns.training.teachers import DatasetGeometryTeacher, TrainBatch

ARMS = {"pose": (10.0, 0.0), "pose+points": (10.0, None), "points": (0.0, None)}
"""Weights (L_p, L_pts) of each arm; None: --points-weight. L_d has weight 1 in every arm."""
EVAL_SEED_OFFSET = 100_000
"""Held-out rooms' seeds start here (train_synthetic.py's convention)."""


def make_rooms(root: Path, seeds: range, frames: int, size: int, workers: int = 1) -> list[Path]:
    """The video rooms ``seeds`` under ``root``, rendering those not there yet (``workers`` processes)."""
    jobs = [(root / f"room_{seed:06d}", RoomConfig(seed=seed, num_views=frames, image_size=size, shadows=False))
            for seed in seeds]  # fmt: skip
    return write_scenes(jobs, workers)


class RoomViews:
    """One room's frames, loaded once at the training size (load_views reads each frame on its own, so a
    sample's views are the same tensors a direct load_views would give; tested)."""

    def __init__(self, scene, size: int):
        self.scene, self.size, self._views = scene, size, None

    def __len__(self) -> int:
        return len(self.scene)

    def take(self, frames: list[int]) -> dict[str, torch.Tensor]:
        if self._views is None:
            self._views = load_views(self.scene, range(len(self.scene)), self.size, depth=True)
        v, index = self._views, torch.as_tensor(frames)
        return {"images": v.images[index], "intrinsics": v.intrinsics[index],
                "camera_to_worlds": v.camera_to_worlds[index], "depth": v.depth[index]}  # fmt: skip


def draw_batch(rooms: list[RoomViews], rng: np.random.Generator, sampling: TrainViewSamplingConfig, batch: int,
               views: int) -> TrainBatch:  # fmt: skip
    """``batch`` rooms, ``views`` views each (a gap of sampling.min_gap..max_gap frames), with poses and depth."""
    loaded = []
    for i in rng.choice(len(rooms), size=batch, replace=len(rooms) < batch):
        frames = sample_training_views(len(rooms[i]), sampling, rng)[:views]
        loaded.append(rooms[i].take(frames))
    stack = lambda name: torch.stack([v[name] for v in loaded])  # noqa: E731
    return TrainBatch(images=stack("images"), intrinsics=stack("intrinsics"), camera_to_worlds=stack("camera_to_worlds"),
                      depth=stack("depth"))  # fmt: skip


def rotation_error_deg(pose_enc: torch.Tensor, target: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
    """Geodesic angle between the decoded world-to-camera rotations of the non-reference views, [n]."""
    R_pred, R_true = decode_pose(pose_enc[:, 1:], hw)[0][..., :3], decode_pose(target[:, 1:], hw)[0][..., :3]
    return rotation_angle_deg(R_pred.double().numpy(), R_true.double().numpy()).flatten()


def pose_scores(preds: list[torch.Tensor], targets: list, hw: tuple[int, int]) -> dict:
    """Held-out ``L_p`` (final iteration) and rotation error of views 1.., means over the samples."""
    return {
        "pose_loss": float(np.mean([float(pose_distillation_loss([p], t.pose_enc)) for p, t in zip(preds, targets)])),
        "rotation_deg": float(np.concatenate([rotation_error_deg(p, t.pose_enc, hw) for p, t in zip(preds, targets)]).mean()),
    }


def predict(network: FF3R, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The final pose encodings of one batch, [b, v, 9] on the CPU."""
    return network(images.to(device), voxelize=False).pose_enc_list[-1].float().cpu()


@torch.no_grad()
def network_scores(network: FF3R, batches: list[TrainBatch], targets: list, hw: tuple[int, int], device) -> dict:
    """:func:`pose_scores` of the network's predictions, and its :func:`cross_view_share` from the same ones."""
    preds = [predict(network, b.images, device) for b in batches]
    return {**pose_scores(preds, targets, hw), "cross_view_share": cross_view_share(network, batches, preds, device)}


def cross_view_share(network: FF3R, batches: list[TrainBatch], preds: list[torch.Tensor], device) -> float:
    """Mean change of views 1..'s encodings (``preds``: the unswapped ones) when view 0 is swapped for another
    room's, over the mean change of view 1's when view 1 is swapped (both over the held-out samples; the swap
    takes the next sample's view)."""
    moved_by_ref, moved_by_self = [], []
    for i, (batch, base) in enumerate(zip(batches, preds)):
        other = batches[(i + 1) % len(batches)].images
        swapped_ref, swapped_self = batch.images.clone(), batch.images.clone()
        swapped_ref[:, 0], swapped_self[:, 1] = other[:, 0], other[:, 1]
        ref, own = predict(network, swapped_ref, device), predict(network, swapped_self, device)
        moved_by_ref.append((ref[:, 1:] - base[:, 1:]).abs().mean())
        moved_by_self.append((own[:, 1] - base[:, 1]).abs().mean())
    return float(torch.stack(moved_by_ref).mean() / torch.stack(moved_by_self).mean().clamp_min(1e-12))


def args_record(args: argparse.Namespace) -> dict:
    """The command-line arguments as JSON values."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--arms", nargs="+", default=["pose", "pose+points"], choices=sorted(ARMS))
    parser.add_argument("--preset", default="small", choices=["tiny", "small"])
    parser.add_argument("--size", type=int, default=112, help="view side (a multiple of 14)")
    parser.add_argument("--rooms", type=int, default=48, help="training rooms (seeds 0..N-1)")
    parser.add_argument("--eval-rooms", type=int, default=8)
    parser.add_argument("--frames", type=int, default=64, help="frames per video room")
    parser.add_argument("--views", type=int, default=3, help="views per sample")
    parser.add_argument("--min-gap", type=int, default=8)
    parser.add_argument("--max-gap", type=int, default=24)
    parser.add_argument("--batch", type=int, default=4, help="rooms per step")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--points-weight", type=float, default=1.0)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--probe", nargs="+", type=Path, default=None, metavar="CHECKPOINT",
                        help="only score these saved networks (held-out L_p, rotation, cross-view share); no training")
    parser.add_argument("--rooms-dir", type=Path, default=None, help="where the rooms are kept (default OUT/rooms)")
    parser.add_argument("--workers", type=int, default=1, help="processes rendering rooms")
    parser.add_argument("--render-only", action="store_true", help="render the rooms, then stop")
    parser.add_argument("--init", type=Path, default=None, metavar="CHECKPOINT",
                        help="start every arm from these weights (a continuation) instead of a random initialization")
    parser.add_argument("--save", action="store_true", help="save each arm's final network to OUT/ARM")
    parser.add_argument("--time-limit", type=float, default=0.0,
                        help="seconds an arm may train; past it the arm evaluates, saves and ends (0: no limit)")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="JSON",
                        help="only draw these runs' pose_study.json files into OUT (a .png) and stop")
    args = parser.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    if args.size % 14:
        parser.error(f"--size must be a multiple of the 14-pixel patch, got {args.size}")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    def load(checkpoint: Path) -> FF3R:  # before rooms are rendered (minutes): a wrong path ends the run at once
        try:
            return load_ff3r_checkpoint(checkpoint, device)
        except WeightsUnavailable as error:
            parser.error(str(error))

    probed = {str(checkpoint): load(checkpoint).eval() for checkpoint in args.probe or []}
    initial = load(args.init) if args.init else None
    args.out.mkdir(parents=True, exist_ok=True)
    rooms = args.rooms_dir or args.out / "rooms"
    room_size = args.size + args.size // 7  # rendered a little larger, then center-cropped like training views
    eval_seeds = range(EVAL_SEED_OFFSET, EVAL_SEED_OFFSET + args.eval_rooms)
    train_paths = make_rooms(rooms, range(args.rooms), args.frames, room_size, args.workers)
    held_paths = make_rooms(rooms, eval_seeds, args.frames, room_size, args.workers)
    if args.render_only:
        print(f"{len(train_paths)} training and {len(held_paths)} held-out rooms in {rooms}")
        return
    train = [RoomViews(read_scene(p), args.size) for p in train_paths]
    held = [RoomViews(read_scene(p), args.size) for p in held_paths]
    sampling = TrainViewSamplingConfig(max_views=args.views, min_views=args.views, random_num_views=False,
                                       min_gap=args.min_gap, max_gap=args.max_gap, image_size=args.size)  # fmt: skip
    teacher, hw = DatasetGeometryTeacher(), (args.size, args.size)

    # The same held-out samples for every arm and evaluation; the constant from training samples.
    eval_rng = np.random.default_rng(EVAL_SEED_OFFSET + args.seed)
    eval_batches = [draw_batch(held, eval_rng, sampling, 1, args.views) for _ in range(args.eval_samples)]
    eval_targets = [teacher(b) for b in eval_batches]
    mean_rng = np.random.default_rng(args.seed + 1)
    train_encodings = torch.cat([teacher(draw_batch(train, mean_rng, sampling, 1, args.views)).pose_enc[0, 1:]
                                 for _ in range(64)])  # fmt: skip
    constant = train_encodings.mean(0)

    constant_preds = [torch.cat([t.pose_enc[:, :1], constant.expand_as(t.pose_enc[:, 1:])], dim=1) for t in eval_targets]
    baseline = pose_scores(constant_preds, eval_targets, hw)
    if args.probe:
        probe(args, probed, baseline, eval_batches, eval_targets, hw, device)
        return
    results = {"args": args_record(args), "constant": baseline, "device": str(device), "arms": {}}
    print(f"constant baseline: L_p {baseline['pose_loss']:.4f}, rotation {baseline['rotation_deg']:.2f} deg", flush=True)

    for arm in args.arms:
        pose_w, points_w = ARMS[arm]
        points_w = args.points_weight if points_w is None else points_w
        torch.manual_seed(args.seed)
        network = (copy.deepcopy(initial) if initial is not None else FF3R.from_preset(args.preset)).to(device).train()
        optimizer = torch.optim.AdamW(network.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
        rng = np.random.default_rng(args.seed)
        history, start, train_losses = [], time.perf_counter(), []

        def evaluate(step: int) -> dict:
            network.eval()
            row = {"step": step, **network_scores(network, eval_batches, eval_targets, hw, device)}
            network.train()
            row["seconds"] = round(time.perf_counter() - start, 1)
            if train_losses:  # the training samples' L_p since the last evaluation: over- or under-fitting?
                row["train_pose_loss"] = float(torch.stack(train_losses).mean())
                train_losses.clear()
            history.append(row)
            return row

        columns = [TextColumn(f"[bold]{arm}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn()]  # fmt: skip
        with Progress(*columns) as progress:
            task = progress.add_task(arm, total=args.steps, info="")
            row = evaluate(0)
            for step in range(1, args.steps + 1):
                batch = draw_batch(train, rng, sampling, args.batch, args.views)
                target = teacher(batch)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):  # as ff3r-train
                    out = network(batch.images.to(device), voxelize=False)
                pose_list = [p.float() for p in out.pose_enc_list]
                depth_t, conf, pose_t = (x.to(device) for x in (target.depth, target.depth_conf, target.pose_enc))
                loss = depth_distillation_loss(out.depth, depth_t, conf, target.top_fraction)
                if pose_w > 0:
                    loss = loss + pose_w * pose_distillation_loss(pose_list, pose_t)
                if points_w > 0:
                    points = point_map_loss(out.depth, pose_list[-1], depth_t, pose_t, conf, target.top_fraction)
                    loss = loss + points_w * points
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(network.parameters(), 0.5)
                optimizer.step()
                with torch.no_grad():  # kept on the device: reading it every step would wait for the GPU
                    train_losses.append(pose_distillation_loss(pose_list[-1:], pose_t))
                out_of_time = args.time_limit > 0 and time.perf_counter() - start > args.time_limit
                if step % args.eval_every == 0 or step == args.steps or out_of_time:
                    row = evaluate(step)
                info = f"eval L_p {row['pose_loss']:.4f} (constant {baseline['pose_loss']:.4f}), rot {row['rotation_deg']:.1f} deg"
                progress.update(task, advance=1, info=info)
                if out_of_time:
                    print(f"{arm}: time limit of {args.time_limit:.0f} s reached at step {step}", flush=True)
                    break
        results["arms"][arm] = history
        if args.save:
            print(f"{arm}: saved {save_ff3r_checkpoint(network, args.out / arm.replace('+', '-'))}", flush=True)
        print(f"{arm}: " + ", ".join(f"step {r['step']}: L_p {r['pose_loss']:.4f} rot {r['rotation_deg']:.2f}" for r in history),
              flush=True)  # fmt: skip
        (args.out / "pose_study.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "pose_study.png")
    print(f"wrote {args.out / 'pose_study.json'} and {args.out / 'pose_study.png'}")


def probe(args, probed: dict[str, FF3R], baseline: dict, batches: list[TrainBatch], targets, hw: tuple[int, int],
          device: torch.device) -> None:
    """Held-out scores and the cross-view share of saved networks, beside a random initialization of each's size."""
    rows = {}
    for checkpoint, trained in probed.items():
        torch.manual_seed(args.seed)
        untrained = FF3R(trained.config).to(device).eval()
        for name, network in ((checkpoint, trained), (f"{checkpoint} (random init)", untrained)):
            rows[name] = network_scores(network, batches, targets, hw, device)
            print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in rows[name].items()), flush=True)
    out = {"args": args_record(args), "constant": baseline, "probes": rows}
    (args.out / "probe.json").write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {args.out / 'probe.json'}")


def plot(results: dict, path: Path) -> None:
    """Held-out L_p (training L_p dashed, where logged), rotation error and cross-view share of each arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    panels = (("pose_loss", "L_p: held out (solid), training samples (dashed)"),
              ("rotation_deg", "held-out rotation error (deg)"), ("cross_view_share", "cross-view share"))  # fmt: skip
    for ax, (key, label) in zip(axes, panels):
        for arm, history in results["arms"].items():
            line = ax.plot([r["step"] for r in history], [r[key] for r in history], marker="o", ms=3, label=arm)[0]
            trained = [r for r in history if "train_pose_loss" in r]
            if key == "pose_loss" and trained:
                ax.plot([r["step"] for r in trained], [r["train_pose_loss"] for r in trained], ls="--", color=line.get_color())
        if key in results["constant"]:
            ax.axhline(results["constant"][key], color="k", ls="--", lw=1, label="constant (mean training pose)")
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=9)
        if key == "pose_loss":
            ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    args = results["args"]
    fig.suptitle(f"{args['preset']} preset, {args['size']} px, {args['rooms']} training rooms, {args['views']} views "
                 f"{args['min_gap']}-{args['max_gap']} frames apart, {args['batch']} rooms a step ({results['device']})",
                 fontsize=9)  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge(paths: list[Path], out: Path) -> None:
    """One figure of the arms of several runs with the same held-out samples (e.g. pose_study_gpu.sh's)."""
    runs = [json.loads(p.read_text()) for p in paths]
    constants = {json.dumps(r["constant"], sort_keys=True) for r in runs}
    if len(constants) > 1:
        raise SystemExit(f"{', '.join(map(str, paths))} were scored against different constants: not one study")
    arms = {}
    for path, run in zip(paths, runs):
        for arm, history in run["arms"].items():
            weight = f" (L_pts {run['args']['points_weight']:g})" if "points" in arm else ""
            arms[f"{arm}{weight}"] = history
    plot({**runs[0], "arms": arms}, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
