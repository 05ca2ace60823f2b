"""ff3r-train on two processes (DDP, gloo, CPU, activation checkpointing on) takes the step of one process on the
same four scenes, and a run resumed from a checkpoint continues on every rank as the uninterrupted one.

Every term of Eq. 13 is a mean with equal weight per scene (L_d per view, L_warp per scene, the others per
pixel or per view), so the gradient that DDP averages over 2 ranks x 2 scenes is the gradient of one process on
the 4 scenes, and AdamW then moves the weights the same way.
"""

import os
import socket
import types
from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from nerfstudio.pipelines import base_pipeline
from test_train import tiny_config
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from ff3r_ns.data.synthetic import RoomConfig, write_scene
from ff3r_ns.ns.reconstruct import SHIPPED_WEIGHTS
from ff3r_ns.ns.train import FF3RTrainer, latest_checkpoint
from ff3r_ns.training.teachers import TrainBatch

SIZE = 56
SCENES = 4
"""Scenes of the one batch: all of them in the single process, two on each rank of the DDP run."""
WORLD_SIZE = 2
VIEWS = 3
"""Views per scene: up to 4 views L_warp takes every pair, so no pair is drawn at random."""
STEPS = 2


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> tuple[Path, Path]:
    """Four rooms and one batch of all four, drawn and loaded by the datamanager (saved for the ranks)."""
    root = tmp_path_factory.mktemp("ddp")
    rooms = root / "rooms"
    for seed in range(SCENES):
        write_scene(rooms / f"room{seed}", RoomConfig(seed=30 + seed, num_views=6, image_size=SIZE))
    datamanager = tiny_config(rooms, root, STEPS, "batch").pipeline.datamanager
    datamanager.scenes_per_batch, datamanager.prefetch = SCENES, 0
    datamanager.sampling.max_views, datamanager.sampling.random_num_views = VIEWS, False
    manager = datamanager.setup()
    batch = manager.load(*manager.draw(0))
    assert batch.images.shape[:2] == (SCENES, VIEWS)
    path = root / "batch.pt"
    torch.save({f.name: getattr(batch, f.name) for f in fields(TrainBatch)}, path)
    return rooms, path


def scenes_of(saved: dict, scenes: slice) -> TrainBatch:
    return TrainBatch(**{k: v[scenes] if isinstance(v, (Tensor, tuple)) else v for k, v in saved.items()})


def gradients(trainer: FF3RTrainer) -> dict[str, Tensor]:
    return {k: p.grad.clone() for k, p in trainer.pipeline.model.network.named_parameters() if p.grad is not None}


def mean_gradient_of_halves(trainer: FF3RTrainer, halves: list[TrainBatch]) -> dict[str, Tensor]:
    """What DDP should compute, in one process: the mean of the halves' gradients, each through the pipeline."""
    for half in halves:
        trainer.pipeline.datamanager.next_train = lambda step: half
        _, loss_dict, _ = trainer.pipeline.get_train_loss_dict(step=0)
        (loss_dict["total"] / len(halves)).backward()
    grad = gradients(trainer)
    trainer.optimizers.zero_grad_all()
    return grad


class CpuDDP(DistributedDataParallel):
    """DDP as nerfstudio builds it, less ``device_ids``, which DDP refuses for a CPU module."""

    def __init__(self, module, device_ids=None, **kwargs):
        super().__init__(module, **kwargs)


