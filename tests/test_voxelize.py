"""Semantic-aware voxelization (Eq. 5-8) against a per-voxel Python loop, and its properties."""

import math
from collections import defaultdict

import pytest
import torch

from ff3r_ns.network.voxelize import semantic_aware_voxelize


def brute_force(means, confidence, semantic, attributes, voxel_size, lam, batch_index):
    """Eq. 5-8 one voxel at a time, in float64 and plain Python where it matters."""
    members = defaultdict(list)
    for g in range(means.shape[0]):
        key = (int(batch_index[g]),) + tuple(int(torch.round(means[g, a] / voxel_size)) for a in range(3))
        members[key].append(g)
    voxels = []
    for key, ids in members.items():
        f = semantic[ids]
        prototype = f.mean(dim=0)
        d_sem = torch.stack([1 - (f[i] @ prototype) / (f[i].norm() * prototype.norm()) for i in range(len(ids))])
        logits = confidence[ids] - lam * d_sem
        w = torch.exp(logits - logits.max())
        w = w / w.sum()
        voxels.append(
            dict(
                ids=ids,
                batch=key[0],
                weights=w,
                means=(w[:, None] * means[ids]).sum(0),
                attributes=(w[:, None] * attributes[ids]).sum(0),
                semantic=(w[:, None] * f).sum(0),
            )
        )
    return voxels


def random_cloud(n, seed, dtype=torch.float64, batches=1):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g, dtype=dtype) * 2 - 1
    confidence = torch.randn(n, generator=g, dtype=dtype) * 2
    semantic = torch.randn(n, 8, generator=g, dtype=dtype)
    attributes = torch.randn(n, 5, generator=g, dtype=dtype)
    batch_index = torch.randint(0, batches, (n,), generator=g)
    return means, confidence, semantic, attributes, batch_index


@pytest.mark.parametrize("voxel_size", [0.1, 0.3, 0.8])
@pytest.mark.parametrize("lam", [0.0, 2.0])
@pytest.mark.parametrize("batches", [1, 3])
def test_matches_brute_force(voxel_size, lam, batches):
    means, confidence, semantic, attributes, batch_index = random_cloud(400, seed=batches, batches=batches)
    out = semantic_aware_voxelize(
        means, confidence, semantic, attributes, voxel_size, lam, batch_index if batches > 1 else None
    )
    expected = brute_force(means, confidence, semantic, attributes, voxel_size, lam, batch_index)
    assert out.means.shape[0] == len(expected)
    seen = set()
    for voxel in expected:
        ids = voxel["ids"]
        s = int(out.voxel_index[ids[0]])
        assert (out.voxel_index[ids] == s).all() and s not in seen
        seen.add(s)
        assert int(out.batch_index[s]) == voxel["batch"]
        torch.testing.assert_close(out.weights[ids], voxel["weights"])
        torch.testing.assert_close(out.means[s], voxel["means"])
        torch.testing.assert_close(out.attributes[s], voxel["attributes"])
        torch.testing.assert_close(out.semantic[s], voxel["semantic"])
    # Voxels come batch-major.
    assert (out.batch_index[1:] >= out.batch_index[:-1]).all()


def test_weights_sum_to_one_per_voxel_and_survive_large_confidence():
    means, confidence, semantic, attributes, _ = random_cloud(2000, seed=7, dtype=torch.float32)
    out = semantic_aware_voxelize(means, confidence * 1000, semantic, attributes, 0.2, lam=1.0)
    assert torch.isfinite(out.weights).all() and (out.weights >= 0).all()
    sums = torch.zeros(out.means.shape[0]).index_add_(0, out.voxel_index, out.weights)
    torch.testing.assert_close(sums, torch.ones_like(sums))


def test_confident_semantic_outlier_is_down_weighted():
    # Fig. 4: five consistent Gaussians (feature ~ e0) and one more confident outlier (feature e1).
    g = torch.Generator().manual_seed(0)
    means = 0.01 * torch.rand(6, 3, generator=g, dtype=torch.float64)  # all in voxel (0, 0, 0)
    semantic = torch.zeros(6, 4, dtype=torch.float64)
    semantic[:5, 0] = 1
    semantic[:5, 2] = 0.1 * torch.randn(5, generator=g, dtype=torch.float64)
    semantic[5, 1] = 1
    confidence = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0, 2.5], dtype=torch.float64)
    attributes = semantic.clone()
    plain = semantic_aware_voxelize(means, confidence, semantic, attributes, voxel_size=0.5, lam=0.0)
    aware = semantic_aware_voxelize(means, confidence, semantic, attributes, voxel_size=0.5, lam=10.0)
    assert plain.means.shape[0] == aware.means.shape[0] == 1
    assert plain.weights.argmax() == 5  # confidence alone lets the outlier dominate
    assert aware.weights[5] < 0.1 * plain.weights[5]
    assert aware.weights[5] < aware.weights[:5].min()

    def cos_to_consistent(x):
        return torch.nn.functional.cosine_similarity(x, torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64))

    assert cos_to_consistent(aware.semantic) > 0.99 > cos_to_consistent(plain.semantic)


