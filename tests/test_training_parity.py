"""The training code path (data loading, collation, loss functions) against the Q-Align reference.

``expected_training.json`` holds what the reference training code computes for three records;
here the same records go through exactly what ``train()`` uses: ``load_run_data`` on the
conversation file, the loop's ``Collate`` and the loss from ``get_loss``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from toolkit.models.loading import load_backbone
from toolkit.training import TrainConfig
from toolkit.training.loop import load_run_data
from toolkit.training.lora import prepare_trainable
from toolkit.training.losses import Collate, get_loss

from conftest import ONEALIGN_TINY as FIXTURE

ATOL = 1e-4


@pytest.fixture(scope="module")
def expected() -> dict:
    return json.loads((FIXTURE / "expected_training.json").read_text())


@pytest.fixture(scope="module")
def setup() -> dict:
    torch.set_num_threads(1)
    config = TrainConfig(model=str(FIXTURE), data=str(FIXTURE / "training_records.json"), mode="full", device="cpu")
    data, _ = load_run_data(config)
    backbone = load_backbone(FIXTURE)
    index = {r.id: i for i, r in enumerate(data.records)}
    return {"config": config, "data": data, "backbone": backbone, "index": index}


def _batch(setup: dict, ids: list[str], loss: str = "ce") -> dict:
    examples = [setup["data"][setup["index"][rid]] for rid in ids]
    return Collate(setup["backbone"], loss)(examples)


def test_per_record_losses_and_tokens(setup: dict, expected: dict) -> None:
    backbone, loss_fn = setup["backbone"], get_loss("ce")
    for rid in expected["records_order"]:
        ref = expected["records"][rid]
        batch = _batch(setup, [rid])
        assert batch["input_ids"][0].tolist() == ref["input_ids"], rid
        assert batch["labels"][0].tolist() == ref["labels"], rid
        with torch.no_grad():
            loss = loss_fn(backbone.model, backbone, batch)
        assert loss.item() == pytest.approx(ref["loss"], abs=ATOL), rid


@pytest.mark.parametrize("key", ["batch_ab", "batch_ac"])
def test_batch_loss_padding_and_masking(setup: dict, expected: dict, key: str) -> None:
    ref = expected[key]
    batch = _batch(setup, ref["records"])
    assert batch["input_ids"].tolist() == ref["input_ids"]
    assert batch["labels"].tolist() == ref["labels"]
    assert batch["attention_mask"].long().tolist() == ref["attention_mask"]
    with torch.no_grad():
        loss = get_loss("ce")(setup["backbone"].model, setup["backbone"], batch)
    assert loss.item() == pytest.approx(ref["loss"], abs=ATOL)


def test_gradient_norm_of_record_a(setup: dict, expected: dict) -> None:
    ref = expected["grad_norm_record_a"]
    backbone = setup["backbone"]
    model = prepare_trainable(backbone.model, setup["config"])  # full mode: every parameter trains
    params = [p for p in model.parameters() if p.requires_grad]
    assert len(params) == ref["num_parameter_tensors"]
    model.train()
    try:
        model.zero_grad(set_to_none=True)
        get_loss("ce")(model, backbone, _batch(setup, [ref["record"]])).backward()
        # What the loop's clipping reports as the gradient norm before clipping.
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=math.inf)
        assert norm.item() == pytest.approx(ref["l2_all_parameters"], rel=1e-4)
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()


def test_soft_label_loss_on_one_hot_targets(setup: dict, expected: dict) -> None:
    # Without level_probs the target is one-hot on the answer's level: the KL is -log of the
    # level's probability among the five (from the reference's teacher-forced level logits), and
    # the rest is the mean cross-entropy of the eight other answer tokens.
    backbone = setup["backbone"]
    for rid in expected["records_order"]:
        ref = expected["records"][rid]
        tf = ref["teacher_forced_level"]
        k = ref["supervised_pieces"].index("▁" + tf["level_word"])
        others = [ce for i, ce in enumerate(ref["per_token_ce"]) if i != k]
        want = -math.log(tf["probs"][["excellent", "good", "fair", "poor", "bad"].index(tf["level_word"])]) + sum(
            others
        ) / len(others)
        batch = _batch(setup, [rid], loss="soft")
        with torch.no_grad():
            got = get_loss("soft")(backbone.model, backbone, batch)
        assert got.item() == pytest.approx(want, abs=ATOL), rid
