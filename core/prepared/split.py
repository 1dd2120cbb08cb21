"""Train/validation split by group (dish, image), so that no group is in both splits.

Items sharing any group key form one component (union-find); whole components go
to validation, in a seeded random order, until it holds ``fraction`` of the items.
*Follower* items (multi-image questions, whose images belong to several dishes)
do not join components: they go where all their groups went, and are left out of
both splits when their groups straddle the two.
"""
from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Sequence

from .records import Item


@dataclass
class Split:
    """The two splits and the followers that could go in neither."""

    train: list[Item]
    val: list[Item]
    straddling: list[Item]


class _Groups:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, key: str) -> str:
        self.parent.setdefault(key, key)
        while self.parent[key] != key:
            self.parent[key] = self.parent[self.parent[key]]
            key = self.parent[key]
        return key

    def union(self, keys: Sequence[str]) -> None:
        roots = {self.find(k) for k in keys}
        if len(roots) > 1:
            low = min(roots)
            for other in roots - {low}:
                self.parent[other] = low


def _keys(item: Item) -> list[str]:
    return item.groups or [f"record:{item.source}:{item.index}"]


def split(items: Sequence[Item], fraction: float, seed: int = 0, followers: Sequence[Item] = ()) -> Split:
    """Split ``items`` (and place ``followers``) with about ``fraction`` of them in validation.

    Args:
        items: the usable items; those sharing any of their ``groups`` stay together (an item
            without groups is a group of its own).
        fraction: the share for validation, in ``[0, 1)``; ``0`` puts everything in training.
            At least one group is chosen when ``fraction > 0``, and one always stays for training.
        seed: seed of the (reproducible) order in which groups are chosen.
        followers: items placed after the split, where all their groups went.
    Returns:
        :class:`Split`: ``train`` and ``val`` in input order, and the followers whose groups
        straddle the two (``straddling``, in neither).
    """
    groups = _Groups()
    keys = [_keys(item) for item in items]
    for item_keys in keys:
        groups.union(item_keys)
    roots = [groups.find(item_keys[0]) for item_keys in keys]
    follower_roots = [[groups.find(key) for key in _keys(item)] for item in followers]
    val_roots: set[str] = set()
    if fraction > 0:
        val_roots = _pick(roots, follower_roots, fraction, seed)
    out = Split([], [], [])
    for item, root in zip(items, roots):
        (out.val if root in val_roots else out.train).append(item)
    for item, item_roots in zip(followers, follower_roots):
        sides = {root in val_roots for root in item_roots}
        if len(sides) > 1:
            out.straddling.append(item)
        else:
            (out.val if sides.pop() else out.train).append(item)
    return out


def _pick(roots: Sequence[str], follower_roots: Sequence[Sequence[str]], fraction: float, seed: int) -> set[str]:
    """Components for validation: seeded order, until they weigh ``fraction`` (one stays for training)."""
    weight: dict[str, float] = defaultdict(float)
    for root in roots:
        weight[root] += 1
    for item_roots in follower_roots:
        for root in item_roots:
            weight[root] += 1 / len(item_roots)
    order = sorted(weight)
    random.Random(seed).shuffle(order)
    target = max(1.0, fraction * (len(roots) + len(follower_roots)))
    picked: set[str] = set()
    held = 0.0
    for root in order[:-1]:
        if held >= target:
            break
        picked.add(root)
        held += weight[root]
    return picked
