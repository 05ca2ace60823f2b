"""Figure of one synthetic room: RGB, depth, labels, a PCA of the stand-in teacher features, and a top view
of the room with the camera path; or the camera motion statistics of many rooms.

    python scripts/show_synthetic.py docs/synthetic_room.png --seed 9
    python scripts/show_synthetic.py --stats 20        # motion between frames, video and loop rooms

Writes the scene to a temporary folder with ``write_scene`` and reads the files back, so the figure
shows exactly what a reader of the scene gets. The PCA (3 components -> RGB) is fitted jointly on the
shown views, so the same colour means the same feature in every view.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Patch, Polygon, Rectangle  # noqa: E402
from PIL import Image  # noqa: E402

from ff3r_ns.data.synthetic import (  # noqa: E402
    CLASS_NAMES,
    RoomConfig,
    generate_room,
    load_teacher_features,
    make_cameras,
    write_scene,
)
from ff3r_ns.data.synthetic.trajectory import step_motion  # noqa: E402

LABEL_COLORS = np.array(
    [
        (0, 0, 0),  # nothing
        (174, 199, 232),  # wall
        (152, 223, 138),  # floor
        (255, 250, 200),  # ceiling
        (214, 39, 40),  # chair
        (255, 127, 14),  # table
        (148, 103, 189),  # sofa
        (31, 119, 180),  # bed
        (23, 190, 207),  # other
    ],
    dtype=np.uint8,
)


def pca_rgb(features: torch.Tensor, samples: int = 20_000) -> np.ndarray:
    """``[..., C]`` features to ``[..., 3]`` colours in [0, 1] by a PCA fitted on a fixed pixel sample."""
    flat = features.reshape(-1, features.shape[-1]).float()
    pick = torch.randperm(flat.shape[0], generator=torch.Generator().manual_seed(0))[:samples]
    mean = flat[pick].mean(0)
    _, _, v = torch.linalg.svd(flat[pick] - mean, full_matrices=False)
    proj = (flat - mean) @ v[:3].T
    lo, hi = torch.quantile(proj[pick], 0.01, dim=0), torch.quantile(proj[pick], 0.99, dim=0)
    return ((proj - lo) / (hi - lo)).clamp(0, 1).reshape(*features.shape[:-1], 3).numpy()


def motion_stats(rooms: int, gaps: tuple[int, ...] = (1, 4, 8, 16)) -> None:
    """Print the mean translation and rotation between views ``k`` frames apart over ``rooms`` rooms
    (cameras only), for 96-frame video rooms and the loop at 24 and 64 views (wrapping around)."""
    print("| trajectory | " + " | ".join(f"{k} frame{'s' if k > 1 else ''} apart" for k in gaps) + " |")
    print("|---" * (len(gaps) + 1) + "|")
    for name, trajectory, views in (("video, 96 frames", "video", 96), ("loop, 24 views", "loop", 24),
                                    ("loop, 64 views", "loop", 64)):  # fmt: skip
        rows = []
        for seed in range(rooms):
            config = RoomConfig(seed=seed, num_views=views, image_size=32, trajectory=trajectory)
            c2w = make_cameras(generate_room(config), config).camera_to_worlds
            if trajectory == "loop":
                c2w = np.concatenate([c2w, c2w[: max(gaps)]])  # closed: every view has a k-th successor
            rows.append([[m.mean() for m in step_motion(c2w, k)] for k in gaps])
        mean = np.mean(rows, axis=0)
        print(f"| {name} | " + " | ".join(f"{100 * t:.1f} cm, {r:.1f}°" for t, r in mean) + " |")


def top_view(ax, config: RoomConfig, shown: list[int]) -> None:
    """The room from above: walls, the floor-standing furniture's boxes, the camera path and the shown views."""
    room = generate_room(config)
    c2w = make_cameras(room, config).camera_to_worlds
    W, D, _ = room.size
    ax.add_patch(Rectangle((-W / 2, -D / 2), W, D, fill=False, lw=2, color="k"))
    for cx, cy, hx, hy, yaw in room.footprints:
        c, s = np.cos(yaw), np.sin(yaw)
        corners = [(cx + c * x - s * y, cy + s * x + c * y) for x, y in ((-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy))]
        ax.add_patch(Polygon(corners, closed=True, color="0.75"))
    centres = c2w[:, :3, 3]
    ax.plot(centres[:, 0], centres[:, 1], "-", color="C0", lw=1.5)
    ax.plot(*centres[0, :2], "o", color="C0")
    for i in shown:
        forward = c2w[i, :2, 2] / np.linalg.norm(c2w[i, :2, 2])
        ax.annotate("", xy=centres[i, :2] + 0.5 * forward, xytext=centres[i, :2], arrowprops={"arrowstyle": "->", "color": "C3"})
        ax.text(*(centres[i, :2] - 0.25 * forward), str(i), color="C3", ha="center", va="center", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(-W / 2 - 0.2, W / 2 + 0.2)
    ax.set_ylim(-D / 2 - 0.2, D / 2 + 0.2)
    ax.set_title(f"top view: {config.trajectory} path ({config.num_views} frames), furniture boxes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("docs/synthetic_room.png"))
    parser.add_argument("--seed", type=int, default=9, help="room seed (9 shows all eight classes)")
    parser.add_argument("--num-views", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--show", type=int, nargs="+", default=[0, 9, 17, 25], help="indices of the views to show")
    parser.add_argument("--trajectory", choices=("video", "loop"), default="video")
    parser.add_argument("--fov", type=float, nargs="+", default=None, help="field of view in degrees, or a range")
    parser.add_argument("--stats", type=int, default=None, metavar="ROOMS",
                        help="print the camera motion statistics of this many rooms instead of drawing")  # fmt: skip
    args = parser.parse_args()
    if args.stats is not None:
        motion_stats(args.stats)
        return

    with tempfile.TemporaryDirectory() as tmp:
        fov = {} if args.fov is None else {"fov_deg": args.fov[0] if len(args.fov) == 1 else tuple(args.fov)}
        config = RoomConfig(
            seed=args.seed, num_views=args.num_views, image_size=args.image_size, trajectory=args.trajectory, **fov
        )
        root = write_scene(Path(tmp) / "scene", config).parent
        meta = json.loads((root / "transforms.json").read_text())
        frames = [meta["frames"][i] for i in args.show]
        rgb = [np.array(Image.open(root / f["file_path"])) for f in frames]
        depth = [np.array(Image.open(root / f["depth_file_path"])) * meta["depth_unit_scale_factor"] for f in frames]
        labels = [np.array(Image.open(root / f["semantic_file_path"])) for f in frames]
        features = torch.stack([load_teacher_features(root / f["feature_file_path"]) for f in frames])
    colours = pca_rgb(features)
    d_max = max(float(d.max()) for d in depth)

    fig = plt.figure(figsize=(17, 3 * len(frames) + 0.9))
    grid = fig.add_gridspec(len(frames), 6)
    axes = np.array([[fig.add_subplot(grid[row, col]) for col in range(4)] for row in range(len(frames))])
    top_view(fig.add_subplot(grid[:, 4:]), config, args.show)
    titles = ("RGB", "depth (m)", "labels", "teacher features (joint PCA)")
    for row, i in enumerate(args.show):
        panels = (rgb[row], depth[row], LABEL_COLORS[labels[row]], colours[row])
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            shown = (
                ax.imshow(panel, cmap="turbo", vmin=0, vmax=d_max, interpolation="nearest")
                if col == 1
                else ax.imshow(panel, interpolation="nearest")
            )
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(titles[col])
            if col == 0:
                ax.set_ylabel(f"view {i}")
            if col == 1:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    handles = [Patch(color=LABEL_COLORS[k] / 255, label=f"{k} {name}") for k, name in enumerate(CLASS_NAMES, start=1)]
    fig.legend(handles=handles, loc="lower center", ncol=8, frameon=False, fontsize=10)
    fig.suptitle(
        f"Synthetic room, seed {args.seed} ({config.trajectory}): {len(frames)} of {args.num_views} views at "
        f"{args.image_size}x{args.image_size} (teacher at half resolution)"
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.98))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
