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
        records.append({"id": str(i), "image": f"{i}.png",
                        "conversations": [{"from": "human", "value": "Rate the quality of this image.\n<|image|>"},
                                          {"from": "gpt", "value": f"The quality of the image is {word}."}]})  # fmt: skip
    (root / "conv.json").write_text(json.dumps(records))
    return {"root": root, "model": build_tiny_model(root / "tiny"), "data": root / "conv.json"}


def test_help_lists_the_options() -> None:
    result = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "240"})  # long option names in full
    assert result.exit_code == 0
    for option in ("--model", "--data", "--images", "--out", "--mode", "--epochs", "--max-steps", "--lr",
                   "--batch-size", "--seed", "--config", "--recipe", "--loss", "--weights", "--save-every",
                   "--resume", "--gradient-checkpointing", "--best-metric"):  # fmt: skip
        assert option in result.output


def test_a_tiny_lora_run(setup: dict[str, Path]) -> None:
    out = setup["root"] / "adapter"
    args = ["train", "--model", str(setup["model"]), "--data", str(setup["data"]), "--images", str(setup["root"] / "img"),
            "--out", str(out), "--max-steps", "2", "--batch-size", "2", "--lr", "1e-3", "--seed", "3",
            "--device", "cpu", "--cpu-threads", "1", "--no-progress"]  # fmt: skip
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
    args = ["train", "--model", str(setup["model"]), "--data", str(setup["data"]), "--data", str(other / "conv.json"),
            "--images", str(setup["root"] / "img"), "--images", str(other / "img"), "--weights", "3,1",
            "--out", str(out), "--mode", "full", "--loss", "soft", "--max-steps", "2", "--batch-size", "4",
            "--save-every", "1", "--device", "cpu", "--cpu-threads", "1", "--no-progress"]  # fmt: skip
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
    result = runner.invoke(app, base + ["--recipe", "onealign-lora", "--max-steps", "1", "--images", str(setup["root"] / "img"),
                                        "--device", "cpu", "--no-progress"])  # fmt: skip
    assert result.exit_code != 0 and "for OneAlign" in str(result.exception)
