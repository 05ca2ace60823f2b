"""ff3r-train on the CPU with the tiny preset: losses fall, runs resume bit-identically, groups and switches;
older runs' config.yml still loads."""

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from nerfstudio.data.scene_box import SceneBox

from ff3r_ns.data.synthetic import RoomConfig, write_scene
from ff3r_ns.network.weights import load_ff3r_checkpoint
from ff3r_ns.ns.multiview_datamanager import FF3RTrainDataManagerConfig
from ff3r_ns.ns.optimization import GlobalClipOptimizers, default_optimizers
from ff3r_ns.ns.train import EXPORT_DIR, LOSS_LOG, FF3RTrainModelConfig, ff3r_train_method, latest_checkpoint, main
from ff3r_ns.training.losses import LossWeights, point_map_loss
from ff3r_ns.training.schedule import warmup_cosine_factor
from ff3r_ns.training.teachers import DatasetGeometryTeacher

SIZE = 56


@pytest.fixture(scope="module")
def rooms(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rooms")
    for seed in (11, 12):
        write_scene(root / f"room{seed}", RoomConfig(seed=seed, num_views=8, image_size=SIZE))
    return root


def tiny_config(data: Path, out: Path, steps: int, name: str):
    config = copy.deepcopy(ff3r_train_method.config)
    config.data = config.pipeline.datamanager.data = data
    config.machine.device_type = "cpu"
    config.output_dir, config.experiment_name, config.timestamp = out, "tiny", name
    config.max_num_iterations = steps
    config.logging.local_writer.enable = False
    config.pipeline.model.preset = "tiny"
    config.pipeline.geometry_teacher = config.pipeline.semantic_teacher = "dataset"  # no VGGT or LSeg weights here
    config.pipeline.model.loss = LossWeights(lpips=0.0)  # no LPIPS backbone on the CPU machines
    sampling = config.pipeline.datamanager.sampling
    sampling.image_size, sampling.min_views, sampling.max_views = SIZE, 2, 3
    config.pipeline.datamanager.prefetch = 1
    config.optimizers = default_optimizers(max_steps=20, warmup_steps=2, lr=1e-3, backbone_scale=1.0)
    return config


def train(config, load_dir=None) -> Path:
    config.load_dir = load_dir
    config.save_config()  # as ns-train does
    torch.manual_seed(config.machine.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return config.get_base_dir()


@pytest.fixture
def one_thread():
    """One intra-op thread: MKL may split a reduction by the threads it gets, which varies with the machine's load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_lowers_the_loss_and_resumes_bit_identically(rooms, tmp_path, one_thread):
    straight = train(tiny_config(rooms, tmp_path, 6, "straight"))
    log = [json.loads(line) for line in (straight / LOSS_LOG).read_text().splitlines()]
    totals = [entry["loss_total"] for entry in log]
    assert len(totals) == 6 and np.mean(totals[-2:]) < np.mean(totals[:2])
    assert {"loss_rgb", "loss_feat", "loss_warp", "loss_depth", "loss_pose", "psnr"} <= set(log[0])

    first = train(tiny_config(rooms, tmp_path, 3, "first"))
    resumed = train(tiny_config(rooms, tmp_path, 3, "resumed"), load_dir=first / "nerfstudio_models")
    a = torch.load(latest_checkpoint(straight), weights_only=True)  # no numpy in the checkpoint
    b = torch.load(latest_checkpoint(resumed), weights_only=True)
    assert a["step"] == b["step"] == 5
    network = [key for key in a["pipeline"] if key.startswith("_model.network.")]
    assert network and all(torch.equal(a["pipeline"][key], b["pipeline"][key]) for key in a["pipeline"] if key in network)
    for group in ("heads", "backbone"):
        for x, y in zip(a["optimizers"][group]["state"].values(), b["optimizers"][group]["state"].values()):
            assert all(torch.equal(x[k], y[k]) for k in ("exp_avg", "exp_avg_sq"))
        assert a["schedulers"][group] == b["schedulers"][group]

    # The run also exported its network; the export command writes the same weights from any run.
    exported = load_ff3r_checkpoint(straight / EXPORT_DIR)
    assert main(["export", str(straight), str(tmp_path / "export")]) == 0
    again = load_ff3r_checkpoint(tmp_path / "export")
    for key, value in a["pipeline"].items():
        if key in network:
            name = key.removeprefix("_model.network.")
            expected = value.half().to(value.dtype) if value.is_floating_point() else value
            assert torch.equal(exported.state_dict()[name], expected)
            assert torch.equal(again.state_dict()[name], exported.state_dict()[name])


def make_model(**overrides):
    torch.manual_seed(0)
    overrides.setdefault("loss", LossWeights(lpips=0.0))
    config = FF3RTrainModelConfig(preset="tiny", **overrides)
    return config.setup(scene_box=SceneBox(aabb=torch.tensor([[-1.0] * 3, [1.0] * 3])), num_train_data=1)


def test_parameter_groups_have_the_right_learning_rates():
    model = make_model(freeze_patch_embed=True)
    groups = model.get_param_groups()
    ids = {name: {id(p) for p in params} for name, params in groups.items()}
    network = model.network
    assert {id(p) for p in network.camera_head.parameters()} <= ids["backbone"]
    assert {id(p) for p in network.aggregator.frame_blocks.parameters()} <= ids["backbone"]
    assert {id(p) for p in network.gaussian_head.parameters()} | {id(p) for p in network.fusion.parameters()} <= ids["heads"]
    assert {id(p) for p in network.semantic_encoder.parameters()} <= ids["heads"]  # no LSeg weights: trained
    assert not {id(p) for p in network.aggregator.patch_embed.parameters()} & (ids["heads"] | ids["backbone"])

    optimizers = GlobalClipOptimizers(default_optimizers(max_steps=100, warmup_steps=10), groups, max_norm=0.5)
    heads, backbone = optimizers.optimizers["heads"], optimizers.optimizers["backbone"]
    assert isinstance(heads, torch.optim.AdamW)
    assert heads.defaults["betas"] == (0.9, 0.95) and heads.defaults["weight_decay"] == 0.05
    assert optimizers.schedulers["heads"].base_lrs == [2e-4]
    assert optimizers.schedulers["backbone"].base_lrs == pytest.approx([2e-5])
    assert heads.param_groups[0]["lr"] == pytest.approx(2e-4 / 10)  # first warm-up step
    assert backbone.param_groups[0]["lr"] == pytest.approx(2e-5 / 10)

    for param in network.parameters():
        param.grad = torch.ones_like(param) if param.requires_grad else None
    optimizers.optimizer_scaler_step_all(torch.amp.GradScaler("cpu", enabled=False))
    assert optimizers.last_grad_norm > 0.5  # the norm before clipping; clipped to 0.5 before the step
    params = [p for group in groups.values() for p in group]
    assert torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params])).item() == pytest.approx(0.5, rel=1e-4)

    frozen = make_model(train_semantic_encoder=False).get_param_groups()
    assert not any(p is q for p in frozen["heads"] for q in network.semantic_encoder.parameters())


def test_schedule_warms_up_then_decays():
    assert warmup_cosine_factor(0, 4, 20) == 0.25 and warmup_cosine_factor(3, 4, 20) == 1.0
    assert warmup_cosine_factor(12, 4, 20) == pytest.approx(0.5) and warmup_cosine_factor(20, 4, 20) == 0.0


def test_ablation_switches(rooms):
    full = make_model()
    assert full.network.fusion is not None and full.network.config.voxel.lam == 1.0
    base = make_model(fusion=False, voxel_lambda=0.0, loss=LossWeights(lpips=0.0, warp=0.0))
    assert base.network.fusion is None and base.network.config.voxel.lam == 0.0
    assert not make_model(voxelize=False).network.config.voxel.enabled

    # A warp weight of 0 leaves L_warp out; the other terms remain.
    config = FF3RTrainDataManagerConfig(data=rooms / "room11", prefetch=0)
    config.sampling.image_size = SIZE
    views = config.setup().next_train(0)
    batch = {"views": views, "geometry": DatasetGeometryTeacher()(views), "semantic": views.features.float()}
    terms = []
    for model in (full, base):
        metrics = {}
        model.get_loss_dict(model(views), batch, metrics)
        terms.append({key for key in metrics if key.startswith("loss_")})
    assert "loss_warp" in terms[0] and terms[1] == terms[0] - {"loss_warp"}

    # L_pts (not in the paper) only where asked for; its value is point_map_loss of the outputs and targets.
    points = make_model(loss=LossWeights(lpips=0.0, points=2.0))
    metrics = {}
    outputs = points(views)
    total = points.get_loss_dict(outputs, batch, metrics)["total"]
    assert "loss_points" not in terms[0] and {key for key in metrics if key.startswith("loss_")} == terms[0] | {"loss_points"}
    geometry = batch["geometry"]
    expected = point_map_loss(outputs["depth"], outputs["pose_enc_list"][-1], geometry.depth, geometry.pose_enc,
                              geometry.depth_conf, geometry.top_fraction)  # fmt: skip
    assert metrics["loss_points"] == pytest.approx(float(expected)) and float(expected) > 0
    without = sum(getattr(LossWeights(), key[5:]) * value for key, value in metrics.items() if key not in ("loss_total", "loss_points"))
    assert float(total) == pytest.approx(without + 2.0 * float(expected), rel=1e-5)


def test_warp_pairs_of_a_scene_do_not_depend_on_its_place_in_the_batch():
    """Above 4 views L_warp samples its pairs; each scene draws them from its own seed, so the loss of a batch is
    the mean over any split of it (what a DDP run computes) and a scene scores the same pairs in any position."""
    model = make_model()
    b, s, f, size = 4, 7, 8, 14
    torch.manual_seed(0)
    extrinsics = torch.eye(4)[:3].repeat(b, s, 1, 1)
    extrinsics[..., 0, 3] = torch.linspace(0, 0.3, s)  # side by side, looking the same way: pixels overlap
    K = torch.tensor([[14.0, 0, 7], [0, 14, 7], [0, 0, 1]]).expand(b, s, 3, 3)
    outputs = {
        "semantic_lifted": torch.randn(b, s, f, size, size),
        "depth": torch.ones(b, s, size, size),
        "extrinsics": extrinsics,
        "intrinsics": K,
    }

    def part(rows: list[int]) -> dict:
        return {key: value[rows] for key, value in outputs.items()}

    seeds = (3, 5, 8, 13)
    whole = model._warp_loss(outputs, seeds)
    halves = [model._warp_loss(part([0, 1]), seeds[:2]), model._warp_loss(part([2, 3]), seeds[2:])]
    assert whole > 0
    torch.testing.assert_close(whole, torch.stack(halves).mean())
    swapped = model._warp_loss(part([3, 2, 1, 0]), seeds[::-1])
    torch.testing.assert_close(whole, swapped)
    assert model._warp_loss(outputs, (4, 6, 9, 14)) != whole  # the seeds do choose the pairs
    with pytest.raises(ValueError, match="one seed per scene"):
        model._warp_loss(outputs, seeds[:3])


def test_datamanager_samples_scene_batches_differently_per_rank(rooms):
    def make(local_rank: int):
        config = FF3RTrainDataManagerConfig(data=rooms, scenes_per_batch=2, prefetch=0)
        config.sampling.image_size, config.sampling.max_views = SIZE, 4
        return config.setup(local_rank=local_rank)

    rank0, again, rank1 = make(0), make(0), make(1)
    assert len(rank0.scenes) == 2
    draws = [[dm.draw(step) for step in range(4)] for dm in (rank0, again, rank1)]
    assert draws[0] == draws[1] and draws[0] != draws[2]
    batch = rank0.next_train(0)
    b, s = batch.images.shape[:2]
    assert b == 2 and 2 <= s <= 4
    assert batch.depth.shape == (b, s, SIZE, SIZE) and batch.features.shape == (b, s, 512, SIZE // 2, SIZE // 2)
    assert batch.camera_to_worlds.shape == (b, s, 4, 4) and batch.intrinsics.shape == (b, s, 3, 3)

    config = FF3RTrainDataManagerConfig(data=rooms, prefetch=0, cache_views=True, feature_downsample=2)
    config.sampling.image_size = SIZE
    cached = config.setup()
    features = cached.next_train(0).features
    assert features.dtype == torch.float16 and features.shape[-2:] == (SIZE // 4, SIZE // 4)


def test_config_yml_of_runs_saved_before_the_split_loads():
    """Runs saved when the datamanager, optimizers and model lived in ff3r_ns.ns.train name them so in config.yml."""
    config = ff3r_train_method.config
    text = yaml.dump(config)  # as TrainerConfig.save_config writes config.yml
    for module in ("ff3r_ns.ns.multiview_datamanager.", "ff3r_ns.ns.optimization.", "ff3r_ns.ns.train_model."):
        assert module in text
        text = text.replace(module, "ff3r_ns.ns.train.")
    for name in ("FF3RTrainDataManagerConfig", "FF3RTrainDataManager", "AdamWOptimizerConfig", "WarmupCosineScheduler", "FF3RTrainModel"):
        assert f"ff3r_ns.ns.train.{name}" in text
    loaded = yaml.load(text, Loader=yaml.Loader)  # as nerfstudio reads config.yml
    assert isinstance(loaded.pipeline.datamanager, FF3RTrainDataManagerConfig)
    assert loaded == config


def test_the_default_run_is_annotation_free_and_missing_weights_end_it_at_once(tmp_path, capsys):
    """ns-train ff3r-train distills VGGT-1B and LSeg by default; without their weights (or LPIPS's backbone) it
    exits 2 before reading any scene, leaves no run folder, and says which files to get and which flags do without."""
    pipeline = ff3r_train_method.config.pipeline
    assert (pipeline.geometry_teacher, pipeline.semantic_teacher) == ("vggt", "lseg")
    config = copy.deepcopy(ff3r_train_method.config)
    config.data = config.pipeline.datamanager.data = tmp_path / "no-such-scenes"  # never read: the check comes first
    config.machine.device_type = "cpu"
    config.output_dir, config.timestamp = tmp_path / "out", "missing"
    config.pipeline.vggt_teacher_weights = str(tmp_path / "VGGT-1B")
    config.pipeline.model.lpips_weights = tmp_path / "vgg16.pth"
    config.save_config()
    with pytest.raises(SystemExit) as exit_info:
        config.setup(local_rank=0, world_size=1).setup()
    assert exit_info.value.code == 2
    assert not config.get_base_dir().exists()
    message = " ".join(capsys.readouterr().out.split()).split("ns-train ff3r-train:", 1)[1]
    for needed in (
        "model.safetensors", "facebook/VGGT-1B", "--pipeline.vggt-teacher-weights",
        "demo_e200.ckpt", "github.com/isl-org/lang-seg", "--pipeline.model.lseg-weights",
        "vgg16-397923af.pth", "--pipeline.model.loss.lpips 0",
        "--pipeline.geometry-teacher dataset --pipeline.semantic-teacher dataset",
    ):  # fmt: skip
        assert needed in message, needed
    assert "no-such-scenes" not in message


def test_out_of_memory_advice_says_what_would_fit():
    from ff3r_ns.ns.train import out_of_memory_advice, requested_bytes

    gib = 2**30
    message = "CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has a total capacity of 79.19 GiB"
    assert requested_bytes(message) == int(2.5 * gib) and requested_bytes("no size") == 0
    # 20 GiB static, a 16-view step failing past 70 GiB on an 80 GiB card: (80 - 20) / (70 - 20) * 16 = 19.2.
    advice = out_of_memory_advice(16, 20 * gib, 70 * gib, 80 * gib, checkpointing=False)
    assert "16 views" in advice and "70.0 GiB" in advice and "80.0 GiB" in advice
    assert "At most 19 views" in advice and "--pipeline.datamanager.sampling.max-views 19" in advice
    assert "--pipeline.model.activation-checkpointing True" in advice
    advice = out_of_memory_advice(2, 70 * gib, 90 * gib, 80 * gib, checkpointing=True)
    assert "Not even 2 views fit" in advice and "activation-checkpointing" not in advice
