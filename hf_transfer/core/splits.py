"""Seeded, stratified carve-outs of a training split (a validation split, or the calibration split of
`calibrate_decision`): pure functions of the labels, in numpy."""

from __future__ import annotations

import numpy as np


def carve_indices(labels: np.ndarray, percentage: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (kept, carved) row indices, with about `percentage` % of the rows carved. Single-label `labels` (one
    id per row) are stratified by class; multi-label ones (multi-hot rows) by iterative stratification. Either way a
    class or label of one row stays in the kept part (unless every row is one: then one is carved), and at least one
    row is carved. Every class and label of 2 or more rows keeps a row, and has a carved row too: for a label, all
    but on a few rows where each of its rows is needed on the kept side by another label."""
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
    return _repaired(hot, part == 1, counts, order)


def _repaired(hot: np.ndarray, carved: np.ndarray, counts: np.ndarray, order: np.ndarray) -> np.ndarray:
    """`carved` mended where the dealing fell short on few rows (rows dealt earlier for rarer labels can use a label
    up): a label of 2 or more rows with no kept row gets one back (a row whose labels all keep a carved row, else
    any), then one with no carved row gets one (a row whose labels all keep a kept row), and one row is carved when
    none was."""
    for to_carved in (False, True):
        for label in np.flatnonzero(counts >= 2):
            if hot[carved == to_carved, label].any():
                continue
            left = hot[carved != to_carved].sum(axis=0)  # the side the row would leave
            found = order[(carved[order] != to_carved) & hot[order, label]]
            rows = [r for r in found if (left[hot[r]] >= 2).all()] or ([] if to_carved else list(found))
            if rows:  # training rows first: a label kept is worth more than one carved
                carved[rows[0]] = to_carved
    if not carved.any() and len(carved) > 1:
        kept = hot.sum(axis=0)
        rows = [r for r in order if (kept[hot[r]] >= 2).all()]
        carved[rows[0] if rows else order[0]] = True
    return carved
