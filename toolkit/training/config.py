"""The settings of one fine-tuning run, readable from JSON or YAML and recorded with the output."""

from __future__ import annotations

import json
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from toolkit.errors import InputError
from toolkit.training.recipes import recipe_values

Mode = Literal["lora", "full"]
LossName = Literal["ce", "soft", "score"]
BestMetric = Literal["srcc", "plcc", "loss"]

LOSS_NAMES: tuple[str, ...] = ("ce", "soft", "score")
BEST_METRICS: tuple[str, ...] = ("srcc", "plcc", "loss")

DEFAULT_LORA_TARGETS = r".*language_model.*\.(q_proj|v_proj)"
"""Query and value projections of the language model only. A plain ``["q_proj", "v_proj"]``
would also match the attention layers of LLaVA-style vision towers."""

DEFAULT_LR = {"lora": 2e-4, "full": 2e-5}
"""The reference recipes' learning rates (Q-Align LoRA and full fine-tuning)."""


@dataclass
class TrainConfig:
    """Everything that defines a run; ``train(config)`` needs nothing else.

    ``recipe`` names a preset of :mod:`toolkit.training.recipes`. ``from_dict`` and
    ``from_file`` apply it under the given settings (any setting given wins, even one equal to
    the default); the constructor applies it to the settings left at their defaults.
    """

    model: str = "tiny"  # "tiny", a checkpoint folder, or a OneAlign folder
    data: str | list[str] = ""  # conversation JSON(s) or save_to_disk dataset folder(s); several: multi-task
    out: str = "qalign-finetuned"  # adapter folder (lora) or model folder (full)
    images: str | list[str] | None = None  # media folder(s): one for all data sets, or one per data set
    weights: list[float] | None = None  # sampling weight per data set; None: in proportion to their sizes
    split: str = "train"  # split of a saved DatasetDict
    recipe: str | None = None  # onealign-lora, onealign-full, hf-lora, hf-full
    mode: Mode = "lora"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_target_modules: str | list[str] = DEFAULT_LORA_TARGETS  # regex or list of module names
    trainable_modules: list[str] = field(default_factory=list)  # fully trained beside LoRA, e.g. a projector
    frozen_modules: list[str] = field(default_factory=list)  # kept frozen in full mode, e.g. a vision tower
    lr: float | None = None  # None: the mode's reference default (DEFAULT_LR)
    epochs: float = 3.0
    max_steps: int | None = None  # optimizer steps; overrides epochs
    batch_size: int = 8  # per device, per micro-step
    grad_accum: int = 1
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    dtype: str = "float32"  # float32, bf16, fp16 (mixed precision; master weights stay float32), auto
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30 % slower
    device: str = "auto"  # auto, cpu, cuda, mps
    loss: LossName = "ce"  # ce: level cross-entropy; soft: KL to the vote distribution; score: numeric answers
    eval_data: str | None = None  # held-out conversation file or dataset folder
    eval_images: str | None = None
    eval_every: int = 0  # optimizer steps between evaluations; 0: only before and after training (and at saves)
    eval_batch_size: int = 16
    save_every: int = 0  # optimizer steps between checkpoints (out/checkpoints/step-N); 0: none
    keep_checkpoints: int = 1  # most recent checkpoints kept on disk
    resume: bool = False  # continue from the last checkpoint in out/checkpoints when there is one
    best_metric: BestMetric = "srcc"  # held-out metric that picks the model copied to out/best
    max_frames: int | None = None  # cap on frames decoded per video file
    log_every: int = 1
    num_workers: int = 0  # DataLoader processes that decode images and build batches (0: in the loop)
    cpu_threads: int | None = None  # torch CPU threads during the run; None keeps torch's default.
    # Small models on a busy machine train several times faster with 1 thread than with many.

    def __post_init__(self) -> None:
        if self.recipe is not None:
            for name, value in recipe_values(self.recipe).items():
                if getattr(self, name) == _default(name):
                    setattr(self, name, value)
        self.validate()

    @property
    def learning_rate(self) -> float:
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.mode]

    @property
    def data_paths(self) -> list[str]:
        """The training data sets, one or more."""
        return [self.data] if isinstance(self.data, str) else list(self.data)

    @property
    def image_roots(self) -> list[str | None]:
        """The media folder of each data set (``None``: relative to its JSON file)."""
        n = len(self.data_paths)
        if self.images is None or isinstance(self.images, str):
            return [self.images] * n
        return list(self.images) if len(self.images) == n else [self.images[0]] * n

    def validate(self) -> None:
        """Raise :class:`InputError` naming the first setting that cannot work."""
        if self.mode not in ("lora", "full"):
            raise InputError(f"mode must be 'lora' or 'full', got {self.mode!r}")
        if self.loss not in LOSS_NAMES:
            raise InputError(f"unknown loss {self.loss!r}; available: {', '.join(LOSS_NAMES)}")
        if self.best_metric not in BEST_METRICS:
            raise InputError(f"best_metric must be one of {', '.join(BEST_METRICS)}, got {self.best_metric!r}")
        positive = {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "lora_r": self.lora_r,
                    "eval_batch_size": self.eval_batch_size, "log_every": self.log_every,
                    "keep_checkpoints": self.keep_checkpoints}  # fmt: skip
        for name, value in positive.items():
            if not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if self.cpu_threads is not None and (not isinstance(self.cpu_threads, int) or self.cpu_threads < 1):
            raise InputError(f"cpu_threads must be a positive integer, got {self.cpu_threads!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"max_steps must be at least 1, got {self.max_steps}")
        if self.max_steps is None and not self.epochs > 0:
            raise InputError(f"epochs must be positive, got {self.epochs}")
        if self.lr is not None and not self.lr > 0:
            raise InputError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise InputError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if not 0 <= self.lora_dropout < 1:
            raise InputError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not isinstance(self.num_workers, int) or self.num_workers < 0:
            raise InputError(f"num_workers must be 0 or more, got {self.num_workers!r}")
        for name in ("eval_every", "save_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise InputError(f"{name} must be 0 or more, got {getattr(self, name)!r}")
        self._validate_data()

    def _validate_data(self) -> None:
        if not isinstance(self.data, (str, list)) or (isinstance(self.data, list) and not all(isinstance(d, str) and d for d in self.data)):
            raise InputError(f"data must be a path or a list of paths, got {self.data!r}")
        n = len(self.data_paths)
        if isinstance(self.data, list) and n == 0:
            raise InputError("data is an empty list; give at least one data set")
        if isinstance(self.images, list) and len(self.images) not in (1, n):
            raise InputError(f"images: give one folder for all data sets or one per data set ({n}), got {len(self.images)}")
        if self.weights is not None:
            try:
                weights = [float(w) for w in self.weights]
            except (TypeError, ValueError):
                raise InputError(f"weights must be numbers, got {self.weights!r}") from None
            if len(weights) != n:
                raise InputError(f"weights: one per data set ({n}), got {len(weights)}: {self.weights!r}")
            if any(not w >= 0 for w in weights) or not sum(weights) > 0:
                raise InputError(f"weights must be non-negative with a positive sum, got {self.weights!r}")
            self.weights = weights

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown training setting(s): {', '.join(unknown)}")
        recipe = values.get("recipe")
        if recipe is None:
            return cls(**values)
        # Every given setting wins over the recipe, also one that equals the field's default.
        merged = {**recipe_values(recipe), **{k: v for k, v in values.items() if k != "recipe"}}
        config = cls(**merged)
        config.recipe = recipe
        return config

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """Read a ``.json`` or ``.yaml``/``.yml`` file; ``overrides`` (not None) win over it."""
        values = read_config_file(path)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values)


def _default(name: str) -> Any:
    f = next(f for f in fields(TrainConfig) if f.name == name)
    if f.default is not MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def read_config_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read config file {p}: {exc}") from None
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text)
        else:
            values = json.loads(text)
    except Exception as exc:  # json.JSONDecodeError or yaml.YAMLError
        raise InputError(f"config file {p} is not valid {p.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(values, dict):
        raise InputError(f"config file {p} must hold a mapping of settings")
    return values
