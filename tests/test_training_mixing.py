"""Several data sets in one run: sampling weights, per-data-set prompts and media folders."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from toolkit.errors import InputError
from toolkit.models.tiny import build_tiny_model
from toolkit.training import MixtureSampler, TrainConfig, load_run_data, train
from toolkit.training.mixing import draws_per_epoch

from fixtures_training import write_toy


def test_draws_per_epoch_follow_the_weights() -> None:
    assert draws_per_epoch([10, 30], None) == [10, 30]  # default: every record once
    assert draws_per_epoch([10, 30], [2, 1]) == [27, 13]  # 40 draws split 2:1, largest remainder
    assert draws_per_epoch([10, 30], [1, 1]) == [20, 20]
    assert draws_per_epoch([5, 5, 5], [1, 0, 1]) == [8, 0, 7]
    with pytest.raises(InputError, match="weight"):
        draws_per_epoch([10, 30], [1])


def test_sampler_counts_cycles_and_is_a_function_of_seed_and_epoch() -> None:
    sampler = MixtureSampler([10, 30], [3, 1], seed=4)
    orders = [sampler.order(e) for e in range(4)]
    for order in orders:
        assert len(order) == 40
        by_set = Counter(int(i >= 10) for i in order)
        assert by_set == {0: 30, 1: 10}  # 3:1 of 40 draws, whatever the sizes are
    # The small data set, drawn 3x its size per epoch, cycles through whole permutations.
    for order in orders:
        assert Counter(order[order < 10].tolist()) == {i: 3 for i in range(10)}
    # The large one, drawn a third of its size per epoch, sees new records every epoch.
    large = np.concatenate([o[o >= 10] for o in orders[:3]])
    assert sorted(large.tolist()) == list(range(10, 40))
    assert not np.array_equal(orders[0], orders[1])
    again = MixtureSampler([10, 30], [3, 1], seed=4)
    again.set_epoch(2)
    assert list(again) == orders[2].tolist()
    assert not np.array_equal(MixtureSampler([10, 30], [3, 1], seed=5).order(2), orders[2])


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mix")
    # Each data set in its own folder, with its own prompts.
    return {
        "model": build_tiny_model(root / "tiny"),
        "quality": write_toy(root / "q", "quality", 24, seed=1),
        "aesthetics": write_toy(root / "a", "aesthetics", 8, seed=2, task="aesthetics"),
        "root": root,
    }


def test_records_keep_their_prompts_and_media_folders(two_tasks: dict[str, Path]) -> None:
    config = TrainConfig(data=[str(two_tasks["quality"]), str(two_tasks["aesthetics"])], weights=[1, 1])
    data, _ = load_run_data(config)
    assert data.sizes == [24, 8] and len(data) == 32
    q, a = data[0], data[24]
    assert "quality" in q.question and q.meta["dataset"] == 0
    assert "aesthetics" in a.question and a.answer.startswith("The aesthetics") and a.meta["dataset"] == 1
    assert data.tasks()[24] == "aesthetics"
    with pytest.raises(InputError, match="one per data set"):
        TrainConfig(data=[str(two_tasks["quality"]), str(two_tasks["aesthetics"])], weights=[1, 2, 3])


def test_a_run_draws_the_data_sets_in_the_weights_ratio(two_tasks: dict[str, Path]) -> None:
    data = [str(two_tasks["quality"]), str(two_tasks["aesthetics"])]
    # 32 draws per epoch split 3:1 between 24 quality and 8 aesthetics records: 24 and 8 by
    # size, but weights 1:1 make it 16 and 16 (each aesthetics record twice per epoch).
    result = train(
        TrainConfig(
            model=str(two_tasks["model"]),
            data=data,
            weights=[1, 1],
            out=str(two_tasks["root"] / "w"),
            mode="full",
            lr=1e-3,
            max_steps=8,
            batch_size=8,
            device="cpu",
            cpu_threads=1,
        )
    )
    assert result.draws == [32, 32]  # two epochs of 16 + 16
    record = json.loads((two_tasks["root"] / "w" / "qalign_train.json").read_text())
    assert record["config"]["weights"] == [1.0, 1.0] and record["result"]["draws"] == [32, 32]
    by_size = train(
        TrainConfig(
            model=str(two_tasks["model"]),
            data=data,
            out=str(two_tasks["root"] / "s"),
            mode="full",
            lr=1e-3,
            max_steps=4,
            batch_size=8,
            device="cpu",
            cpu_threads=1,
        )
    )
    assert by_size.draws == [24, 8]