def test_lam_zero_is_confidence_softmax():
    means, confidence, semantic, attributes, _ = random_cloud(300, seed=3)
    out = semantic_aware_voxelize(means, confidence, semantic, attributes, 0.5, lam=0.0)
    for s in range(out.means.shape[0]):
        ids = (out.voxel_index == s).nonzero().squeeze(1)
        torch.testing.assert_close(out.weights[ids], torch.softmax(confidence[ids], dim=0))


def test_one_gaussian_per_voxel_is_identity():
    grid = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
    means = grid + 0.1 * torch.rand(grid.shape)  # one Gaussian near each voxel centre
    n = means.shape[0]
    confidence, semantic, attributes = torch.randn(n), torch.randn(n, 6), torch.randn(n, 7)
    out = semantic_aware_voxelize(means, confidence, semantic, attributes, voxel_size=1.0, lam=3.0)
    assert out.means.shape[0] == n and out.voxel_index.unique().numel() == n
    torch.testing.assert_close(out.weights, torch.ones(n))
    torch.testing.assert_close(out.means[out.voxel_index], means)
    torch.testing.assert_close(out.attributes[out.voxel_index], attributes)
    torch.testing.assert_close(out.semantic[out.voxel_index], semantic)


def test_gradcheck():
    # Centres well inside their voxels, so that gradcheck's perturbations keep the assignment.
    g = torch.Generator().manual_seed(11)
    cells = torch.randint(0, 2, (12, 3), generator=g).double()
    means = cells + 0.3 * (torch.rand(12, 3, generator=g, dtype=torch.float64) - 0.5)
    inputs = (
        means.requires_grad_(),
        torch.randn(12, generator=g, dtype=torch.float64).requires_grad_(),
        torch.randn(12, 4, generator=g, dtype=torch.float64).requires_grad_(),
        torch.randn(12, 3, generator=g, dtype=torch.float64).requires_grad_(),
    )

    def merged(means, confidence, semantic, attributes):
        out = semantic_aware_voxelize(means, confidence, semantic, attributes, voxel_size=1.0, lam=1.5)
        return out.means, out.attributes, out.semantic, out.weights

    assert torch.autograd.gradcheck(merged, inputs)


def test_errors_name_the_problem():
    means, confidence, semantic, attributes, _ = random_cloud(10, seed=0)
    with pytest.raises(ValueError, match="confidence"):
        semantic_aware_voxelize(means, confidence[:5], semantic, attributes, 0.1, 1.0)
    with pytest.raises(ValueError, match="voxel_size"):
        semantic_aware_voxelize(means, confidence, semantic, attributes, 0.0, 1.0)
    bad = means.clone()
    bad[0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        semantic_aware_voxelize(bad, confidence, semantic, attributes, 0.1, 1.0)
    with pytest.raises(ValueError, match="batch_index"):
        semantic_aware_voxelize(means, confidence, semantic, attributes, 0.1, 1.0, batch_index=torch.zeros(10))


def test_chunked_rows_give_the_unchunked_result(monkeypatch):
    """The row-wise steps run in chunks for large n; with tiny chunks the merge is the same, gradients too."""
    import ff3r_ns.network.voxelize as voxelize

    cloud = random_cloud(500, seed=3, batches=2)
    whole = semantic_aware_voxelize(*cloud[:4], voxel_size=0.3, lam=0.7, batch_index=cloud[4])
    monkeypatch.setattr(voxelize, "_CHUNK", 37)
    semantic = cloud[2].clone().requires_grad_(True)
    chunked = semantic_aware_voxelize(*cloud[:2], semantic, cloud[3], voxel_size=0.3, lam=0.7, batch_index=cloud[4])
    for a, b in zip(whole, chunked):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12)
    chunked.attributes.sum().backward()  # through the semantic term of the weights (Eq. 7)
    assert semantic.grad is not None and torch.isfinite(semantic.grad).all() and semantic.grad.abs().sum() > 0
