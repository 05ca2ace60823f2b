"""Activation checkpointing changes memory, not results: the same loss, gradients and buffers as a plain step, with
a fraction of the activations kept; the camera head's refinement detaches as VGGT's does; the switch's defaults."""

import lpips
import pytest
import torch
from nerfstudio.data.scene_box import SceneBox

from ff3r_ns.data.synthetic import RoomConfig, write_scene
from ff3r_ns.network.camera_head import CameraHead
from ff3r_ns.network.checkpointing import NETWORK_PARTS, checkpoint_parts
from ff3r_ns.ns.multiview_datamanager import FF3RTrainDataManagerConfig
from ff3r_ns.ns.reconstruct import SHIPPED_WEIGHTS
from ff3r_ns.ns.train_model import FF3RTrainModelConfig, training_step
from ff3r_ns.training.losses import LossWeights
from ff3r_ns.training.teachers import DatasetGeometryTeacher

SIZE = 56
VIEWS = 3


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    """Three views of a synthetic room with depth and stored teacher features, as the datamanager hands them out."""
    root = tmp_path_factory.mktemp("room")
    write_scene(root / "room", RoomConfig(seed=8, num_views=6, image_size=SIZE))
    config = FF3RTrainDataManagerConfig(data=root, prefetch=0)
    config.sampling.image_size, config.sampling.max_views, config.sampling.random_num_views = SIZE, VIEWS, False
    return config.setup().next_train(0)


def make_model(checkpointing: bool, network: str = "shipped"):
    """The tiny preset at random weights, or the shipped network (its views overlap, so L_warp has a gradient),
    with a trained semantic encoder, LPIPS (AlexNet at random weights: no download) and every loss term."""
    torch.manual_seed(0)
    config = FF3RTrainModelConfig(
        preset="tiny", init_checkpoint=SHIPPED_WEIGHTS if network == "shipped" else None,
        activation_checkpointing=checkpointing, checkpoint_views=1, loss=LossWeights(lpips=0.0),
    )  # fmt: skip
    model = config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1, device="cpu")
    model._unregistered.lpips = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
    model.config.loss = LossWeights()
    return model.train()


def saved_bytes(function) -> int:
    """Bytes of the distinct tensor storages autograd keeps for the backward pass while ``function`` runs (those
    that a checkpointed region keeps are only its inputs, not seen here)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = function()
    return result, sum(storages.values())


@pytest.mark.parametrize("network", ["tiny", "shipped"])
def test_checkpointing_gives_the_loss_and_gradients_of_the_plain_step(views, network):
    runs = []
    for checkpointing in (False, True):
        model = make_model(checkpointing, network)
        assert model.checkpointing is checkpointing
        assert model.network.checkpointed == (frozenset(NETWORK_PARTS) if checkpointing else frozenset())
        (outputs, loss_dict, metrics), kept = saved_bytes(lambda: training_step(model, DatasetGeometryTeacher(), "dataset", views))
        loss_dict["total"].backward()
        grads = {name: p.grad for name, p in model.network.named_parameters() if p.grad is not None}
        buffers = {name: b.clone() for name, b in model.network.named_buffers()}  # BatchNorm statistics: updated once
        runs.append((loss_dict["total"].item(), metrics, grads, buffers, kept))
    (plain_loss, plain_terms, plain_grads, plain_buffers, plain_kept), (loss, terms, grads, buffers, kept) = runs

    assert plain_terms["loss_rgb"] > 0 and plain_terms["loss_feat"] > 0
    if network == "shipped":
        assert plain_terms["loss_warp"] > 0  # random tiny cameras see none of each other's pixels: L_warp is 0
    assert loss == pytest.approx(plain_loss, rel=1e-6)
    for name in ("loss_rgb", "loss_feat", "loss_warp", "loss_depth", "loss_pose"):
        assert terms[name] == pytest.approx(plain_terms[name], rel=1e-5, abs=1e-7), name
    assert grads.keys() == plain_grads.keys() and len(grads) > 100
    assert any(name.startswith("semantic_encoder.") for name in grads)  # the trained encoder's blocks are recomputed
    # Float rounding only: LPIPS, L_feat and L_warp sum their chunks in another order (measured: at most 2.8e-5
    # relative per tensor on the shipped network; overall 1.3e-5 on the tiny preset, most of it in the camera
    # token, 1.3e-5 of its own). A tensor whose gradient is
    # all but zero carries that rounding at the scale of the whole gradient, not its own: the tiny random
    # network's semantic encoder gets 1e-9 to 2e-6 of the total norm and differs by up to 3e-3 of its own, 2.3e-6
    # of the total (measured). Hence the floor at 1e-5 of the total; a wrong recomputation moves a tensor by
    # the order of its own gradient.
    total = float(torch.cat([g.flatten() for g in plain_grads.values()]).norm())
    for name, grad in plain_grads.items():
        assert float((grads[name] - grad).norm()) <= 1e-4 * float(grad.norm()) + 1e-5 * total, name
    overall = float(torch.cat([(grads[n] - g).flatten() for n, g in plain_grads.items()]).norm()) / total
    worst = max(float((grads[n] - g).norm() / g.norm().clamp(min=1e-30)) for n, g in plain_grads.items())
    print(f"\n{network}: loss {abs(loss - plain_loss) / plain_loss:.1e} relative, gradients {worst:.1e} per tensor at most, {overall:.1e} overall")
    assert overall <= 3e-5
    for name, buffer in plain_buffers.items():
        torch.testing.assert_close(buffers[name], buffer, rtol=1e-5, atol=1e-7, msg=name)
    # What is kept outside the recomputed regions (measured: a few percent of the plain step's activations).
    print(f"\nactivations kept: {plain_kept / 2**20:.1f} MiB plain, {kept / 2**20:.1f} MiB checkpointed")
    assert kept < 0.25 * plain_kept, (kept, plain_kept)


def test_inference_is_untouched_by_checkpointing(views):
    plain, checkpointed = make_model(False), make_model(True)
    with torch.no_grad():
        a, b = plain.network(views.images), checkpointed.network(views.images)
    assert torch.equal(a.depth, b.depth) and torch.equal(a.gaussians.means, b.gaussians.means)


def test_camera_head_iteration_learns_only_its_own_delta():
    """As in VGGT: the estimate is detached before each delta is added, so the gradient of iteration i's output
    reaches iteration i's delta and no earlier one (the forward pass is the same either way)."""
    torch.manual_seed(0)
    head = CameraHead(64, trunk_depth=1, num_heads=4)
    deltas = []
    head.pose_branch.register_forward_hook(lambda _module, _inputs, output: deltas.append(output))
    poses = head([torch.randn(1, 3, 5, 64)], num_iterations=4)
    assert len(deltas) == 4
    for i, pose in enumerate(poses):
        grads = torch.autograd.grad(pose.sum(), deltas, retain_graph=True, allow_unused=True)
        assert grads[i] is not None and grads[i].abs().sum() > 0
        assert all(grad is None for grad in grads[:i]), i
    # The value is still the running sum of the deltas (field-of-view entries through ReLU).
    total = sum(deltas)
    torch.testing.assert_close(poses[-1][..., :7], total[..., :7])


