"""Frozen weights held in 16 bits under mixed precision: less memory, the same training."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import toolkit.training.loop as loop
from toolkit.models.loading import load_backbone
from toolkit.models.tiny import build_tiny_model
from toolkit.training import TrainConfig, train
from toolkit.training.precision import HalvedWeights, hold_frozen_weights_in_16bit

from conftest import ONEALIGN_TINY as ONEALIGN_FIXTURE
from fixtures_training import write_toy


def test_only_exact_frozen_linear_weights_are_halved() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(10, 8), nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 8), nn.Linear(8, 4))
    for p in model.parameters():
        p.requires_grad_(False)
    model[1].weight.data = model[1].weight.data.to(torch.bfloat16).float()  # from a bf16 checkpoint
    model[1].bias.data = model[1].bias.data.to(torch.float16).float()  # from an fp16 one
    model[3].weight.requires_grad_(True)  # trained: keeps float32 master weights
    model[3].weight.data = model[3].weight.data.to(torch.bfloat16).float()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}

    halved = hold_frozen_weights_in_16bit(model)
    assert model[1].weight.dtype == torch.bfloat16 and model[1].bias.dtype == torch.float16
    assert model[3].weight.dtype == torch.float32  # trainable
    assert model[4].weight.dtype == torch.float32  # random float32 values do not fit 16 bits
    assert model[0].weight.dtype == model[2].weight.dtype == torch.float32  # embedding, norm
    assert halved.bytes_saved == 2 * (64 + 8)
    halved.restore()
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32 and torch.equal(p, before[n])


def test_a_weight_tied_to_an_embedding_is_left_alone() -> None:
    emb, head = nn.Embedding(10, 8), nn.Linear(8, 10, bias=False)
    head.weight = emb.weight
    emb.weight.requires_grad_(False)
    emb.weight.data = emb.weight.data.to(torch.bfloat16).float()
    assert hold_frozen_weights_in_16bit(nn.ModuleDict({"emb": emb, "head": head})).params == []


@pytest.fixture(scope="module", params=["tiny", "onealign"])
def bf16_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A model with the weights a bf16 checkpoint would hold (the tiny LLaVA-style one, and the
    OneAlign fixture, trained with the OneAlign LoRA recipe's targets), and some data."""
    root = tmp_path_factory.mktemp("halved")
    if request.param == "tiny":
        source = build_tiny_model(root / "source", seed=0)
    else:
        source = root / "source"
        shutil.copytree(ONEALIGN_FIXTURE, source)
    backbone = load_backbone(source, dtype="float32", device="cpu")
    with torch.no_grad():
        for p in backbone.model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    backbone.model.save_pretrained(source)
    return {"root": root, "model": source, "train": write_toy(root, "train", 48, seed=1)}


def _run(paths: dict[str, Path], out: Path) -> tuple[list[float], object]:
    """Losses and held-out figures (computed under autocast with the halved weights)."""
    config = TrainConfig(
        model=str(paths["model"]),
        data=str(paths["train"]),
        out=str(out),
        mode="lora",
        dtype="bf16",
        device="cpu",
        cpu_threads=1,
        batch_size=8,
        max_steps=5,
        lr=1e-3,
        eval_data=str(paths["train"]),
    )
    result = train(config)
    return result.losses + [h.srcc for h in result.heldout], result


@pytest.mark.filterwarnings("ignore:.*randomly initialised tiny demonstration model")
def test_lora_under_bf16_trains_the_same_with_halved_frozen_weights(
    bf16_model: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[HalvedWeights] = []
    dtypes_during: list[set[torch.dtype]] = []
    real = loop.hold_frozen_weights_in_16bit

    def spy(model):  # type: ignore[no-untyped-def]
        halved = real(model)
        seen.append(halved)
        dtypes_during.append({p.dtype for p in halved.params})
        return halved

    monkeypatch.setattr(loop, "hold_frozen_weights_in_16bit", spy)
    halved_losses, result = _run(bf16_model, tmp_path / "halved")
    assert dtypes_during == [{torch.bfloat16}] and seen[0].params == []  # restored at the end
    assert all(p.dtype == torch.float32 for p in result.backbone.model.parameters())

    monkeypatch.setattr(loop, "hold_frozen_weights_in_16bit", lambda model: HalvedWeights())
    float32_losses, _ = _run(bf16_model, tmp_path / "float32")
    assert halved_losses == float32_losses  # bit-identical: autocast casts the same values


def test_full_mode_keeps_float32_weights(
    bf16_model: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full run saves the whole model, which must stay float32: nothing is halved there."""
    calls: list[int] = []
    monkeypatch.setattr(loop, "hold_frozen_weights_in_16bit", lambda model: calls.append(1) or HalvedWeights())
    config = TrainConfig(
        model=str(bf16_model["model"]),
        data=str(bf16_model["train"]),
        out=str(tmp_path / "full"),
        mode="full",
        dtype="bf16",
        device="cpu",
        cpu_threads=1,
        batch_size=8,
        max_steps=1,
    )
    train(config)
    assert calls == []
