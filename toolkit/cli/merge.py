"""``qalign merge``: fold a LoRA adapter into its base model's weights."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from toolkit.cli.common import console


def register(app: typer.Typer) -> None:
    app.command("merge")(merge_command)


def merge_command(
    adapter: Path = typer.Option(..., "--adapter", help="LoRA adapter folder written by 'qalign train --mode lora'."),
    out: Path = typer.Option(
        ..., "--out", help="Folder for the merged model (new, empty, or an earlier merge with --overwrite)."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", help="Base model (default: the one the adapter was trained on, from its qalign_train.json)."
    ),
    dtype: Optional[str] = typer.Option(
        None, "--dtype", help="Saved precision: float32, bfloat16 or float16 (default: the base checkpoint's)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an earlier qalign output in the --out folder (never any other folder)."
    ),
) -> None:
    """Merge a LoRA adapter into the base model and save an ordinary checkpoint.

    The merged folder scores without PEFT: 'qalign score --model OUT'. Its logits equal those of
    the base model with the adapter applied (up to the rounding of the saved precision).
    """
    from toolkit.training.adapter_merge import merge_adapter

    with console.status("merging"):
        result = merge_adapter(adapter, out, model=model, dtype=dtype, overwrite=overwrite)
    console.print(
        f"{escape(str(result.adapter))} merged into {escape(str(result.base))} ({result.dtype}) "
        f"-> [bold]{escape(str(result.output_dir))}[/]"
    )
