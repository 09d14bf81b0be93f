"""Sharded scoring runs: processes started by torchrun (a gloo group on the CPU) or given only
RANK and WORLD_SIZE each score whole shards into their own part, a killed process resumes its
part, and the merge step joins the parts, naming inputs missing or scored twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_scoring_sources import make_images, write_parquet, write_tar
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.errors import InputError
from toolkit.scoring import PROB_COLUMNS, Scorer, read_results
from toolkit.scoring.inputs import plan_inputs
from toolkit.scoring.processes import ProcessGroup, current_processes
from toolkit.scoring.provenance import record_path
from toolkit.scoring.results import existing_parts, part_path, write_results
from toolkit.scoring.shards import merge_scores

COMMON = ["score", "--model", "tiny", "--device", "cpu", "--batch-size", "2", "--no-progress"]


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    # Loaded as the command loads it, so that its parts and the command's share one record.
    return Scorer.from_pretrained("tiny", batch_size=2, progress=False)


def corpus(root: Path) -> list[str]:
    """A folder of images and four shards (two tar, two Parquet) of other images."""
    make_images(root / "imgs", 5)
    for n in range(2):
        write_tar(root / f"shard-{n}.tar", make_images(root / f"src{n}", 3, seed=n + 1, start=10 * n + 10))
        write_parquet(root / f"part-{n}.parquet", make_images(root / f"srcp{n}", 2, seed=n + 5, start=10 * n + 50))
    return [str(root / "imgs"), str(root / "shard-*.tar"), str(root / "part-*.parquet")]


def launch(args: list[str], cwd: Path, env: dict[str, str] | None = None, torchrun: bool = False) -> subprocess.Popen:
    runner = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if torchrun else []
    cmd = [sys.executable, *runner, "-m", "toolkit.cli", *COMMON, *args]
    base = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    full = {**base, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.Popen(cmd, cwd=cwd, env=full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def same_scores(merged: pd.DataFrame, alone: pd.DataFrame) -> None:
    """One row per input, in input order, with the numbers of a single process."""
    assert merged["path"].tolist() == alone["path"].tolist()
    assert not merged["path"].duplicated().any() and (merged["error"] == "").all()
    got, want = merged[list(PROB_COLUMNS)].to_numpy(float), alone[list(PROB_COLUMNS)].to_numpy(float)
    assert np.abs(got - want).max() < 1e-6


def test_each_process_takes_whole_shards_and_a_block_of_the_files(tmp_path: Path) -> None:
    plan = plan_inputs(corpus(tmp_path))
    shares = [plan.share(rank, 2) for rank in range(2)]
    assert [[Path(s.path).name for s in share.shards] for share in shares] == [
        ["shard-0.tar", "shard-1.tar"],
        ["part-0.parquet", "part-1.parquet"],
    ]
    assert [len(share.files) for share in shares] == [3, 2]
    keys = [share.keys() for share in shares]
    assert sorted(keys[0] + keys[1]) == sorted(plan.keys()) and not set(keys[0]) & set(keys[1])
    assert len(plan.keys()) == 5 + 2 * 3 + 2 * 2


def test_two_torchrun_processes_score_like_one(scorer: Scorer, tmp_path: Path) -> None:
    inputs = corpus(tmp_path)
    out = tmp_path / "scores.csv"
    code, stdout, stderr = finish(launch(["--out", str(out), *inputs], tmp_path, torchrun=True))
    assert code == 0, stderr[-3000:]
    assert stdout.count("input(s) scored") == 1 and "15 of 15 input(s) scored" in stdout  # the main one reports
    assert not existing_parts(out) and record_path(out).is_file()
    same_scores(read_results(out), scorer.score(inputs))


def test_processes_without_a_group_then_the_merge_step(scorer: Scorer, tmp_path: Path) -> None:
    inputs = corpus(tmp_path)
    out = tmp_path / "scores.csv"
    args = ["--no-merge", "--out", str(out), *inputs]
    # Only RANK and WORLD_SIZE, as an array job has them: no address, no process group.
    first = finish(launch(args, tmp_path, {"RANK": "0", "WORLD_SIZE": "2"}))
    assert first[0] == 0, first[2][-3000:]
    assert "process 0 of 2: 9 of 9 input(s) scored" in first[1] and part_path(out, 0, 2).is_file()

    runner = CliRunner()
    merge = [*COMMON, "--merge-only", "--out", str(out), *inputs]
    early = runner.invoke(app, merge)  # process 1 has not run: its inputs are missing
    assert early.exit_code == 1 and "6 input(s) have no row; the parts are kept" in early.output
    assert f"{tmp_path / 'part-0.parquet'}#0" in early.output and part_path(out, 0, 2).is_file()

    second = finish(launch(args, tmp_path, {"RANK": "1", "WORLD_SIZE": "2"}))
    assert second[0] == 0, second[2][-3000:]
    done = runner.invoke(app, merge)
    assert done.exit_code == 0, done.output
    assert "15 of 15 input(s) scored, 0 failed, 0 missing (from 2 part(s))" in done.output
    assert not existing_parts(out)
    same_scores(read_results(out), scorer.score(inputs))

    other = runner.invoke(app, [*COMMON, "--merge-only", "--task", "aesthetics", "--out", str(out), *inputs])
    assert isinstance(other.exception, InputError) and "made differently, not merged: task" in str(other.exception)


def test_a_killed_process_resumes_its_part_to_the_same_result(
    scorer: Scorer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = corpus(tmp_path)
    out = tmp_path / "scores.csv"
    real = scorer.backbone.level_logits
    forwards: list[int] = []

    def counted(batch: dict) -> object:
        forwards.append(len(batch["input_ids"]))
        return real(batch)

    def dies_in_the_third_batch(batch: dict) -> object:
        if len(forwards) == 2:
            raise KeyboardInterrupt
        return counted(batch)

    rank1 = ProcessGroup(rank=1, world=2)
    monkeypatch.setattr(scorer.backbone, "level_logits", dies_in_the_third_batch)
    with pytest.raises(KeyboardInterrupt):
        scorer.score(inputs, out=out, processes=rank1, merge=False)
    part = part_path(out, 1, 2)
    assert len(read_results(part)) == 4  # two files and a shard of two; the second shard is left
    with open(part, "a") as fh:
        fh.write(f"{tmp_path / 'part-0.parquet'}#1,3.1,0.2")  # a torn line, as a kill mid-write leaves

    monkeypatch.setattr(scorer.backbone, "level_logits", counted)
    resumed = scorer.score(inputs, out=out, processes=rank1, merge=False)
    assert sum(forwards[2:]) == 2 and len(resumed) == 2  # only what the kill left
    assert len(read_results(part)) == 6
    scorer.score(inputs, out=out, processes=ProcessGroup(rank=0, world=2), merge=False)
    report = merge_scores(inputs, out, model="tiny")
    assert report.complete and not report.duplicated and report.scored == 15 and report.parts_removed
    same_scores(read_results(out), scorer.score(inputs))


def test_a_process_killed_by_a_signal_resumes(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 4)
    write_tar(tmp_path / "big.tar", make_images(tmp_path / "src", 12, seed=3, start=100))
    inputs = [str(tmp_path / "imgs"), str(tmp_path / "big.tar")]
    out = tmp_path / "scores.csv"
    args = ["--no-merge", "--batch-size", "1", "--out", str(out), *inputs]
    rank0 = {"RANK": "0", "WORLD_SIZE": "2"}  # two of the files and the whole tar
    proc = launch(args, tmp_path, rank0)
    part = part_path(out, 0, 2)
    while proc.poll() is None and not (part.is_file() and len(read_results(part)) >= 2):
        time.sleep(0.02)  # until the first rows are written
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    left = len(read_results(part))
    assert left >= 2
    again = finish(launch(args, tmp_path, rank0))
    assert again[0] == 0, again[2][-3000:]
    assert f"{14 - left} of {14 - left} input(s) scored" in again[1]  # the rows written before the kill stay
    scorer.score(inputs, out=out, processes=ProcessGroup(rank=1, world=2), merge=False)
    report = merge_scores(inputs, out, model="tiny")
    assert report.complete and not report.duplicated and report.scored == 16
    same_scores(read_results(out), scorer.score(inputs))


def test_the_merge_names_missing_and_doubled_inputs(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 4)
    inputs = [str(tmp_path / "imgs")]
    out = tmp_path / "scores.csv"
    with pytest.raises(InputError, match="nothing to merge"):
        merge_scores(inputs, out)
    alone = scorer.score(inputs)
    keys = alone["path"].tolist()
    write_results(alone.iloc[[0, 1]], part_path(out, 0, 2))
    write_results(alone.iloc[[1, 2]], part_path(out, 1, 2))  # key 1 twice; key 3 nowhere
    with pytest.raises(InputError, match="no record of the model and task"):
        merge_scores(inputs, out)
    scorer.score([tmp_path / "imgs" / "img0.png"], out=tmp_path / "other.csv")  # a record of this model
    record_path(out).write_text(record_path(tmp_path / "other.csv").read_text())
    report = merge_scores(inputs, out, model="tiny")
    assert report.missing == [keys[3]] and report.duplicated == [keys[1]] and not report.parts_removed
    assert read_results(out)["path"].tolist() == keys[:3] and len(existing_parts(out)) == 2
    write_results(alone.iloc[[3]], part_path(out, 0, 3))  # a later run with three processes
    report = merge_scores(inputs, out, model="tiny")
    assert report.complete and report.parts_removed and report.duplicated == [keys[1]] and report.scored == 4
    assert not existing_parts(out)
    same_scores(read_results(out), alone)
    with pytest.raises(InputError, match="its parts were made differently, not merged: task"):
        merge_scores(inputs, out, model="tiny", task="aesthetics")


def test_rank_and_world_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("WORLD_SIZE", "1200")
    monkeypatch.setenv("RANK", "1031")
    group = current_processes(collective=False)
    assert (group.rank, group.world, group.is_main) == (1031, 1200, False)
    out = tmp_path / "s.csv"
    write_results(pd.DataFrame({"path": ["a"], "score": [3.0], "error": [""]}), part_path(out, 1031, 1200))
    assert [p.name for p in existing_parts(out)] == ["s.csv.part1031-of-1200"]  # wider than three digits
    monkeypatch.setenv("RANK", "1200")
    with pytest.raises(InputError, match="RANK=1200 is not within WORLD_SIZE=1200"):
        current_processes(collective=False)


def test_parts_made_by_another_task_are_refused_before_the_model_loads(scorer: Scorer, tmp_path: Path) -> None:
    from toolkit.scoring.provenance import refuse_early

    make_images(tmp_path / "imgs", 2)
    out = tmp_path / "scores.csv"
    scorer.score([tmp_path / "imgs"], out=out, processes=ProcessGroup(rank=1, world=2), merge=False)
    assert not out.exists() and existing_parts(out)
    refuse_early(out, "tiny", None, "quality", False)  # the same run: resumed
    with pytest.raises(InputError, match="made differently, cannot resume: task"):
        refuse_early(out, "tiny", None, "aesthetics", False)


def test_a_main_process_that_cannot_see_the_other_parts_says_so(scorer: Scorer, tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", 4)
    out = tmp_path / "scores.csv"
    # The main process of two, whose partner wrote its part elsewhere (another node's own disk).
    with pytest.raises(InputError, match=r"2 input\(s\) have no row in .*scores\.csv \(first: .*img2\.jpg\)"):
        scorer.score([tmp_path / "imgs"], out=out, processes=ProcessGroup(rank=0, world=2))
    assert len(read_results(out)) == 2  # what it could see is merged, nothing lost
    scorer.score([tmp_path / "imgs"], out=out, processes=ProcessGroup(rank=1, world=2), merge=False)
    assert merge_scores([tmp_path / "imgs"], out, model="tiny").complete
