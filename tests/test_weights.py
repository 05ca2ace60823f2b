"""Weight loading: released VGGT-1B and LSeg layouts written at tiny size, FF3R checkpoints, bad files."""

import json

import pytest
import torch

from ff3r_ns.network.ff3r import FF3R
from ff3r_ns.network.semantic import lseg_key
from ff3r_ns.network.weights import (
    WeightsUnavailable,
    load_ff3r_checkpoint,
    load_lseg_weights,
    load_vggt_weights,
    save_ff3r_checkpoint,
)


def tiny(seed: int) -> FF3R:
    torch.manual_seed(seed)
    return FF3R.from_preset("tiny")


def vggt_state_dict(source: FF3R) -> dict[str, torch.Tensor]:
    """A checkpoint in VGGT-1B's released layout: no prefix, plus heads FF3R does not have."""
    state = {}
    for name in ("aggregator", "camera_head", "depth_head"):
        state.update({f"{name}.{k}": v.clone() for k, v in getattr(source, name).state_dict().items()})
    state["point_head.scratch.output_conv2.0.weight"] = torch.zeros(4, 4, 3, 3)
    state["track_head.feature_extractor.norm.weight"] = torch.zeros(8)
    return state


def assert_same_module(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_vggt_checkpoint_loads_into_geometry_parts(tmp_path):
    source, target = tiny(0), tiny(1)
    torch.save(vggt_state_dict(source), tmp_path / "model.pt")
    load_vggt_weights(target, tmp_path)  # a folder holding model.pt, as the hub repository has it
    for name in ("aggregator", "camera_head", "depth_head"):
        assert_same_module(getattr(source, name), getattr(target, name))
    # The rest stays as it was: VGGT has no semantic encoder or Gaussian head.
    assert not torch.equal(source.gaussian_head.out[0].weight, target.gaussian_head.out[0].weight)


def test_anysplat_style_prefix_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    source, target = tiny(0), tiny(1)
    save_file({f"encoder.{k}": v.contiguous() for k, v in vggt_state_dict(source).items()}, str(tmp_path / "w.safetensors"))
    load_vggt_weights(target, tmp_path / "w.safetensors")
    assert_same_module(source.aggregator, target.aggregator)


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda s: s.pop("aggregator.camera_token"), "missing keys: camera_token"),
        (lambda s: s.__setitem__("aggregator.extra_token", torch.zeros(1)), "unexpected keys: extra_token"),
        (lambda s: s.__setitem__("depth_head.norm.weight", torch.zeros(3)), r"mis-shaped tensors: norm.weight"),
        (lambda s: s.__setitem__("mystery_head.weight", torch.zeros(1)), "no known VGGT module"),
    ],
)
def test_bad_vggt_checkpoints_name_the_keys(tmp_path, corrupt, message):
    state = vggt_state_dict(tiny(0))
    corrupt(state)
    torch.save(state, tmp_path / "model.pt")
    target = tiny(1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(ValueError, match=message):
        load_vggt_weights(target, tmp_path / "model.pt")
    # Checks come before copying: a rejected file leaves the model untouched.
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_lseg_checkpoint_with_net_prefix(tmp_path):
    source, target = tiny(0), tiny(1)
    state = {"net." + lseg_key(k): v for k, v in source.semantic_encoder.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "demo_e200.ckpt")
    load_lseg_weights(target, tmp_path / "demo_e200.ckpt")
    assert_same_module(source.semantic_encoder, target.semantic_encoder)


def test_ff3r_checkpoint_round_trip(tmp_path):
    source = tiny(0)
    save_ff3r_checkpoint(source, tmp_path / "run")
    loaded = load_ff3r_checkpoint(tmp_path / "run")
    assert loaded.config == source.config
    assert_same_module(source, loaded)
    images = torch.rand(1, 2, 3, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(source.eval()(images).depth, loaded.eval()(images).depth)


def test_half_precision_checkpoint_is_smaller_and_close(tmp_path):
    source = tiny(0)
    save_ff3r_checkpoint(source, tmp_path / "fp32")
    save_ff3r_checkpoint(source, tmp_path / "fp16", dtype=torch.float16)
    size = lambda d: (d / "model.safetensors").stat().st_size  # noqa: E731
    assert size(tmp_path / "fp16") < 0.6 * size(tmp_path / "fp32")
    loaded = load_ff3r_checkpoint(tmp_path / "fp16")
    for (k, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        if a.is_floating_point():
            torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-3, msg=k)


def test_bad_ff3r_checkpoints(tmp_path):
    save_ff3r_checkpoint(tiny(0), tmp_path / "ok")
    meta = json.loads((tmp_path / "ok" / "config.json").read_text())
    meta["format"] = "something-else"
    (tmp_path / "ok" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="not an FF3R config"):
        load_ff3r_checkpoint(tmp_path / "ok")
    meta["format"] = "ff3r-ns"
    meta["config"]["heads"]["semantic_dim"] = 4
    (tmp_path / "ok" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="mis-shaped tensors"):
        load_ff3r_checkpoint(tmp_path / "ok")


def test_missing_weights_offline_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsUnavailable, match=r"model\.safetensors or model\.pt.*facebook/VGGT-1B"):
        load_vggt_weights(tiny(0), "facebook/VGGT-1B")
    with pytest.raises(WeightsUnavailable, match="does not exist"):
        load_vggt_weights(tiny(0), tmp_path / "nowhere" / "model.pt")
    with pytest.raises(WeightsUnavailable, match="demo_e200.ckpt"):
        load_lseg_weights(tiny(0), tmp_path)
    with pytest.raises(WeightsUnavailable, match="model.safetensors"):
        load_ff3r_checkpoint(tmp_path)
