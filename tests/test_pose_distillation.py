"""The pose-distillation path end to end: teacher targets -> L_p -> camera head -> decoded cameras.

Fitting the tiny network to one fixed sample must bring its decoded cameras onto the scene's true
cameras (compared after Sim(3) alignment, independently of the pose encoding); a convention mismatch
anywhere between the teacher's encoding and the network's decoding would leave a large error.
"""

import numpy as np
import torch

from ff3r_ns.data.readers import read_scene
from ff3r_ns.data.synthetic import RoomConfig, write_scene
from ff3r_ns.data.views import load_views
from ff3r_ns.eval.alignment import pose_errors
from ff3r_ns.network.cameras import to_4x4, w2c_to_c2w
from ff3r_ns.network.ff3r import FF3R, decode_cameras
from ff3r_ns.training.losses import pose_distillation_loss
from ff3r_ns.training.teachers import DatasetGeometryTeacher, TrainBatch


def test_fitting_the_pose_targets_recovers_the_true_cameras(tmp_path):
    # the loop room (views 0, 3, 6, 9 of 24 are 45 degrees apart): wide enough for a well-posed Sim(3) alignment
    room = RoomConfig(seed=5, num_views=24, image_size=112, shadows=False, trajectory="loop", fov_deg=70.0)
    write_scene(tmp_path / "room", room)
    views = load_views(read_scene(tmp_path / "room"), [0, 3, 6, 9], 56, depth=True)
    batch = TrainBatch(
        images=views.images[None],
        intrinsics=views.intrinsics[None],
        camera_to_worlds=views.camera_to_worlds[None],
        depth=views.depth[None],
    )
    targets = DatasetGeometryTeacher()(batch)
    torch.manual_seed(0)
    model = FF3R.from_preset("tiny")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def errors() -> dict:
        with torch.no_grad():
            extrinsics, _ = decode_cameras(model(batch.images, voxelize=False).pose_enc_list[-1], (56, 56))
        predicted = w2c_to_c2w(to_4x4(extrinsics[0].double())).numpy()
        return pose_errors(predicted, views.camera_to_worlds.double().numpy(), align=True)

    before = errors()
    for _ in range(120):
        loss = pose_distillation_loss(model(batch.images, voxelize=False).pose_enc_list, targets.pose_enc)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = errors()
    assert before["rotation_deg_mean"] > 30
    assert after["rotation_deg_mean"] < 10, after
    # Translations are in the scene's metres after the Sim(3): a few centimetres in a room of several metres.
    assert after["translation_mean"] < 0.1 * np.linalg.norm(np.ptp(views.camera_to_worlds[:, :3, 3].numpy(), axis=0))
