"""Tiny random builds of other model families fine-tuned on the demo study, beside the built-in tiny model.

    python bench/family_finetune.py                                    # qwen2_5_vl and smolvlm, then ablate
    python bench/family_finetune.py --families smolvlm --lrs 5e-4,2e-3  # try several learning rates
    python bench/family_finetune.py --ablate none --steps 200           # quicker, no ablation

``qalign demo``'s pipeline (:func:`toolkit.demo.pipeline.run_demo`) makes the study, its votes,
the MOS, the Q-Align conversations and the content-grouped split, and fine-tunes the built-in tiny
model. Each family's tiny random build (:func:`toolkit.models.tiny_families.build_tiny_family`) is
then fine-tuned in full on the same training split with the demo's budget (steps, batch size,
warm-up, seed; the learning rate per family, see ``--lrs``), and every model scores the same
held-out items. The table gives the held-out SRCC and PLCC with the demo's bootstrap intervals
(``--n-boot`` draws, the demo's seed), before and after fine-tuning, and the training time.

Finally ``qalign ablate`` (ce / soft / score losses, same budget) runs on one family's build
(``--ablate``) and its table is printed.

These builds are random networks of a few hundred thousand parameters trained from scratch: the
figures say whether the family's whole path (prompts, image tokens, loss, scoring) learns the
task, not how a pretrained model of that family would rate. Timings depend on the load of the
machine: the script prints the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from toolkit.demo.pipeline import DemoConfig, run_demo
from toolkit.evaluation.metrics import AgreementReport, agreement
from toolkit.models.loading import load_backbone
from toolkit.models.tiny_families import build_tiny_family
from toolkit.scoring import Scorer
from toolkit.training import TrainConfig, train

FAMILIES = ("qwen2_5_vl", "smolvlm")
DEFAULT_LR = {"qwen2_5_vl": 1e-3, "smolvlm": 5e-4}
"""The best held-out SRCC of 5e-4, 1e-3 and 2e-3 for each build in the demo's budget (800 steps of 8);
all three learn, and their intervals overlap (``--lrs 5e-4,1e-3,2e-3`` repeats the comparison)."""


@dataclass
class Run:
    """One fine-tuning run of one model and its held-out agreement before and after."""

    model: str
    lr: float
    before: AgreementReport
    after: AgreementReport
    train_s: float
    final_loss: float


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _ci(report: AgreementReport, name: str) -> str:
    m = report[name]
    return f"{m.value:6.3f} [{m.ci_low:6.3f}, {m.ci_high:6.3f}]"


def _heldout(demo_dir: Path) -> pd.DataFrame:
    """The demo's held-out items (path relative to its media folder, MOS) and the tiny model's scores."""
    return pd.read_csv(demo_dir / "report" / "heldout_scores.csv")


def _score(model: Path, paths: list[str]) -> np.ndarray:
    frame = Scorer(load_backbone(model), batch_size=16, progress=False).score(paths)
    errors = frame["error"].fillna("").astype(str)
    if errors.str.len().gt(0).any():
        raise SystemExit(f"scoring {model} failed: {errors[errors.str.len() > 0].iloc[0]}")
    return frame["score"].to_numpy(float)


def finetune(
    family: str, lr: float, demo: DemoConfig, out: Path, paths: list[str], mos: np.ndarray, threads: int
) -> Run:
    """Build ``family``'s tiny model, score the held-out items, fine-tune it as the demo does, score again."""
    base = build_tiny_family(family, out / "base", seed=demo.seed)
    agree = {"n_boot": demo.n_boot, "seed": demo.seed, "items": paths}
    before = agreement(_score(base, paths), mos, **agree)  # type: ignore[arg-type]
    result = train(
        TrainConfig(
            model=str(base),
            data=str(demo.out_dir / "data" / "train.json"),
            images=str(demo.out_dir / "media"),
            out=str(out / "finetuned"),
            mode="full",
            max_steps=demo.train_steps,
            batch_size=demo.batch_size,
            lr=lr,
            seed=demo.seed,
            device="cpu",
            warmup_ratio=0.05,  # as the demo trains its tiny model
            cpu_threads=threads,
            log_every=max(1, demo.train_steps // 10),
        )
    )
    after = agreement(_score(out / "finetuned", paths), mos, **agree)  # type: ignore[arg-type]
    return Run(family, lr, before, after, result.seconds, result.final_loss)


def _print_table(runs: list[Run], tiny: tuple[AgreementReport, AgreementReport, float]) -> None:
    head = f"{'model':<22} {'lr':>7}  {'SRCC before':<24} {'SRCC after [95% CI]':<24} {'PLCC after [95% CI]':<24}"
    print(head + f" {'train s':>8} {'final loss':>10}")
    before, after, lr = tiny
    print(f"{'tiny (built-in)':<22} {lr:7.0e}  {_ci(before, 'srcc'):<24} {_ci(after, 'srcc'):<24} ", end="")
    print(f"{_ci(after, 'plcc'):<24} {'(demo)':>8} {'':>10}")
    for r in runs:
        print(
            f"{r.model:<22} {r.lr:7.0e}  {_ci(r.before, 'srcc'):<24} {_ci(r.after, 'srcc'):<24} "
            f"{_ci(r.after, 'plcc'):<24} {r.train_s:8.0f} {r.final_loss:10.3f}"
        )


def ablate(family: str, lr: float, demo: DemoConfig, out: Path, threads: int) -> None:
    """``qalign ablate`` (ce / soft / score) on ``family``'s tiny build with the demo's budget; prints its table."""
    base = build_tiny_family(family, out / "base", seed=demo.seed)
    data = demo.out_dir / "data"
    command = [
        sys.executable,
        "-m",
        "toolkit.cli",
        "ablate",
        "--train",
        str(data / "train.json"),
        "--test",
        str(data / "test.json"),
        "--images",
        str(demo.out_dir / "media"),
        "--out",
        str(out / "report"),
        "--model",
        str(base),
        "--mode",
        "full",
        "--steps",
        str(demo.train_steps),
        "--batch-size",
        str(demo.batch_size),
        "--lr",
        str(lr),
        "--seed",
        str(demo.seed),
        "--warmup-ratio",
        "0.05",
        "--device",
        "cpu",
        "--cpu-threads",
        str(threads),
        "--n-boot",
        str(demo.n_boot),
    ]
    start = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"qalign ablate on {family}: {time.perf_counter() - start:.0f} s")
    report = (out / "report" / "report.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("|")]
    print("\n".join(table))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("/tmp/qalign-family-finetune"))
    parser.add_argument(
        "--families", nargs="*", default=list(FAMILIES), help="Families to fine-tune (none: ablation only)."
    )
    parser.add_argument("--lrs", default=None, help="Comma-separated learning rates tried for every family.")
    parser.add_argument("--steps", type=int, default=DemoConfig.train_steps, help="Optimizer steps (demo: 800).")
    parser.add_argument("--n-boot", type=int, default=DemoConfig.n_boot)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads of every run.")
    parser.add_argument("--ablate", default="qwen2_5_vl", help="Family whose build qalign ablate runs on, or 'none'.")
    parser.add_argument("--reuse-demo", action="store_true", help="Keep an earlier demo run in OUT/demo.")
    args = parser.parse_args()

    demo = DemoConfig(out_dir=args.out / "demo", train_steps=args.steps, n_boot=args.n_boot, overwrite=True)
    print(f"load average before: {_load()} ({os.cpu_count()} CPUs)")
    if not (args.reuse_demo and (demo.out_dir / "report" / "heldout_scores.csv").is_file()):
        start = time.perf_counter()
        run_demo(demo, log=lambda line: print(f"  demo: {line}"))
        print(f"demo (study, votes, split, tiny model fine-tuned): {time.perf_counter() - start:.0f} s")
    heldout = _heldout(demo.out_dir)
    paths = [str(demo.out_dir / "media" / p) for p in heldout["path"]]
    mos = heldout["mos"].to_numpy(float)
    agree = {"n_boot": demo.n_boot, "seed": demo.seed, "items": heldout["path"].tolist()}
    tiny = (
        agreement(heldout["score_before"].to_numpy(float), mos, **agree),
        agreement(heldout["score_after"].to_numpy(float), mos, **agree),
        demo.lr,
    )

    runs = []
    for family in args.families:
        lrs = [float(v) for v in args.lrs.split(",")] if args.lrs else [DEFAULT_LR.get(family, demo.lr)]
        for lr in lrs:
            print(f"{family}: full fine-tuning, lr {lr:g}, {demo.train_steps} steps ...", flush=True)
            runs.append(finetune(family, lr, demo, args.out / f"{family}-lr{lr:g}", paths, mos, args.threads))
    print(f"\nheld-out agreement with the MOS ({len(mos)} items, {demo.n_boot} bootstrap draws, 95% intervals):")
    _print_table(runs, tiny)
    if args.ablate != "none":
        lr = DEFAULT_LR.get(args.ablate, demo.lr)
        if args.lrs and any(r.model == args.ablate for r in runs):
            lr = max((r for r in runs if r.model == args.ablate), key=lambda r: r.after["srcc"].value).lr
        print(f"\nqalign ablate on {args.ablate} (lr {lr:g}, {demo.train_steps} steps per arm):", flush=True)
        ablate(args.ablate, lr, demo, args.out / f"ablate-{args.ablate}", args.threads)
    print(f"load average after: {_load()}")


if __name__ == "__main__":
    main()
