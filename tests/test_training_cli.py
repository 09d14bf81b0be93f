"""``qalign train`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.models.tiny import build_tiny_model
from toolkit.training import read_record

runner = CliRunner()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    records = []
    for i, word in enumerate(("good", "bad", "fair", "excellent")):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(root / f"img/{i}.png")
        records.append(
            {
                "id": str(i),
                "image": f"{i}.png",
                "conversations": [
                    {"from": "human", "value": "Rate the quality of this image.\n<|image|>"},
                    {"from": "gpt", "value": f"The quality of the image is {word}."},
                ],
            }
        )
    (root / "conv.json").write_text(json.dumps(records))
    return {"root": root, "model": build_tiny_model(root / "tiny"), "data": root / "conv.json"}


def test_help_lists_the_options() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "240"})  # long option names in full
    assert result.exit_code == 0
    for option in (
        "--model",
        "--data",
        "--images",
        "--out",
        "--mode",
        "--epochs",
        "--max-steps",
        "--lr",
        "--batch-size",
        "--seed",
        "--config",
        "--recipe",
        "--loss",
        "--weights",
        "--save-every",
        "--resume",
        "--gradient-checkpointing",
        "--best-metric",
    ):
        assert option in result.output


def test_every_setting_is_an_option() -> None:
    from dataclasses import fields

    import typer

    from toolkit.cli.ablate import PER_ARM
    from toolkit.training import TrainConfig

    def flags(name: str) -> set[str]:
        command = typer.main.get_command(app).commands[name]  # type: ignore[attr-defined]
        return {f for p in command.params for f in (*p.opts, *p.secondary_opts)}

    train, ablate = flags("train"), flags("ablate")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in train, f.name
        if isinstance(f.metadata["default"], bool):
            assert "--no-" + flag[2:] in train
        if f.name not in PER_ARM and f.name != "max_steps":  # ablate's --steps
            assert flag in ablate, f.name
    # The names users' scripts know, also those that are not field names.
    assert {"--config", "--progress", "--no-progress"} <= train
    assert {"--train", "--test", "--images", "--test-images", "--out", "--loss", "--steps", "--n-boot"} <= ablate


def test_option_values_become_settings() -> None:
    from pathlib import Path as P

    from toolkit.cli.train import TRAIN_OPTIONS
    from toolkit.cli.train_options import config_values

    given = {
        "data": [P("a.json")],
        "images": [P("img/"), P("more")],
        "lora_target_modules": ["q_proj"],
        "trainable_modules": ["merger"],
        "weights": "2,1",
        "out": P("run"),
        "lora_r": 8,
        "resume": False,
        "lr": None,
        "frozen_modules": [],
    }
    assert config_values(TRAIN_OPTIONS, given) == {
        "data": "a.json",
        "images": ["img", "more"],
        "lora_target_modules": "q_proj",
        "trainable_modules": ["merger"],
        "weights": [2.0, 1.0],
        "out": "run",
        "lora_r": 8,
        "resume": False,
    }


def test_a_tiny_lora_run(setup: dict[str, Path]) -> None:
    out = setup["root"] / "adapter"
    args = [
        "train",
        "--model",
        str(setup["model"]),
        "--data",
        str(setup["data"]),
        "--images",
        str(setup["root"] / "img"),
        "--out",
        str(out),
        "--mode",
        "lora",  # asked for: the untrained tiny model defaults to full
        "--max-steps",
        "2",
        "--batch-size",
        "2",
        "--lr",
        "1e-3",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--cpu-threads",
        "1",
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 step(s)" in result.output and "adapter saved" in result.output
    assert (out / "adapter_config.json").is_file()
    record = read_record(out)
    assert record["config"]["seed"] == 3 and record["config"]["mode"] == "lora" and len(record["result"]["losses"]) == 2


def test_config_file_with_command_line_override(setup: dict[str, Path]) -> None:
    out = setup["root"] / "full"
    cfg = setup["root"] / "recipe.yaml"
    cfg.write_text(
        f"model: {setup['model']}\ndata: {setup['data']}\nimages: {setup['root'] / 'img'}\nout: {out}\n"
        "mode: full\nmax_steps: 5\nbatch_size: 4\nlr: 0.001\ndevice: cpu\ncpu_threads: 1\n"
    )
    result = runner.invoke(app, ["train", "--config", str(cfg), "--max-steps", "1"])
    assert result.exit_code == 0, result.output
    assert "model saved" in result.output
    record = read_record(out)
    assert record["config"]["max_steps"] == 1 and record["config"]["batch_size"] == 4
    assert (out / "model.safetensors").is_file()


def test_a_recipe_file_with_command_line_overrides(setup: dict[str, Path]) -> None:
    # The file names the recipe and changes one of its settings; the command line sets another one
    # to the plain default (16), which must still win over the recipe's 128.
    out = setup["root"] / "hf-lora"
    cfg = setup["root"] / "hf-lora.yaml"
    cfg.write_text(
        f"recipe: hf-lora\nmodel: {setup['model']}\ndata: {setup['data']}\nimages: {setup['root'] / 'img'}\n"
        f"out: {out}\nlora_r: 4\nmax_steps: 3\nbatch_size: 2\ndevice: cpu\ncpu_threads: 1\n"
    )
    result = runner.invoke(
        app, ["train", "--config", str(cfg), "--lora-alpha", "16", "--max-steps", "1", "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    config = read_record(out)["config"]
    assert (config["recipe"], config["lora_r"], config["lora_alpha"], config["max_steps"]) == ("hf-lora", 4, 16, 1)
    # The rest is the recipe's, recorded as resolved values.
    assert (config["lr"], config["dtype"], config["trainable_modules"]) == (
        2e-4,
        "auto",
        ["multi_modal_projector", "connector", "merger"],
    )
    assert json.loads((out / "adapter_config.json").read_text())["lora_alpha"] == 16


def test_missing_data_is_a_clear_error(setup: dict[str, Path]) -> None:
    result = runner.invoke(app, ["train", "--out", str(setup["root"] / "x")])
    assert result.exit_code != 0
    assert "--data" in str(result.exception)


def test_two_data_sets_with_weights_and_a_resumed_run(setup: dict[str, Path]) -> None:
    # The second data set lives in another folder with its own prompts.
    other = setup["root"] / "aesthetics"
    (other / "img").mkdir(parents=True)
    records = json.loads(setup["data"].read_text())
    for r in records:
        Image.open(setup["root"] / "img" / r["image"]).save(other / "img" / r["image"])
        r["conversations"][0]["value"] = "Rate the aesthetics of this image.\n<|image|>"
        r["conversations"][1]["value"] = r["conversations"][1]["value"].replace("quality", "aesthetics")
    (other / "conv.json").write_text(json.dumps(records))
    out = setup["root"] / "mixed"
    args = [
        "train",
        "--model",
        str(setup["model"]),
        "--data",
        str(setup["data"]),
        "--data",
        str(other / "conv.json"),
        "--images",
        str(setup["root"] / "img"),
        "--images",
        str(other / "img"),
        "--weights",
        "3,1",
        "--out",
        str(out),
        "--mode",
        "full",
        "--loss",
        "soft",
        "--max-steps",
        "2",
        "--batch-size",
        "4",
        "--save-every",
        "1",
        "--device",
        "cpu",
        "--cpu-threads",
        "1",
        "--no-progress",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "examples drawn per data set" in result.output
    record = read_record(out)
    assert record["config"]["weights"] == [3.0, 1.0] and record["config"]["loss"] == "soft"
    assert record["result"]["draws"] == [6, 2]  # 8 draws per epoch, 3:1
    assert (out / "checkpoints" / "step-000001").is_dir()
    resumed = runner.invoke(app, args + ["--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "resumed from" in resumed.output and "step-000001" in resumed.output
    assert read_record(out)["result"]["losses"] == record["result"]["losses"]


def test_bad_weights_and_recipes_are_clear_errors(setup: dict[str, Path]) -> None:
    base = ["train", "--model", str(setup["model"]), "--data", str(setup["data"]), "--out", str(setup["root"] / "y")]
    result = runner.invoke(app, base + ["--weights", "two"])
    assert result.exit_code != 0 and "--weights" in str(result.exception)
    result = runner.invoke(
        app,
        base
        + [
            "--recipe",
            "onealign-lora",
            "--max-steps",
            "1",
            "--images",
            str(setup["root"] / "img"),
            "--device",
            "cpu",
            "--no-progress",
        ],
    )
    assert result.exit_code != 0 and "for OneAlign" in str(result.exception)
