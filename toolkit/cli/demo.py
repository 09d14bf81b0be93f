"""``qalign demo``: the whole rating -> training -> evaluation loop on the embedded default."""

from __future__ import annotations

from pathlib import Path

import typer

from toolkit.cli.common import console


def _log(line: str) -> None:
    # Progress lines name the user's folders: print them as they are, not as rich markup.
    console.print(line, markup=False, highlight=False)


def demo_command(
    out: Path = typer.Option(
        Path("qalign-demo"),
        "--out",
        help="Folder for the study DB, data, model and report (an earlier one is recreated with --overwrite).",
    ),
    steps: int = typer.Option(None, "--steps", help="Fine-tuning steps (default: the demo's tuned value)."),
    raters: int = typer.Option(None, "--raters", help="Number of simulated raters."),
    sources: int = typer.Option(None, "--sources", help="Number of shipped scenes to use (at most 16)."),
    seed: int = typer.Option(0, "--seed", help="Seed for stimuli, raters, split and training."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier demo folder at --out (never any other folder)."
    ),
) -> None:
    """Run a synthetic study end to end on the embedded default.

    Store, simulated raters, MOS, Q-Align data, fine-tuning of a tiny from-scratch model,
    held-out scoring and a report, in a fresh folder. Real use loads OneAlign instead.
    """
    from toolkit.demo import DemoConfig, run_demo

    config = DemoConfig(out_dir=out, seed=seed, overwrite=overwrite)
    if steps is not None:
        config.train_steps = steps
    if raters is not None:
        config.n_raters = raters
    if sources is not None:
        config.n_sources = sources
    run_demo(config, log=_log)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
