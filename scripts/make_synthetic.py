"""Write one procedural indoor room as a nerfstudio scene (images, depth, labels, teacher features).

    python scripts/make_synthetic.py demo/room0 --num-views 96 --image-size 448 --seed 0
    python scripts/make_synthetic.py demo/loop0 --trajectory loop --fov 70 --num-views 24

Cameras: ``--trajectory video`` (default), a handheld capture (a walk-through or a partial orbit around
a piece of furniture, a few centimetres and degrees a frame; 64-128 frames make a room), or ``loop``,
the views spread over one closed ellipse around the room (the scenes of format version 1).

The folder layout and file formats are described in the docstring of the ``ff3r_ns.data.synthetic``
package. The same arguments always give bit-identical files. An existing folder is only replaced if it
holds a previous synthetic scene.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ff3r_ns.data.synthetic import RoomConfig, write_scene


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="output folder (new, empty, or a previous synthetic scene)")
    parser.add_argument("--num-views", type=int, default=96, help="number of views (frames) along the camera path")
    parser.add_argument("--image-size", type=int, default=448, help="width and height of the images (even)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the room, camera path and teacher noise")
    parser.add_argument("--trajectory", choices=("video", "loop"), default="video", help="how the room is filmed")
    parser.add_argument("--fov", type=float, nargs="+", default=list(RoomConfig.fov_deg), metavar="DEG",
                        help="field of view in degrees: one value, or a low and a high one drawn per room")  # fmt: skip
    parser.add_argument("--speed", type=float, nargs=2, default=list(RoomConfig.camera_speed), metavar=("LOW", "HIGH"),
                        help="range of the video's walking speed in metres per frame, drawn per room")  # fmt: skip
    parser.add_argument("--orbit-probability", type=float, default=RoomConfig.orbit_probability,
                        help="probability that a video is a partial orbit around furniture, not a walk-through")  # fmt: skip
    parser.add_argument("--no-shadows", action="store_true", help="skip shadow rays (about 2x faster)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        config = RoomConfig(
            seed=args.seed,
            num_views=args.num_views,
            image_size=args.image_size,
            trajectory=args.trajectory,
            fov_deg=args.fov[0] if len(args.fov) == 1 else tuple(args.fov),
            camera_speed=tuple(args.speed),
            orbit_probability=args.orbit_probability,
            shadows=not args.no_shadows,
        )
    except ValueError as error:
        parser.error(str(error))
    start = time.perf_counter()
    columns = (TextColumn("rendering"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns) as progress:
        task = progress.add_task("views", total=config.num_views, visible=False)  # shown once writing starts
        try:
            path = write_scene(
                args.out_dir, config, progress=lambda done, total: progress.update(task, completed=done, visible=True)
            )
        except FileExistsError as error:
            progress.stop()
            print(f"error: {error}", file=sys.stderr)
            return 2
    size = f"{config.image_size}x{config.image_size}"
    print(f"wrote {path} ({config.num_views} views, {size}, {config.trajectory}) in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
