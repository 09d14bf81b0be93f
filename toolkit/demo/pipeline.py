"""``qalign demo``: the whole loop on the embedded default, start to finish.

media -> study store -> simulated votes -> MOS -> Q-Align conversations (content-grouped split)
-> fine-tuning of the tiny model -> scores on held-out items -> report against the MOS, with the
raters' own split-half agreement as the ceiling.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from toolkit.errors import InputError

if TYPE_CHECKING:
    from toolkit.training.config import Mode

MARKER = ".qalign-demo"  # what marked a demo folder before the toolkit-wide output marker
TINY_MODEL_NOTE = (
    "The embedded model is a tiny vision-language model trained from scratch for this demonstration "
    "(about a quarter of a million parameters): it shows the loop working on a laptop CPU. "
    "Real use loads OneAlign (--model q-future/one-align) on a GPU."
)


@dataclass
class DemoConfig:
    out_dir: Path = Path("qalign-demo")
    n_sources: int = 16  # shipped scenes used; each appears at every degradation grade
    variants: int = 4  # random cell patterns per intermediate grade
    n_raters: int = 24
    n_careless: int = 3
    votes_per_item: int = 15  # BT.500 asks for at least 15 valid observers
    test_fraction: float = 0.25  # share of content groups held out
    train_steps: int = 800
    batch_size: int = 8
    lr: float = 5e-4  # a from-scratch model needs a far larger step than fine-tuning OneAlign
    cpu_threads: int = 1  # a 250 k-parameter model runs fastest on one thread
    mode: Mode = "full"
    n_boot: int = 1000
    seed: int = 0
    overwrite: bool = False  # replace an earlier demo folder at out_dir


@dataclass
class DemoResult:
    out_dir: Path
    report_dir: Path
    n_items: int
    n_votes: int
    n_train: int
    n_test: int
    before: dict[str, float]
    after: dict[str, float]
    split_half_srcc: float
    seconds: dict[str, float] = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        def fmt(m: dict[str, float]) -> str:
            return (
                f"SRCC {m['srcc']:.3f} [{m['srcc_low']:.3f}, {m['srcc_high']:.3f}]  "
                f"PLCC {m['plcc']:.3f}  KRCC {m['krcc']:.3f}"
            )

        return [
            f"{self.n_items} items, {self.n_votes} votes; train {self.n_train}, held-out {self.n_test} items",
            f"before fine-tuning: {fmt(self.before)}",
            f"after fine-tuning:  {fmt(self.after)}",
            f"raters' split-half SRCC (ceiling): {self.split_half_srcc:.3f}",
            f"report: {self.report_dir / 'report.md'}",
            f"total {self.seconds.get('total', float('nan')):.0f} s",
        ]


def _prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    from toolkit.files import claim_output_dir, prepare_output_dir

    # A fresh database and fresh outputs every run, but only over an earlier demo or toolkit output.
    target = claim_output_dir(out_dir, overwrite=overwrite, legacy=(MARKER,))
    if target.is_dir() and any(target.iterdir()):
        shutil.rmtree(target)
    prepare_output_dir(out_dir, written_by="qalign demo")


def _metrics(report) -> dict[str, float]:
    m = report.metrics
    return {
        "srcc": m["srcc"].value,
        "srcc_low": m["srcc"].ci_low,
        "srcc_high": m["srcc"].ci_high,
        "plcc": m["plcc"].value,
        "plcc_low": m["plcc"].ci_low,
        "plcc_high": m["plcc"].ci_high,
        "krcc": m["krcc"].value,
        "krcc_low": m["krcc"].ci_low,
        "krcc_high": m["krcc"].ci_high,
    }


def run_demo(config: DemoConfig, log: Callable[[str], None] = print) -> DemoResult:
    """Run the demonstration study end to end; everything lands in ``config.out_dir``."""
    import transformers

    from toolkit.analysis import prepare_votes, split_half_agreement
    from toolkit.convert import write_training_data
    from toolkit.convert.study import study_training_table
    from toolkit.demo.raters import make_raters, simulate_votes
    from toolkit.demo.stimuli import make_stimuli
    from toolkit.evaluation.metrics import MetricResult
    from toolkit.evaluation.report import write_report
    from toolkit.io import write_table
    from toolkit.models.loading import load_backbone
    from toolkit.models.tiny import build_tiny_model
    from toolkit.scoring import Scorer
    from toolkit.store import Store, add_items, create_study, get_study, read_snapshot, upgrade
    from toolkit.store.studies import ItemSpec
    from toolkit.training import TrainConfig, train

    # Loading a 1 MB model four times needs no progress bars in the demo's output.
    transformers.utils.logging.disable_progress_bar()
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    out = Path(config.out_dir)
    _prepare_out_dir(out, config.overwrite)
    rng = np.random.default_rng(config.seed)
    log(TINY_MODEL_NOTE)

    # 1. media and the study store (a fresh SQLite file)
    media = out / "media"
    stimuli = make_stimuli(media, config.n_sources, config.variants, seed=config.seed)
    db_url = f"sqlite:///{(out / 'study.db').resolve()}"
    upgrade(db_url)
    store = Store(db_url)
    with store.session() as session:
        study = create_study(session, "demo", media, task="quality", target_votes=config.votes_per_item)
        add_items(session, study, [ItemSpec(path=s.path, content_group=s.source) for s in stimuli])
    log(f"study 'demo': {len(stimuli)} pictures ({config.n_sources} scenes at 5 degradation grades) in {db_url}")

    # 2. simulated raters vote through the store
    raters = make_raters(config.n_raters, config.n_careless, rng)
    n_votes = simulate_votes(store, "demo", {s.path: s.quality for s in stimuli}, raters, config.votes_per_item, rng)
    with store.session() as session:
        snapshot = read_snapshot(session, get_study(session, "demo"))
    store.dispose()
    votes = snapshot.votes
    log(f"{n_votes} votes from {config.n_raters} simulated raters ({config.n_careless} careless)")
    seconds["collect"] = time.perf_counter() - t0

    # 3. aggregate and convert: MOS per item, levels, content-grouped split, Q-Align JSON
    labels, _ = study_training_table(snapshot)  # the labels `qalign convert --study demo` gives
    data_dir = out / "data"
    converted = write_training_data(
        labels,
        data_dir,
        fmt="json",
        images=media,
        split={"train": 1 - config.test_fraction, "test": config.test_fraction},
        seed=config.seed,
        soft_labels_in_json=True,  # the vote histograms, for `qalign ablate` / `--loss soft` on this data
    )
    table = converted.table.frame
    train_items = table[table["split"] == "train"]
    test_items = table[table["split"] == "test"].reset_index(drop=True)
    log(f"converted: {len(train_items)} training and {len(test_items)} held-out items -> {data_dir}")
    heldout_votes = prepare_votes(votes[votes["item"].isin(test_items["path"])].reset_index(drop=True))
    agreement = split_half_agreement(heldout_votes, seed=config.seed)
    ceiling = MetricResult(
        "split_half_srcc",
        agreement.srcc,
        agreement.srcc_ci[0],
        agreement.srcc_ci[1],
        method="split-half, Spearman-Brown",
    )
    seconds["convert"] = time.perf_counter() - t0 - sum(seconds.values())

    # 4. the model before fine-tuning
    base = build_tiny_model(out / "base-model", seed=config.seed)
    test_paths = [str(media / p) for p in test_items["path"]]
    before = Scorer(load_backbone(base), batch_size=16, progress=False).score(test_paths)
    seconds["score_before"] = time.perf_counter() - t0 - sum(seconds.values())

    # 5. fine-tune
    log(f"fine-tuning ({config.mode}, {config.train_steps} steps)...")
    trained = out / "finetuned"
    train(
        TrainConfig(
            model=str(base),
            data=str(data_dir / "train.json"),
            images=str(media),
            out=str(trained),
            mode=config.mode,
            max_steps=config.train_steps,
            batch_size=config.batch_size,
            lr=config.lr,
            seed=config.seed,
            device="cpu",
            warmup_ratio=0.05,
            cpu_threads=config.cpu_threads,
        )
    )
    seconds["train"] = time.perf_counter() - t0 - sum(seconds.values())

    # 6. score the held-out items again and report
    model_path, adapter = (str(base), str(trained)) if config.mode == "lora" else (str(trained), None)
    after = Scorer(load_backbone(model_path, adapter=adapter), batch_size=16, progress=False).score(test_paths)
    for name, frame in (("before", before), ("after", after)):
        if frame["error"].fillna("").astype(str).str.len().gt(0).any():
            raise InputError(f"scoring {name} fine-tuning failed for some items: {frame['error'].dropna().iloc[0]}")
    mos = test_items["mos"].to_numpy(dtype=float)
    report = write_report(
        out / "report",
        {"before fine-tuning": before["score"].to_numpy(float), "after fine-tuning": after["score"].to_numpy(float)},
        mos,
        items=test_items["path"].tolist(),
        noise_ceiling=ceiling,
        n_boot=config.n_boot,
        seed=config.seed,
        title="qalign demo: agreement of the tiny model with the simulated raters (held-out items)",
        notes=[TINY_MODEL_NOTE],
    )
    write_table(
        pd.DataFrame(
            {
                "path": test_items["path"],
                "mos": mos,
                "score_before": before["score"].to_numpy(float),
                "score_after": after["score"].to_numpy(float),
            }
        ),
        out / "report" / "heldout_scores.csv",
    )
    seconds["score_after"] = time.perf_counter() - t0 - sum(seconds.values())
    seconds["total"] = time.perf_counter() - t0

    sets = list(report.results.values())
    result = DemoResult(
        out_dir=out,
        report_dir=out / "report",
        n_items=len(stimuli),
        n_votes=n_votes,
        n_train=len(train_items),
        n_test=len(test_items),
        before=_metrics(sets[0]),
        after=_metrics(sets[1]),
        split_half_srcc=float(ceiling.value),
        seconds=seconds,
    )
    (out / "report" / "demo.json").write_text(
        json.dumps(
            {
                **asdict(result),
                "out_dir": str(out),
                "report_dir": str(result.report_dir),
                "config": {**asdict(config), "out_dir": str(config.out_dir)},
            },
            indent=2,
            default=float,
        )
        + "\n"
    )
    for line in result.summary_lines():
        log(line)
    return result
