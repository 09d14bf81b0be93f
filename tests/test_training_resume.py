"""Checkpoints, resuming after a kill, and the best held-out model."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from toolkit.errors import InputError
from toolkit.models.loading import load_backbone
from toolkit.models.tiny import build_tiny_model
from toolkit.training import TrainConfig, TrainProgress, read_record, train

from fixtures_training import write_toy


class Killed(Exception):
    """Stands for the process being killed in the middle of a run."""


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resume")
    return {
        "root": root,
        "model": build_tiny_model(root / "tiny"),
        "train": write_toy(root, "train", 40, seed=1),
        "heldout": write_toy(root, "heldout", 16, seed=2),
    }


def _config(toy: dict[str, Path], out: Path, mode: str, **kw: object) -> TrainConfig:
    # Dropout, accumulation and epochs that end inside an optimizer step: everything that makes
    # a resumed run drift if any state is lost (40 records in batches of 6: 7 per epoch).
    values: dict[str, object] = dict(
        model=str(toy["model"]),
        data=str(toy["train"]),
        out=str(out),
        mode=mode,
        lr=5e-3,
        max_steps=10,
        batch_size=6,
        grad_accum=2,
        lora_dropout=0.1,
        trainable_modules=["multi_modal_projector"],
        eval_data=str(toy["heldout"]),
        save_every=3,
        keep_checkpoints=2,
        device="cpu",
        cpu_threads=1,
    )
    values.update(kw)
    return TrainConfig(**values)  # type: ignore[arg-type]


def _kill_at(step: int):
    def progress(p: TrainProgress) -> None:
        if p.step == step:
            raise Killed()

    return progress


@pytest.mark.parametrize("mode", ["lora", "full"])
def test_a_killed_run_resumes_to_the_same_result(toy: dict[str, Path], mode: str) -> None:
    whole = train(_config(toy, toy["root"] / f"whole-{mode}", mode))
    out = toy["root"] / f"killed-{mode}"
    with pytest.raises(Killed):
        train(_config(toy, out, mode), progress=_kill_at(8))  # after the checkpoint of step 6
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000003", "step-000006"]
    assert not (out / "qalign_train.json").exists()  # an unfinished run claims nothing
    # Checkpoint files get the umask's modes (safetensors alone would leave the weights 0600).
    umask = os.umask(0)
    os.umask(umask)
    weights = next((out / "checkpoints" / "step-000006").glob("*.safetensors"))
    assert stat.S_IMODE(weights.stat().st_mode) == 0o666 & ~umask

    resumed = train(_config(toy, out, mode, resume=True))
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("step-000006")
    assert resumed.losses == whole.losses
    assert [h.to_dict() for h in resumed.heldout] == [h.to_dict() for h in whole.heldout]
    assert resumed.draws == whole.draws and resumed.samples == whole.samples
    a, b = dict(whole.backbone.model.named_parameters()), dict(resumed.backbone.model.named_parameters())
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert read_record(out)["result"]["resumed_from"] == resumed.resumed_from


def test_best_model_is_kept_and_loads(toy: dict[str, Path]) -> None:
    out = toy["root"] / "best-run"
    result = train(_config(toy, out, "full", max_steps=9, lr=2e-3, save_every=3, keep_checkpoints=1))
    evaluated = [h for h in result.heldout if h.step > 0]
    assert [h.step for h in evaluated] == [3, 6, 9]
    best = max(evaluated, key=lambda h: h.srcc)
    assert result.best == {"step": best.step, "metric": "srcc", "value": best.srcc}
    record = read_record(out / "best")
    assert record["result"]["step"] == best.step and record["result"]["heldout"]["srcc"] == best.srcc
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000006"]  # keep_checkpoints=1
    load_backbone(out / "best")  # a complete model folder
    # The final model is at the top level, beside the run's subfolders.
    assert {"model.safetensors", "qalign_train.json", "best", "checkpoints"} <= {p.name for p in out.iterdir()}


def test_resume_refuses_changed_settings_and_starts_fresh_without_checkpoint(toy: dict[str, Path]) -> None:
    out = toy["root"] / "guarded"
    with pytest.raises(Killed):
        train(_config(toy, out, "full", max_steps=4, eval_data=None), progress=_kill_at(4))
    with pytest.raises(InputError, match="lr"):
        train(_config(toy, out, "full", max_steps=4, eval_data=None, lr=1e-2, resume=True))
    # Where, how fast, and how often to evaluate may change.
    done = train(_config(toy, out, "full", max_steps=4, eval_data=None, resume=True, log_every=2, cpu_threads=1))
    assert done.resumed_from is not None and len(done.losses) == 4

    fresh = train(_config(toy, toy["root"] / "nothing-yet", "full", max_steps=2, eval_data=None, resume=True))
    assert fresh.resumed_from is None and len(fresh.losses) == 2
    # A fresh run in a previous run's folder drops that run's checkpoints.
    train(_config(toy, out, "full", max_steps=2, eval_data=None, save_every=0))
    assert not (out / "checkpoints").exists()


def test_an_unrelated_folder_is_still_refused(toy: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not empty"):
        train(_config(toy, tmp_path, "full", resume=True))
    assert (tmp_path / "notes.txt").read_text() == "mine"


def _truncate_weights(ckpt: Path) -> None:
    weights = ckpt / "trainable.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _break_state_json(ckpt: Path) -> None:
    state = ckpt / "trainer_state.json"
    state.write_text(state.read_text()[:-40])


def _drop_optimizer(ckpt: Path) -> None:
    (ckpt / "optimizer.pt").unlink()


@pytest.mark.parametrize("with_manifest", [True, False], ids=["manifest", "no-manifest"])
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (_truncate_weights, "trainable.safetensors"),
        (_break_state_json, "trainer_state.json"),
        (_drop_optimizer, "optimizer.pt"),
    ],
    ids=["truncated-weights", "broken-json", "no-optimizer"],
)
def test_resume_skips_a_damaged_newest_checkpoint(
    toy: dict[str, Path], tmp_path: Path, damage: Callable[[Path], None], reason: str, with_manifest: bool
) -> None:
    whole = train(_config(toy, tmp_path / "whole", "full", eval_data=None))
    out = tmp_path / "killed"
    with pytest.raises(Killed):
        train(_config(toy, out, "full", eval_data=None), progress=_kill_at(8))
    newest = out / "checkpoints" / "step-000006"
    damage(newest)
    if not with_manifest:  # a checkpoint written before manifests: the loading checks alone catch it
        (newest / "manifest.json").unlink()

    with pytest.warns(UserWarning, match=r"resuming from .*step-000003.*skipped .*step-000006 \("):
        resumed = train(_config(toy, out, "full", eval_data=None, resume=True))
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("step-000003")
    assert [s["checkpoint"] for s in resumed.resume_skipped] == [str(newest)]
    assert reason in resumed.resume_skipped[0]["reason"]
    assert resumed.losses == whole.losses  # the older checkpoint carries the run on exactly
    record = read_record(out)["result"]
    assert record["resumed_from"] == resumed.resumed_from and record["resume_skipped"] == resumed.resume_skipped
    # The damaged folder is kept aside, out of the rotation of the newest checkpoints.
    assert (out / "checkpoints" / ".step-000006.damaged").is_dir()
    assert sorted(p.name for p in (out / "checkpoints").iterdir() if not p.name.startswith(".")) == [
        "step-000006",
        "step-000009",
    ]


def test_resume_with_every_checkpoint_damaged_is_a_clear_error(toy: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(Killed):
        train(_config(toy, out, "full", eval_data=None), progress=_kill_at(8))
    for ckpt in (out / "checkpoints").iterdir():
        _truncate_weights(ckpt)
    with pytest.raises(InputError, match=r"no usable checkpoint .*step-000006: .*step-000003: ") as err:
        train(_config(toy, out, "full", eval_data=None, resume=True))
    assert "\n" not in str(err.value)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000003", "step-000006"]  # untouched


def test_checkpoints_carry_a_manifest_written_last(toy: dict[str, Path], tmp_path: Path) -> None:
    import json

    out = tmp_path / "run"
    train(_config(toy, out, "full", eval_data=None, max_steps=4))  # the last step writes no checkpoint
    ckpt = out / "checkpoints" / "step-000003"
    files = json.loads((ckpt / "manifest.json").read_text())["files"]
    assert set(files) == {p.name for p in ckpt.iterdir()} - {"manifest.json"}
    assert all(files[name]["size"] == (ckpt / name).stat().st_size for name in files)
