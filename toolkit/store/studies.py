"""Studies, their items and raters: the operations the CLI, the app and the demo share."""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.orm import Session

from toolkit.errors import InputError, StoreError
from toolkit.files import sha256_file
from toolkit.io import id_text
from toolkit.media import BROWSER_IMAGE_EXTENSIONS, BROWSER_VIDEO_EXTENSIONS
from toolkit.qalign import INPUT_KINDS, QUESTION_TEMPLATE, TASKS
from toolkit.store.schema import Item, Rater, Study

# The stored question keeps an ``{input}`` slot that the app fills with "image" or "video".
TASK_QUESTIONS = {task: QUESTION_TEMPLATE.format(task=task, kind="{input}") for task in TASKS}
ITEM_ROLES = ("test", "training", "gold")


@dataclass
class ItemSpec:
    """An item to add: ``path`` relative to the study's media root (or absolute inside it)."""

    path: str
    kind: str | None = None  # image | video; from the extension when None
    content_group: str | None = None  # defaults to the file name without extension
    role: str = "test"
    expected_level: int | None = None
    tolerance: int = 1


@dataclass(frozen=True)
class ContentGrouping:
    """How items get their content group from their path, for items that do not name one.

    ``folder``: the N-th folder of the path relative to the media root (0: the first), e.g.
    ``refs/ref07/blur_3.png`` is in group ``ref07`` with ``folder=1``. ``regex``: searched in the
    file name; its first capture group, or the whole match when it has none, is the group, e.g.
    ``^(ref\\d+)_`` puts ``ref07_blur_3.png`` in ``ref07``. Without a rule an item's group is its
    file name without extension: each file its own group, and splits by group split items.
    """

    folder: int | None = None
    regex: str | None = None

    def __post_init__(self) -> None:
        if self.folder is not None and self.regex is not None:
            raise InputError("group items by folder or by regex, not both")
        if self.folder is not None and (not isinstance(self.folder, int) or self.folder < 0):
            raise InputError(f"group folder level must be 0 (the first folder) or more, got {self.folder!r}")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise InputError(
                    f"content-group regex {self.regex!r} is not a valid regular expression: {exc}"
                ) from None

    def group(self, relative: str) -> str | None:
        """The group of the item at ``relative`` (a path relative to the media root); None
        without a rule. An item the rule cannot place is an :class:`InputError` naming it."""
        path = PurePosixPath(relative)
        if self.folder is not None:
            folders = path.parts[:-1]
            if self.folder >= len(folders):
                raise InputError(
                    f"{relative}: no folder at level {self.folder} to take its content group from "
                    f"(it is {len(folders)} folder(s) below the media root)"
                )
            return folders[self.folder]
        if self.regex is not None:
            match = re.search(self.regex, path.name)
            if match is None:
                raise InputError(
                    f"{relative}: file name {path.name!r} does not match the content-group regex {self.regex!r}"
                )
            value = match.group(1) if match.re.groups else match.group(0)
            if not value:
                raise InputError(
                    f"{relative}: the content-group regex {self.regex!r} gives an empty group for {path.name!r}"
                )
            return value
        return None


@dataclass
class AddItemsResult:
    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in the study


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def media_kind(path: str | Path) -> str:
    ext = Path(path).suffix.lower()
    if ext in BROWSER_IMAGE_EXTENSIONS:
        return "image"
    if ext in BROWSER_VIDEO_EXTENSIONS:
        return "video"
    raise InputError(f"{path}: not an image or video file (extension {ext or 'missing'!r})")


