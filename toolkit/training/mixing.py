"""Several data sets in one run (multi-task training, as OneAlign mixes image quality,
aesthetics and video quality) and the order in which examples are drawn.

Each data set keeps its own records and prompts; :class:`MixedTrainingData` only puts them
behind one index. :class:`MixtureSampler` decides the order: an epoch is as many draws as there
are records in all data sets together, split between the data sets in proportion to their
sampling weights. Within a data set, records come from a stream of random permutations, so a
data set drawn more often than it has records cycles through all of them before repeating any,
and one drawn less often still sees different records from epoch to epoch.

The order of an epoch is a pure function of ``(seed, epoch)``: a resumed run, or every
process of a multi-GPU run, computes the same order without sharing any generator state.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from toolkit.errors import InputError
from toolkit.models.base import Task, TrainingExample
from toolkit.training.data import TrainingData

_SHUFFLE, _STREAM = 0, 1  # tags that keep the two kinds of random streams apart


class MixedTrainingData(Sequence[TrainingExample]):
    """Data sets concatenated behind one index; ``meta["dataset"]`` says where an example came from."""

    def __init__(self, parts: Sequence[TrainingData]) -> None:
        if not parts:
            raise InputError("no training data sets")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts]).tolist()

    @property
    def sizes(self) -> list[int]:
        return [len(p) for p in self.parts]

    @property
    def source(self) -> str:
        return " + ".join(p.source for p in self.parts)

    def __len__(self) -> int:
        return self.offsets[-1]

    def locate(self, index: int) -> tuple[int, int]:
        """(data set, index within it) of a global index."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} examples")
        part = bisect.bisect_right(self.offsets, index) - 1
        return part, index - self.offsets[part]

    def __getitem__(self, index: int) -> TrainingExample:  # type: ignore[override]
        part, local = self.locate(int(index))
        example = self.parts[part][local]
        example.meta["dataset"] = part
        return example

    def targets(self) -> list[float | None]:
        return [t for p in self.parts for t in p.targets()]

    def tasks(self) -> list[Task]:
        return [t for p in self.parts for t in p.tasks()]

    @property
    def records(self) -> list[Any]:
        return [r for p in self.parts for r in p.records]


def draws_per_epoch(sizes: Sequence[int], weights: Sequence[float] | None) -> list[int]:
    """How many examples each data set contributes to one epoch of ``sum(sizes)`` draws.

    Proportional to ``weights`` (default: to the sizes, i.e. every record once), rounded by
    largest remainder so that the counts add up exactly.
    """
    sizes = [int(n) for n in sizes]
    total = sum(sizes)
    if any(n < 1 for n in sizes):
        raise InputError(f"every data set needs at least one record, got sizes {sizes}")
    w = np.asarray(sizes if weights is None else weights, dtype=float)
    if w.shape != (len(sizes),) or (w < 0).any() or not w.sum() > 0:
        raise InputError(
            f"need one non-negative weight per data set ({len(sizes)}) with a positive sum, got {weights!r}"
        )
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    # Ties go to the earlier data set: argsort is stable on the negated remainders.
    for i in np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]:
        counts[i] += 1
    return counts.tolist()


class MixtureSampler:
    """Global indices into a :class:`MixedTrainingData`, epoch by epoch (a DataLoader sampler)."""

    def __init__(self, sizes: Sequence[int], weights: Sequence[float] | None = None, seed: int = 0) -> None:
        self.sizes = [int(n) for n in sizes]
        self.counts = draws_per_epoch(self.sizes, weights)
        self.offsets = np.cumsum([0] + self.sizes)[:-1]
        self.seed = int(seed) % 2**63  # numpy seed sequences take non-negative integers
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return sum(self.counts)

    def __iter__(self) -> Iterator[int]:
        return iter(self.order(self.epoch).tolist())

    def order(self, epoch: int) -> np.ndarray:
        """The global indices drawn in ``epoch``, in order."""
        chosen = [self.offsets[i] + self._stream(i, epoch * c, c) for i, c in enumerate(self.counts) if c > 0]
        indices = np.concatenate(chosen)
        return indices[np.random.default_rng([self.seed, _SHUFFLE, epoch]).permutation(len(indices))]

    def _stream(self, part: int, start: int, count: int) -> np.ndarray:
        """Positions ``start .. start + count`` of data set ``part``'s endless chain of permutations."""
        n = self.sizes[part]
        first, last = start // n, (start + count - 1) // n
        blocks = [np.random.default_rng([self.seed, _STREAM, part, b]).permutation(n) for b in range(first, last + 1)]
        chain = np.concatenate(blocks)
        return chain[start - first * n : start - first * n + count]
