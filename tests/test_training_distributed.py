"""The training command in two processes (DDP over gloo on the CPU, as ``torchrun`` starts it):
data sharding, gradient all-reduce, draw counts, checkpoints written by all processes, and an
exact resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from toolkit.models.tiny import build_tiny_model
from toolkit.training import read_record

from fixtures_training import write_toy


def _launch(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "toolkit.cli",
        "train",
        *args,
    ]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_two_processes_train_checkpoint_and_resume_exactly(tmp_path: Path) -> None:
    model = build_tiny_model(tmp_path / "tiny")
    data = write_toy(tmp_path, "train", 24, seed=1, votes=True)
    out = tmp_path / "out"
    args = [
        "--model",
        str(model),
        "--data",
        str(data),
        "--out",
        str(out),
        "--mode",
        "lora",
        "--loss",
        "soft",
        "--max-steps",
        "4",
        "--batch-size",
        "4",
        "--grad-accum",
        "2",
        "--save-every",
        "2",
        "--lr",
        "1e-2",
        "--device",
        "cpu",
        "--cpu-threads",
        "1",
        "--no-progress",
    ]
    first = _launch(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("adapter saved") == 1  # only the main process reports
    record = read_record(out)
    result = record["result"]
    assert result["samples"] == 4 * 2 * 4 * 2 and result["draws"] == [64]  # steps x accum x batch x processes
    checkpoint = out / "checkpoints" / "step-000002"
    assert {"rng_0.pt", "rng_1.pt", "trainable.safetensors", "trainer_state.json"} <= {
        p.name for p in checkpoint.iterdir()
    }

    # Resuming from step 2 recomputes steps 3-4 in both processes: the same losses, bit for bit.
    again = _launch(args + ["--resume"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    resumed = read_record(out)["result"]
    assert resumed["resumed_from"].endswith("step-000002")
    assert resumed["losses"] == result["losses"]
    assert json.loads((checkpoint / "trainer_state.json").read_text())["state"]["num_processes"] == 2
