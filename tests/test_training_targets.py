"""What each loss needs from a record: missing or out-of-scale targets fail before training, naming
the file and the record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from toolkit.errors import InputError
from toolkit.training import TrainConfig
from toolkit.training.data import check_targets, load_training_data
from toolkit.training.loop import load_run_data

from fixtures_training import write_toy


def _edited(tmp_path: Path, edit: dict[str, Any], index: int = 3, n: int = 20, votes: bool = False) -> Path:
    path = write_toy(tmp_path, "train", n, seed=0, votes=votes)
    records = json.loads(path.read_text())
    for key, value in edit.items():
        if key == "answer":
            records[index]["conversations"][1]["value"] = value
        elif value is None:
            records[index].pop(key, None)
        else:
            records[index][key] = value
    path.write_text(json.dumps(records))
    return path


def _check(path: Path, loss: str) -> None:
    load_run_data(TrainConfig(data=str(path), loss=loss))  # type: ignore[arg-type]


def test_ce_needs_a_level_word_in_every_answer(tmp_path: Path) -> None:
    path = _edited(tmp_path, {"answer": "The quality of the image is 3.2."})
    with pytest.raises(InputError, match=r"train\.json, record 'img/train_3\.png': the ce loss .* has none") as err:
        _check(path, "ce")
    assert "\n" not in str(err.value)
    # The score loss writes its score in place of the level word, so it needs one too.
    with pytest.raises(InputError, match=r"record 'img/train_3\.png': the score loss writes the score in place"):
        _check(path, "score")


@pytest.mark.parametrize("bad", ["nan", "inf", float("nan")])
def test_gt_score_must_be_a_finite_number(tmp_path: Path, bad: object) -> None:
    path = _edited(tmp_path, {"gt_score": bad})
    with pytest.raises(InputError, match=r"train\.json, record 3 \(id 'img/train_3\.png'\): gt_score .* not a finite"):
        load_training_data(path)


def test_score_loss_refuses_a_gt_score_off_the_scale_of_the_others(tmp_path: Path) -> None:
    path = _edited(tmp_path, {"gt_score": 77.4})  # the others are 1-5
    with pytest.raises(InputError, match=r"record 'img/train_3\.png': gt_score 77\.4 is outside the 1-5 scale of 19"):
        _check(path, "score")
    _check(path, "ce")  # ce ranks by gt_score only on held-out data; its targets are the level words
    # A data set on its own scale (every score 0-100) is mapped to 1-5 as before.
    records = json.loads(path.read_text())
    for r in records:
        r["gt_score"] = float(r["gt_score"]) * 20 if r["gt_score"] != 77.4 else 77.4
    path.write_text(json.dumps(records))
    _check(path, "score")


def test_score_loss_takes_its_target_from_the_level_without_gt_score(tmp_path: Path) -> None:
    path = _edited(tmp_path, {"gt_score": None})
    data = load_training_data(path)
    check_targets(data, "score")
    assert data.targets()[3] in (1, 2, 3, 4, 5)  # the answer's level stands in for the missing gt_score
    assert data.score_targets()[3] == float(data.targets()[3])  # type: ignore[arg-type]


def test_soft_loss_needs_level_probs_or_a_level_word(tmp_path: Path) -> None:
    path = _edited(tmp_path, {"answer": "The quality of the image is 3.2."})
    with pytest.raises(InputError, match=r"record 'img/train_3\.png': the soft-label loss needs level_probs"):
        _check(path, "soft")


@pytest.mark.parametrize(
    "probs", [[0.5, 0.5, 0.0, 0.0], [0.5, 0.6, -0.1, 0.0, 0.0], [0.2, 0.2, 0.2, 0.2, 0.3], [float("nan")] * 5]
)
def test_level_probs_are_five_non_negative_numbers_summing_to_one(tmp_path: Path, probs: list[float]) -> None:
    path = _edited(tmp_path, {"level_probs": probs}, votes=True)
    with pytest.raises(InputError, match=r"train\.json, record 3 .*level_probs must be five"):
        load_training_data(path)
