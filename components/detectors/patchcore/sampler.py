"""Greedy k-center coreset selection for PatchCore's memory bank, in two stages.

anomalib 2.7 projected EfficientNet-Lite0's 152 feature dimensions *up* to ~300 and
scanned every patch at every greedy step: 46 minutes for bottle at 10 % on 2 cores. Here
the projection always reduces the dimension and the work runs in cache-sized chunks.

Giving each chunk only ratio × chunk centres is not a coreset of the whole bank: a rare
normal mode spread thinly over many chunks loses to each chunk's local outliers and goes
uncovered (30 k points, 200 rare clusters, 1 %: 164/200 covered, radius 19.4 against 6.1
for the two stages, tests/components/detectors/test_sampler.py), and an uncovered normal
mode scores as a defect. So selection is two-stage:

1. each chunk takes `OVERSAMPLE` × ratio × chunk candidates by greedy k-center, leaving
   every point within r₁ of a candidate;
2. greedy k-center over the union of candidates picks the final ratio × N, leaving every
   candidate within r₂ of a centre: globally while the union has at most
   `SECOND_STAGE_MAX` candidates, else in random parts of that size, each taking its
   share.

By the triangle inequality every point lies within r₁ + r₂ of the coreset, and greedy
k-center is a 2-approximation on each stage's input, so with a global second stage
r₂ ≤ 2·OPT_k(all points) (the union is a subset of all points); in parts, r₂ is the
largest part's greedy radius. `coreset_radius` measures the bound on a selection.

Cost: greedy k-center picking k points of a group costs k distances per point of the
group. Every group here picks about `GROUP_PICKS`: a chunk holds GROUP_PICKS /
(OVERSAMPLE · ratio) patches, and a second-stage part picks a quarter of its
SECOND_STAGE_MAX candidates. A patch so costs about GROUP_PICKS distances in the first
stage and fewer in the second, whatever the number of images or the ratio: fit time is
linear in the images (tests/benchmarks/fit_scaling.py; a fixed 8 192-patch chunk at 10 %
cost 3 277 a patch, 200 tiled 500×1250 parts 268 s). A group's picks also bound how many
rare modes it can keep, which is why the chunk grows as the ratio falls. Equal-sized
groups run side by side (`_greedy` over a batch of groups), so the Python loop runs once
per pick of a batch, not once per pick of every group.
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

# Points each greedy group picks: its cost per point, and the most distinct modes it keeps.
GROUP_PICKS = 1024
# First-stage candidates per chunk, as a multiple of the final ratio.
OVERSAMPLE = 4
# The second stage runs global greedy only over this many candidates; a larger union is
# split into random parts of this size, each choosing its share (a quarter of it).
SECOND_STAGE_MAX = OVERSAMPLE * GROUP_PICKS
# Points greedy k-center handles in one batch of equal groups (64 k × 64 float32 =
# 16 MB): larger batches fall out of the caches, smaller ones pay Python per group.
BATCH_POINTS = 65536


def project(features: torch.Tensor, projection_dim: int, seed: int) -> torch.Tensor:
    """Random Gaussian projection to fewer dimensions (never more); distances ~preserved."""
    dim = features.shape[1]
    if projection_dim >= dim:
        return features.float()
    generator = torch.Generator().manual_seed(seed)
    projection = torch.randn(dim, projection_dim, generator=generator).to(features.device)
    return features.float() @ (projection / math.sqrt(projection_dim))


def chunk_size_for(ratio: float) -> int:
    """First-stage patches per chunk at RATIO: the chunk whose candidates are GROUP_PICKS."""
    return max(GROUP_PICKS, round(GROUP_PICKS / (OVERSAMPLE * ratio)))


def greedy_coreset(
    features: torch.Tensor,
    ratio: float,
    projection_dim: int = 64,
    chunk_size: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> torch.Tensor:
    """Sorted indices of round(`ratio`·N) rows of `features` (N×D): a two-stage k-center
    (first-stage chunks of `chunk_size` patches, by default chunk_size_for(ratio))."""
    if not 0 < ratio <= 1:
        raise ValueError(f"coreset ratio must be in (0, 1], got {ratio}")
    chunk_size = chunk_size or chunk_size_for(ratio)
    count = features.shape[0]
    wanted = max(1, round(count * ratio))
    if ratio == 1 or count <= 1:
        return torch.arange(count, device=features.device)
    reduced = project(features, projection_dim, seed)
    if count <= chunk_size:
        return _greedy(reduced[None], wanted)[0].sort().values
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(count, generator=generator).to(features.device)
    chunks = list(order.split(chunk_size))
    takes = [_take(len(chunk), ratio * OVERSAMPLE) for chunk in chunks]
    bar = tqdm(total=count + sum(takes), desc="coreset", unit="patch", unit_scale=True,
               disable=not progress)  # fmt: skip
    candidates = torch.cat(_greedy_groups(reduced, chunks, takes, bar))
    wanted = min(wanted, len(candidates))
    if len(candidates) <= SECOND_STAGE_MAX:
        parts = [candidates]
    else:
        shuffled = candidates[torch.randperm(len(candidates), generator=generator)]
        parts = list(shuffled.split(SECOND_STAGE_MAX))
    ends = torch.tensor([len(part) for part in parts]).cumsum(0).tolist()
    shares = [round(wanted * end / len(candidates)) for end in ends]
    shares = [share - before for share, before in zip(shares, [0, *shares[:-1]], strict=True)]
    picked = torch.cat(_greedy_groups(reduced, parts, shares, bar))
    bar.close()
    return picked.sort().values


def _take(size: int, share: float) -> int:
    """Candidates a first-stage chunk of SIZE keeps (at least one)."""
    return min(size, max(1, math.ceil(size * share)))


def _greedy_groups(
    reduced: torch.Tensor, groups: list[torch.Tensor], takes: list[int], bar: tqdm
) -> list[torch.Tensor]:
    """Greedy k-center picks TAKES[i] of each group of row indices, equal-sized groups
    batched; returns the picked row indices per group (in GROUPS' order)."""
    picked = [group[:0] for group in groups]
    by_size: dict[int, list[int]] = {}
    for number, group in enumerate(groups):
        by_size.setdefault(len(group), []).append(number)
    for size, numbers in by_size.items():
        per_batch = max(1, BATCH_POINTS // size)
        for start in range(0, len(numbers), per_batch):
            batch = numbers[start : start + per_batch]
            wanted = max(takes[n] for n in batch)
            if wanted == 0:
                continue
            rows = torch.stack([groups[n] for n in batch])
            picks = _greedy(reduced[rows], wanted)
            for position, n in enumerate(batch):
                # Greedy's first k picks are its k-pick answer: a shorter share truncates.
                picked[n] = rows[position, picks[position, : takes[n]]]
            bar.update(rows.numel())
    return picked


def coreset_radius(features: torch.Tensor, picked: torch.Tensor) -> float:
    """Largest distance from any row to its nearest picked row (the covering radius)."""
    bank = features[picked].float()
    worst = 0.0
    for rows in features.float().split(8192):
        worst = max(worst, float(torch.cdist(rows, bank).amin(1).max()))
    return worst


def _greedy(points: torch.Tensor, wanted: int) -> torch.Tensor:
    """Greedy k-center in each of B groups at once (B×n×d points → B×WANTED indices):
    repeatedly take the point farthest from those already taken, starting at the first."""
    groups = torch.arange(points.shape[0], device=points.device)
    norms = (points * points).sum(-1)
    nearest = torch.full(norms.shape, float("inf"), device=points.device)
    picks = torch.empty(points.shape[0], wanted, dtype=torch.long, device=points.device)
    current = torch.zeros(points.shape[0], dtype=torch.long, device=points.device)
    for step in range(wanted):
        picks[:, step] = current
        centre = points[groups, current]
        distance = norms - 2 * torch.bmm(points, centre[:, :, None])[:, :, 0]
        torch.minimum(nearest, distance + norms[groups, current, None], out=nearest)
        current = nearest.argmax(1)
    return picks
