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

from .validate import Item


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
        roots = sorted({self.find(k) for k in keys})
        for other in roots[1:]:
            self.parent[other] = roots[0]


def _keys(item: Item) -> list[str]:
    return item.groups or [f"record:{item.source}:{item.index}"]


def split(items: Sequence[Item], fraction: float, seed: int = 0, followers: Sequence[Item] = ()) -> Split:
    """Split ``items`` (and place ``followers``) with about ``fraction`` of them in validation."""
    groups = _Groups()
    for item in items:
        groups.union(_keys(item))
    val_roots: set[str] = set()
    if fraction > 0:
        val_roots = _pick(items, followers, groups, fraction, seed)
    return _place(items, followers, val_roots, groups)


def _pick(items: Sequence[Item], followers: Sequence[Item], groups: _Groups, fraction: float,
          seed: int) -> set[str]:
    """Components for validation: seeded order, until they weigh ``fraction`` (one stays for training)."""
    weight: dict[str, float] = defaultdict(float)
    for item in items:
        weight[groups.find(_keys(item)[0])] += 1
    for item in followers:
        for key in _keys(item):
            weight[groups.find(key)] += 1 / len(_keys(item))
    order = sorted(weight)
    random.Random(seed).shuffle(order)
    target = max(1.0, fraction * (len(items) + len(followers)))
    picked: set[str] = set()
    held = 0.0
    for root in order[:-1]:
        if held >= target:
            break
        picked.add(root)
        held += weight[root]
    return picked


def _place(items: Sequence[Item], followers: Sequence[Item], val_roots: set[str], groups: _Groups) -> Split:
    out = Split([], [], [])
    for item in items:
        (out.val if groups.find(_keys(item)[0]) in val_roots else out.train).append(item)
    for item in followers:
        sides = {groups.find(k) in val_roots for k in _keys(item)}
        if len(sides) > 1:
            out.straddling.append(item)
        else:
            (out.val if sides.pop() else out.train).append(item)
    return out
