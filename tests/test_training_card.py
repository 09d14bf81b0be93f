"""The model card (README.md) that ``qalign train`` writes beside the adapter or model."""

from __future__ import annotations

import json
import os
import stat
import warnings
from pathlib import Path

import pytest

from toolkit.models.tiny import build_tiny_model
from toolkit.training import TrainConfig, train
from toolkit.training.output import model_card

from fixtures_training import write_toy


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("card")
    model, data = build_tiny_model(root / "tiny", seed=0), write_toy(root, "train", 24, seed=1)
    heldout = write_toy(root, "heldout", 16, seed=2)
    out = root / "adapter"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # LoRA on the random tiny model: a warning says it learns little
        train(
            TrainConfig(
                recipe="hf-lora",
                model=str(model),
                data=str(data),
                out=str(out),
                max_steps=2,
                batch_size=4,
                eval_data=str(heldout),
                eval_every=1,
                device="cpu",
                cpu_threads=1,
            )
        )
    return {"model": model, "data": data, "heldout": heldout, "out": out}


def test_the_adapter_folder_has_a_filled_card_not_peft_s_template(lora_run: dict[str, Path]) -> None:
    out = lora_run["out"]
    card = (out / "README.md").read_text()
    record = json.loads((out / "qalign_train.json").read_text())
    assert "More Information Needed" not in card  # PEFT's template, written by save_pretrained
    assert card.startswith("---\nlibrary_name: peft\n")
    assert f"A LoRA adapter for `{lora_run['model']}`" in card
    assert "| recipe | `hf-lora` |" in card and "| loss | `ce`:" in card
    assert "| optimizer steps | 2 |" in card and "| learning rate (peak) | 0.0002 |" in card
    assert f"| `{lora_run['data']}` | 24 | {record['result']['draws'][0]} |" in card  # source, items, examples drawn
    assert f"Held-out set, not trained on: `{lora_run['heldout']}` (16 items)." in card

    final = record["result"]["heldout"][-1]
    assert final["step"] == 2 and final["srcc"] is not None
    assert f"At step 2: SRCC {final['srcc']:.4g}, PLCC {final['plcc']:.4g}" in card
    assert "| step | SRCC | PLCC | loss | KL | items |" in card and card.count("| 16 |") == 3  # steps 0, 1 and 2
    assert f"qalign score IMAGES... --model {lora_run['model']} --adapter {out} --out scores.csv" in card
    umask = os.umask(0o022)
    os.umask(umask)
    # safetensors writes the weights 0600; the output folder gives them the umask's mode like the rest
    assert stat.S_IMODE((out / "adapter_model.safetensors").stat().st_mode) == 0o666 & ~umask

    best = (out / "best" / "README.md").read_text()
    step = record["result"]["best"]["step"]
    assert f"the run's copy of the model at step {step}" in best
    assert f"--adapter {out / 'best'}" in best


def test_a_full_model_card_with_item_counts_and_no_held_out_set() -> None:
    record = {
        "base_model": "q-future/one-align",
        "config": {
            "mode": "full",
            "recipe": "onealign-full",
            "loss": "soft",
            "data": ["koniq.json", "spaq.json"],
            "weights": [2, 1],
            "lr": None,
            "batch_size": 4,
            "grad_accum": 8,
            "dtype": "bf16",
            "gradient_checkpointing": True,
            "out": "runs/full",
        },
        "result": {"output_dir": "runs/full", "steps": 500, "draws": [10_000, 5_000], "heldout": []},
    }
    card = model_card(record, data_sizes=[7058, 8000])
    assert "base_model: q-future/one-align\nlibrary_name: transformers\n" in card
    assert "A full fine-tune of `q-future/one-align`" in card
    assert "| `koniq.json` | 7,058 | 10,000 | 2 | beside the data |" in card
    assert "15,058 items in all." in card
    assert "| learning rate (peak) | 2e-05 |" in card  # the full mode's default rate, not "None"
    assert "| precision | bf16, gradient checkpointing |" in card
    assert "KL divergence to the items' vote distributions" in card
    assert "no held-out set" in card
    assert "qalign score IMAGES... --model runs/full --out scores.csv" in card and "--adapter" not in card