def scan_media(folder: str | Path) -> list[ItemSpec]:
    """Every image and video below ``folder``, sorted, as item specs relative to it."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"media folder {str(root)!r} does not exist")
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in BROWSER_IMAGE_EXTENSIONS | BROWSER_VIDEO_EXTENSIONS
    )
    return [ItemSpec(path=p.relative_to(root).as_posix()) for p in files]


def read_item_manifest(path: str | Path) -> list[ItemSpec]:
    """A CSV with a ``path`` column and optional ``kind, content_group, role, expected_level, tolerance``."""
    path = Path(path)
    try:
        # utf-8-sig: a spreadsheet's "CSV UTF-8" starts with a byte-order mark before "path".
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise InputError(f"{path}: manifest needs a 'path' column (found {reader.fieldnames})")
            specs = []
            for line, row in enumerate(reader, start=2):
                if None in row or any(v is None for v in row.values()):
                    raise InputError(f"{path}, line {line}: wrong number of fields")
                item_path = id_text(row["path"])
                if item_path is None:
                    raise InputError(f"{path}, line {line}: column 'path' is empty")
                numbers: dict[str, int | None] = {}
                for column in ("expected_level", "tolerance"):
                    value = (row.get(column) or "").strip()
                    try:
                        numbers[column] = int(value) if value else None
                    except ValueError:
                        raise InputError(
                            f"{path}, line {line}: column {column!r} must be a whole number, got {value!r}"
                        ) from None
                tolerance = numbers["tolerance"]
                specs.append(
                    ItemSpec(
                        path=item_path,
                        kind=(row.get("kind") or None),
                        # Stripped as every table reader strips ids: "g1 " and "g1" are one group.
                        content_group=id_text(row.get("content_group")),
                        role=(row.get("role") or "test").strip(),
                        expected_level=numbers["expected_level"],
                        tolerance=1 if tolerance is None else tolerance,
                    )
                )
    except FileNotFoundError:
        raise InputError(f"manifest {str(path)!r} does not exist") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return specs


def create_study(
    session: Session,
    name: str,
    media_root: str | Path,
    task: str = "quality",
    question: str | None = None,
    target_votes: int = 15,
    items_per_session: int = 50,
    allow_self_register: bool = False,
) -> Study:
    name = name.strip()
    if not name:
        raise InputError("a study needs a non-empty name")
    root = Path(media_root).expanduser().resolve()
    if not root.is_dir():
        raise InputError(f"media root {str(root)!r} does not exist")
    if task not in TASK_QUESTIONS and question is None:
        raise InputError(f"task {task!r} needs an explicit question (built-in tasks: {', '.join(TASK_QUESTIONS)})")
    if target_votes < 1 or items_per_session < 1:
        raise InputError("target_votes and items_per_session must be at least 1")
    if session.scalar(select(Study).where(Study.name == name)) is not None:
        raise StoreError(f"a study named {name!r} already exists")
    study = Study(
        name=name,
        task=task,
        question=question or TASK_QUESTIONS[task],
        media_root=str(root),
        target_votes=target_votes,
        items_per_session=items_per_session,
        allow_self_register=allow_self_register,
    )
    session.add(study)
    session.flush()
    return study


def get_study(session: Session, name: str) -> Study:
    study = session.scalar(select(Study).where(Study.name == name))
    if study is None:
        known = session.scalars(select(Study.name).order_by(Study.name)).all()
        raise StoreError(f"no study named {name!r} (studies: {', '.join(known) or 'none'})")
    return study


def list_studies(session: Session) -> list[Study]:
    return list(session.scalars(select(Study).order_by(Study.created_at, Study.id)))


def resolve_in_root(root: Path, path: str) -> Path:
    """The absolute file for an item path; refuses paths that leave the media root."""
    candidate = (root / path).resolve()
    if candidate != root and root not in candidate.parents:
        raise InputError(f"{path}: outside the study's media root {str(root)!r}")
    return candidate


def add_items(
    session: Session, study: Study, specs: Iterable[ItemSpec], grouping: ContentGrouping | None = None
) -> AddItemsResult:
    """Add items (hashing each file); paths already in the study are skipped, not duplicated.

    An item's content group is the one its spec names, else the one ``grouping`` derives from
    its path, else its file name without extension.
    """
    root = Path(study.media_root)
    grouping = grouping or ContentGrouping()
    existing = set(session.scalars(select(Item.path).where(Item.study_id == study.id)))
    result = AddItemsResult()
    for spec in specs:
        absolute = resolve_in_root(root, spec.path)
        relative = absolute.relative_to(root).as_posix()
        if relative in existing:
            result.skipped.append(relative)
            continue
        if not absolute.is_file():
            raise InputError(f"{relative}: file not found under {str(root)!r}")
        kind = spec.kind or media_kind(absolute)
        if kind not in INPUT_KINDS:
            raise InputError(f"{relative}: kind must be 'image' or 'video', got {kind!r}")
        if spec.role not in ITEM_ROLES:
            raise InputError(f"{relative}: role must be one of {', '.join(ITEM_ROLES)}, got {spec.role!r}")
        if spec.expected_level is not None and spec.expected_level not in range(1, 6):
            raise InputError(f"{relative}: expected_level must be 1-5, got {spec.expected_level!r}")
        if spec.role == "gold" and spec.expected_level is None:
            raise InputError(f"{relative}: a gold item needs an expected_level")
        session.add(
            Item(
                study_id=study.id,
                path=relative,
                kind=kind,
                sha256=sha256_file(absolute),
                content_group=spec.content_group or grouping.group(relative) or Path(relative).stem,
                role=spec.role,
                expected_level=spec.expected_level,
                tolerance=spec.tolerance,
            )
        )
        existing.add(relative)
        result.added.append(relative)
    session.flush()
    return result


def study_items(session: Session, study: Study, roles: Sequence[str] | None = None) -> list[Item]:
    query = select(Item).where(Item.study_id == study.id)
    if roles:
        query = query.where(Item.role.in_(list(roles)))
    return list(session.scalars(query.order_by(Item.id)))


def add_rater(session: Session, study: Study, name: str) -> tuple[Rater, str]:
    """A new rater and their invite token. Only the token's hash is stored: show it once.

    The same as :func:`toolkit.store.raters.create_rater` (a taken name is a one-line error that
    leaves the transaction usable); imported here late because that module imports this one.
    """
    from toolkit.store.raters import create_rater

    return create_rater(session, study, name)


def rater_for_token(session: Session, token: str) -> Rater:
    """The rater an invite token belongs to; unknown and revoked tokens are refused alike."""
    rater = session.scalar(select(Rater).where(Rater.token_hash == hash_token(token.strip())))
    if rater is None or rater.revoked:
        raise StoreError("unknown or revoked rater token")
    return rater


def revoke_rater(session: Session, rater: Rater) -> None:
    rater.revoked = True
    session.flush()
