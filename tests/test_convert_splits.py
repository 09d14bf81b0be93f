"""Content-grouped seeded splits and duplicate removal by file hash."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from toolkit.convert import assign_splits, drop_duplicates, labels_from_mos, load_labels, parse_fractions, split_table
from toolkit.errors import InputError

from conftest import NFLX_VOTES_CSV as NFLX


def test_parse_fractions():
    assert parse_fractions("train=0.8,test=0.2") == {"train": 0.8, "test": 0.2}
    assert parse_fractions(" train=0.7, val=0.1 ,test=0.2 ") == {"train": 0.7, "val": 0.1, "test": 0.2}
    for bad, message in (
        ("train=0.8,test=0.3", "sum to 1"),
        ("train=0.8,test", "name=fraction"),
        ("train=x,test=0.2", "non-numeric fraction 'x'"),
        ("train=0.5,train=0.5", "given twice"),
    ):
        with pytest.raises(InputError, match=message):
            parse_fractions(bad)


def test_no_group_in_two_splits_and_sizes_follow_fractions():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 200, size=3000).astype(str)  # 200 groups of uneven size
    splits = assign_splits(groups, {"train": 0.7, "val": 0.1, "test": 0.2}, seed=5)
    frame = pd.DataFrame({"group": groups, "split": splits})
    assert (frame.groupby("group")["split"].nunique() == 1).all()
    share = frame["split"].value_counts(normalize=True)
    largest_group = frame["group"].value_counts().max() / len(frame)
    for name, target in {"train": 0.7, "val": 0.1, "test": 0.2}.items():
        assert abs(share[name] - target) <= largest_group + 1e-9


def test_splits_are_deterministic_and_independent_of_row_order():
    groups = np.array([f"g{i % 37}" for i in range(500)])
    fractions = {"train": 0.8, "test": 0.2}
    a = assign_splits(groups, fractions, seed=1)
    np.testing.assert_array_equal(a, assign_splits(groups, fractions, seed=1))
    assert not np.array_equal(a, assign_splits(groups, fractions, seed=2))
    order = np.random.default_rng(3).permutation(len(groups))
    np.testing.assert_array_equal(assign_splits(groups[order], fractions, seed=1), a[order])


def test_split_table_on_netflix_sources():
    table = split_table(load_labels(NFLX), "train=0.7,test=0.3", seed=0)
    per_content = table.frame.groupby("group")["split"].nunique()
    assert (per_content == 1).all() and len(per_content) == 9
    assert set(table.frame["split"]) == {"train", "test"}
    assert set(table.by_split()) == {"train", "test"}


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_duplicates_removed_by_hash_before_splitting(tmp_path):
    root = tmp_path / "imgs"
    contents = {"a.png": b"A", "b.png": b"B", "a_copy.png": b"A", "c.png": b"C", "b_again.png": b"B", "a_3.png": b"A"}
    for name, data in contents.items():
        _write(root / name, data)
    frame = pd.DataFrame(
        {"path": list(contents), "mos": [1.0, 2.0, 3.0, 4.0, 5.0, 1.5], "group": ["x", "y", "z", "z", "w", "v"]}
    )
    table = labels_from_mos(frame, group="group")
    kept, report = drop_duplicates(table, root)
    assert kept.frame["path"].tolist() == ["a.png", "b.png", "c.png"]
    dropped = report.dropped
    assert dropped["path"].tolist() == ["a_copy.png", "b_again.png", "a_3.png"]
    assert dropped["duplicate_of"].tolist() == ["a.png", "b.png", "a.png"]
    assert (
        dropped["sha256"].iloc[0] == "559aead08264d5795d3909718cdd05abd49572e84fe55590eef31a88a08fdffd"
    )  # sha256(b"A")
    assert dropped["duplicate_of_mos"].tolist() == [1.0, 2.0, 1.0]
    split = split_table(kept, {"train": 0.5, "test": 0.5})
    assert len(split) == 3


def test_missing_file_is_named(tmp_path):
    table = labels_from_mos(pd.DataFrame({"path": ["gone.png", "b.png"], "mos": [1.0, 2.0]}))
    _write(tmp_path / "b.png", b"B")
    with pytest.raises(InputError, match="file not found: .*gone.png"):
        drop_duplicates(table, tmp_path)


def test_store_vote_frame_with_recorded_hashes(tmp_path):
    """The long vote table of a study database: hashes are known, no media needed to dedupe."""
    from toolkit.convert import convert

    rows = []
    items = {
        "a.png": ("h1", "scene1"),
        "b.png": ("h2", "scene1"),
        "a_again.png": ("h1", "scene2"),
        "c.png": ("h3", "scene3"),
    }
    for i, (item, (digest, group)) in enumerate(items.items()):
        for r, vote in enumerate((i % 5 + 1, (i + 1) % 5 + 1)):
            rows.append(
                {
                    "item": item,
                    "rater": f"r{r}",
                    "vote": vote,
                    "kind": "image",
                    "content_group": group,
                    "role": "test",
                    "sha256": digest,
                }
            )
    result = convert(pd.DataFrame(rows), tmp_path / "out", split="train=0.5,test=0.5", seed=0)
    assert result.duplicates.dropped[["path", "duplicate_of"]].values.tolist() == [["a_again.png", "a.png"]]
    frame = result.table.frame
    assert sorted(frame["path"]) == ["a.png", "b.png", "c.png"]
    assert (frame.groupby("group")["split"].nunique() == 1).all()
    assert frame.loc[frame["path"] == "a.png", "mos"].item() == 1.5
