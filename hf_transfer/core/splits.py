"""Seeded, stratified carve-outs of a training split (a validation split, or the calibration split of
`calibrate_decision`): pure functions of the labels, in numpy."""

from __future__ import annotations

import numpy as np


def carve_indices(labels: np.ndarray, percentage: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (kept, carved) row indices, with about `percentage` % of the rows carved. Single-label `labels` (one
    id per row) are stratified by class; multi-label ones (multi-hot rows) by iterative stratification. Either way a
    class or label of one row stays in the kept part, and every other one has at least one carved row."""
    rng = np.random.default_rng(seed)
    if labels.ndim == 2:
        carved = _iterative_stratification(labels > 0.5, percentage, rng)
        return rng.permutation(np.flatnonzero(~carved)), rng.permutation(np.flatnonzero(carved))
    groups = [np.arange(len(labels))]
    if np.bincount(labels).max() > 1:  # else every class is one row: none can be spared
        groups = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    kept, carved = [], []
    for group in groups:
        group = rng.permutation(group)
        n_carved = min(max(1, round(len(group) * percentage / 100)), len(group) - 1) if len(group) > 1 else 0
        carved.append(group[:n_carved])
        kept.append(group[n_carved:])
    return rng.permutation(np.concatenate(kept)), rng.permutation(np.concatenate(carved))


def _iterative_stratification(hot: np.ndarray, percentage: float, rng) -> np.ndarray:
    """Which rows are carved, by iterative stratification (Sechidis et al., 2011) into two parts: the label with the
    fewest rows left is dealt first, each of its rows to the part that still wants most of that label (then most rows
    overall). A label of n >= 2 rows wants max(1, n·percentage/100) carved rows, at most n − 1; rows with no label
    fill the parts' remaining sizes."""
    rows, _ = hot.shape
    counts = hot.sum(axis=0)
    carve = np.where(counts >= 2, np.clip(np.round(counts * percentage / 100), 1, counts - 1), 0)
    wanted = np.stack([counts - carve, carve]).astype(float)  # [kept, carved] x labels
    n_carved = min(max(1, round(rows * percentage / 100)), rows - 1)
    sizes = np.array([rows - n_carved, n_carved], dtype=float)
    part = np.full(rows, -1)
    order = rng.permutation(rows)
    left = hot.copy()
    while left.any():
        remaining = left.sum(axis=0)
        fewest = np.flatnonzero(remaining == remaining[remaining > 0].min())
        label = rng.choice(fewest)
        for row in order[left[order, label]]:
            side = 1 if (wanted[1, label], sizes[1]) > (wanted[0, label], sizes[0]) else 0
            part[row] = side
            wanted[side] -= hot[row]
            sizes[side] -= 1
            left[row] = False
    for row in order[part[order] < 0]:  # no label at all
        side = 1 if sizes[1] > sizes[0] else 0
        part[row] = side
        sizes[side] -= 1
    return part == 1
