import torch

from anomalyops.components.sampler import greedy_coreset


def test_ratio_and_uniqueness():
    features = torch.randn(5000, 40)
    picked = greedy_coreset(features, 0.1, chunk_size=1000, progress=False)
    assert len(picked) == 500 and len(picked.unique()) == 500


def test_greedy_covers_outliers_better_than_random():
    generator = torch.Generator().manual_seed(0)
    bulk = torch.randn(3000, 16, generator=generator)
    outliers = torch.randn(6, 16, generator=generator) + 25
    features = torch.cat([bulk, outliers])
    picked = greedy_coreset(features, 0.01, projection_dim=8, progress=False)

    def coverage_radius(bank):
        return torch.cdist(features, bank).amin(1).max()

    random_pick = torch.randperm(len(features), generator=generator)[: len(picked)]
    # The far cluster is covered (k-center need not take all six: they sit close together),
    # and the worst-covered point is closer than with a random pick of the same size.
    assert set(range(3000, 3006)) & set(picked.tolist())
    assert coverage_radius(features[picked]) < coverage_radius(features[random_pick])


def test_full_ratio_keeps_everything():
    assert greedy_coreset(torch.randn(10, 3), 1.0).tolist() == list(range(10))