def run_steps(rank: int, world_size: int, rooms: Path, batch_path: Path, out: Path, port: int = 0) -> None:
    """``STEPS`` steps of ff3r-train on this rank's share of the batch; weights, gradient and losses go to ``out``."""
    torch.set_num_threads(1)  # MKL may split a reduction by the threads it gets: one thread, one summation order
    if world_size > 1:
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
        dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=120))
        # VanillaPipeline wraps the model as DDP(model, device_ids=[local_rank]) and calls
        # dist.barrier(device_ids=[local_rank]), both for GPUs: DDP refuses device ids for a CPU module and
        # gloo's barrier takes none. Only these two names change, and only in this spawned process.
        base_pipeline.DDP = CpuDDP
        base_pipeline.dist = types.SimpleNamespace(barrier=lambda device_ids=None: dist.barrier())
    try:
        config = tiny_config(rooms, out, STEPS, f"world{world_size}-rank{rank}")
        # The semantic encoder has BatchNorm: trained, it would normalize with the statistics of 2 scenes on a
        # rank and of 4 in the single process. Frozen, it stays in eval mode (FF3RTrainModel.train).
        config.pipeline.model.train_semantic_encoder = False
        # The shipped network's cameras see each other's pixels; from random weights no pixel of a view warps into
        # another and L_warp is 0, with no gradient to compare.
        config.pipeline.model.init_checkpoint = SHIPPED_WEIGHTS
        # With activation checkpointing, as the large preset trains on GPUs: DDP's gradient hooks must fire once
        # per parameter although the checkpointed parts run their forward twice (the plain step is covered by
        # the resume test below, and checkpointing's own equality by test_checkpointing.py).
        config.pipeline.model.activation_checkpointing = True
        torch.manual_seed(config.machine.seed + rank)  # as ns-train: a seed per rank, DDP broadcasts rank 0's weights
        trainer = config.setup(local_rank=rank, world_size=world_size)
        trainer.setup()
        trainer.pipeline.train()  # as Trainer.train before each iteration

        saved = torch.load(batch_path, weights_only=True)
        network = trainer.pipeline.model.network
        record = {"initial": {k: v.clone() for k, v in network.state_dict().items()}, "loss": []}
        record["lr"] = max(group["optimizer"].lr for group in config.optimizers.values())
        if world_size == 1:
            halves = [scenes_of(saved, slice(0, 2)), scenes_of(saved, slice(2, 4))]
            record["half_grad"] = mean_gradient_of_halves(trainer, halves)
        share = scenes_of(saved, slice(rank * SCENES // world_size, (rank + 1) * SCENES // world_size))
        trainer.pipeline.datamanager.next_train = lambda step: share

        step_some = trainer.optimizers.optimizer_scaler_step_some

        def keep_first_gradient(grad_scaler, groups) -> None:  # after backward and DDP's all-reduce, before clipping
            if "grad" not in record:
                record["grad"] = gradients(trainer)
            step_some(grad_scaler, groups)

        trainer.optimizers.optimizer_scaler_step_some = keep_first_gradient
        for step in range(STEPS):
            trainer.pipeline.train()
            loss, _, metrics = trainer.train_iteration(step)
            record["loss"].append(loss.item())
            record.setdefault("terms", {k: float(v) for k, v in metrics.items() if k.startswith("loss_")})
        record["final"] = {k: v.clone() for k, v in network.state_dict().items()}
        torch.save(record, out / f"world{world_size}-rank{rank}.pt")
    finally:
        if world_size > 1:
            dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def relative_errors(values: dict[str, Tensor], expected: dict[str, Tensor]) -> tuple[dict[str, float], float]:
    """Relative L2 error of each tensor, and of all of them as one vector."""
    assert values.keys() == expected.keys()
    per_tensor = {k: float((values[k] - v).norm() / v.norm().clamp(min=1e-30)) for k, v in expected.items()}
    difference = torch.cat([(values[k] - v).flatten() for k, v in expected.items()])
    return per_tensor, float(difference.norm() / torch.cat([v.flatten() for v in expected.values()]).norm())


@pytest.mark.slow
def test_two_ranks_take_the_step_of_one_process(scenes, tmp_path):
    rooms, batch_path = scenes
    threads = torch.get_num_threads()
    try:
        run_steps(0, 1, rooms, batch_path, tmp_path)
    finally:
        torch.set_num_threads(threads)
    mp.spawn(run_steps, args=(WORLD_SIZE, rooms, batch_path, tmp_path, free_port()), nprocs=WORLD_SIZE)
    single = torch.load(tmp_path / "world1-rank0.pt", weights_only=True)
    ranks = [torch.load(tmp_path / f"world2-rank{rank}.pt", weights_only=True) for rank in range(WORLD_SIZE)]

    # Every run starts from the shipped checkpoint (and DDP broadcasts rank 0's weights at wrap time).
    for key, value in single["initial"].items():
        assert torch.equal(ranks[0]["initial"][key], value) and torch.equal(ranks[1]["initial"][key], value), key

    # DDP's gradient is, bit for bit, the mean of the halves' gradients taken in one process: the halves run the
    # same kernels, and halving and adding two numbers round the same either way.
    grads = [rank["grad"] for rank in ranks]
    assert grads[0].keys() == grads[1].keys() == single["grad"].keys() == single["half_grad"].keys()
    for key, grad in single["half_grad"].items():
        assert torch.equal(grads[0][key], grad) and torch.equal(grads[1][key], grad), key

    # The batch of 4 runs other kernel blockings than the halves of 2, so its gradient differs by float32 rounding,
    # and more where the rounding moves a Gaussian across one of the rasterizer's cutoffs (alpha >= 1/255,
    # transmittance > 1e-4): measured 1.0e-3 at most per tensor (the Gaussian head's last layer, behind L_rgb) and
    # 4.6e-5 overall. In float64 the two agree to 1e-13, and in float32 without the cutoffs to 2.4e-5 per tensor.
    # Each term of the first step's loss, L_warp included, is the mean of the ranks' (each a mean over its scenes).
    errors, overall = relative_errors(grads[0], single["grad"])
    worst = max(errors, key=errors.get)
    print(f"\nDDP's gradient: relative error {overall:.1e}, per tensor at most {errors[worst]:.1e} ({worst})")
    assert errors[worst] < 1e-2 and overall < 5e-4, (worst, errors[worst], overall)
    assert single["terms"]["loss_warp"] > 0 and single["terms"].keys() == ranks[0]["terms"].keys()
    for name, value in single["terms"].items():
        assert sum(rank["terms"][name] for rank in ranks) / WORLD_SIZE == pytest.approx(value, rel=1e-5), name
    for step in range(STEPS):
        mean_loss = sum(rank["loss"][step] for rank in ranks) / WORLD_SIZE
        assert mean_loss == pytest.approx(single["loss"][step], rel=1e-5), step

    # After two AdamW steps (global clipping included) the ranks hold the same weights, and the single run's moved
    # the same way. Adam divides each entry's step by that entry's own gradient size, so an entry whose gradient is
    # near zero next to the rounding above can step ~lr either way: measured 158 of 11.4M entries more than lr / 10
    # apart, and the updates 1.6e-3 apart overall.
    for key, value in ranks[0]["final"].items():
        assert torch.equal(ranks[1]["final"][key], value), key
    trained = single["grad"].keys()
    updates = [{k: run["final"][k] - run["initial"][k] for k in trained} for run in (ranks[0], single)]
    _, overall = relative_errors(*updates)
    apart = sum(int(((updates[0][k] - updates[1][k]).abs() > single["lr"] / 10).sum()) for k in trained)
    entries = sum(updates[1][k].numel() for k in trained)
    print(f"update of {STEPS} steps: relative error {overall:.1e}, {apart} of {entries} entries more than lr / 10 apart")
    assert overall < 1e-2 and apart < 1e-4 * entries, (overall, apart)


RESUME_STEPS = 4
"""Steps before the interruption and after it; the straight run takes twice as many."""


def run_training(rank: int, world_size: int, rooms: Path, out: Path, port: int, name: str, steps: int, load_dir) -> None:
    """ff3r-train on this rank as ns-train runs it (trainer.train(), rank 0 saving), each draw written down."""
    torch.set_num_threads(1)
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=120))
    base_pipeline.DDP = CpuDDP  # as in run_steps
    base_pipeline.dist = types.SimpleNamespace(barrier=lambda device_ids=None: dist.barrier())
    try:
        config = tiny_config(rooms, out, steps, name)
        config.pipeline.model.train_semantic_encoder = False  # BatchNorm is synchronised across GPU ranks only
        config.steps_per_save = steps
        config.load_dir = load_dir
        if rank == 0:
            config.save_config()
        torch.manual_seed(config.machine.seed + rank)
        trainer = config.setup(local_rank=rank, world_size=world_size)
        trainer.setup()
        manager = trainer.pipeline.datamanager
        draws, draw = {}, manager.draw

        def recorded(step: int):
            draws[step] = picks = draw(step)
            return picks

        manager.draw = recorded
        trainer.train()
        network = trainer.pipeline.model.network
        torch.save({"draws": draws, "final": network.state_dict()}, out / f"{name}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_resume_draws_and_trains_as_the_uninterrupted_run_on_every_rank(scenes, tmp_path):
    """4 steps, a save, a resumed run of 4 more (every rank restoring rank 0's checkpoint) == 8 steps straight."""
    rooms, _ = scenes
    spawn = lambda name, steps, load_dir=None: mp.spawn(  # noqa: E731
        run_training, args=(WORLD_SIZE, rooms, tmp_path, free_port(), name, steps, load_dir), nprocs=WORLD_SIZE
    )
    spawn("straight", 2 * RESUME_STEPS)
    spawn("first", RESUME_STEPS)
    first = tmp_path / "tiny" / "ff3r-train" / "first"
    spawn("resumed", RESUME_STEPS, first / "nerfstudio_models")
    runs = {name: [torch.load(tmp_path / f"{name}-rank{r}.pt", weights_only=False) for r in range(WORLD_SIZE)] for name in ("straight", "first", "resumed")}

    later = range(RESUME_STEPS, 2 * RESUME_STEPS)
    for rank in range(WORLD_SIZE):
        straight, first_run, resumed = (runs[name][rank]["draws"] for name in ("straight", "first", "resumed"))
        assert all(first_run[step] == straight[step] for step in range(RESUME_STEPS)), rank
        assert all(resumed[step] == straight[step] for step in later), rank  # rank 1 too: not rank 0's draws
    for name, steps in (("first", range(RESUME_STEPS)), ("resumed", later)):
        assert [runs[name][0]["draws"][s] for s in steps] != [runs[name][1]["draws"][s] for s in steps], name

    # The same weights, bit for bit, on both ranks and in the uninterrupted run; and the run did train.
    straight, resumed, halfway = runs["straight"][0]["final"], runs["resumed"], runs["first"][0]["final"]
    assert any(not torch.equal(halfway[k], v) for k, v in straight.items())
    for key, value in straight.items():
        assert torch.equal(resumed[0]["final"][key], value) and torch.equal(resumed[1]["final"][key], value), key
    saved = torch.load(latest_checkpoint(tmp_path / "tiny" / "ff3r-train" / "resumed"), weights_only=True)
    assert saved["step"] == 2 * RESUME_STEPS - 1