def test_the_switch_and_its_defaults():
    assert checkpoint_parts(True, NETWORK_PARTS) == frozenset(NETWORK_PARTS)
    assert checkpoint_parts(["encoder", "heads"], NETWORK_PARTS) == {"encoder", "heads"}
    with pytest.raises(ValueError, match="unknown checkpointing parts"):
        checkpoint_parts(["decoder"], NETWORK_PARTS)
    box = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
    # Automatic: off for a network that is not the large one, and off on the CPU.
    tiny = FF3RTrainModelConfig(preset="tiny", loss=LossWeights(lpips=0.0))
    assert not tiny.setup(scene_box=box, num_train_data=1, device="cpu").checkpointing
    tiny.checkpoint_views = 0
    with pytest.raises(ValueError, match="checkpoint_views must be at least 1"):
        tiny.setup(scene_box=box, num_train_data=1)


def test_checkpointing_asked_for_on_the_cpu_says_it_only_saves_memory(capsys):
    box = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
    config = FF3RTrainModelConfig(preset="tiny", activation_checkpointing=True, loss=LossWeights(lpips=0.0))
    model = config.setup(scene_box=box, num_train_data=1, device="cpu")
    assert model.checkpointing
    assert "activation checkpointing on the CPU" in capsys.readouterr().out.replace("\n", " ")


def test_a_frozen_semantic_encoder_keeps_no_activations(views):
    """With LSeg's weights the encoder is frozen: it runs under no_grad, so its outputs hold no graph and autograd
    saves nothing for it (the VGGT teacher's forward is no_grad as well)."""
    box = SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
    frozen = FF3RTrainModelConfig(preset="tiny", train_semantic_encoder=False, loss=LossWeights(lpips=0.0))
    trained = FF3RTrainModelConfig(preset="tiny", loss=LossWeights(lpips=0.0))
    images = views.images[0]
    kept = []
    for config in (frozen, trained):
        network = config.setup(scene_box=box, num_train_data=1).network
        (tokens, features, _), saved = saved_bytes(lambda: network.encode_semantics(images))
        kept.append(saved)
        assert tokens.requires_grad == features.requires_grad == (config is trained)
    assert kept[0] == 0 and kept[1] > 0
