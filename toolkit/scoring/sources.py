"""Shards of samples read as streams: WebDataset tar files, Parquet files and Hugging Face
``datasets`` folders (``save_to_disk``), besides the image files of a folder.

A shard is the unit a process of a sharded run takes whole: it is read from start to end, one
sample at a time, so a list of thousands of shards never sits in memory. Each sample becomes a
:class:`~toolkit.scoring.inputs.ScoreInput` that carries its encoded image bytes, under a stable
text key that a resumed run and the merge step match rows with:

* ``shard.tar/<key>`` for a WebDataset tar: members are grouped into samples by their name up to
  the first dot of the file name (``dir/0001.jpg`` and ``dir/0001.json`` are sample ``dir/0001``);
  a sample's image is its first member with an image extension, samples without one are skipped;
* ``file.parquet#<id>`` for a Parquet file or an Arrow file of a ``datasets`` folder: ``<id>`` is
  the text of the ``--id-column`` cell, or the row number within the file.

The image column holds a ``{bytes, path}`` struct (the ``datasets`` ``Image`` feature; ``path``
alone refers to a file, as ``save_to_disk`` stores images loaded from files), raw bytes, or a path.

A sample that cannot be read (a corrupt image, an empty cell, a member cut short) becomes an error
row and the stream goes on; a shard that cannot be read at all, or stops being readable midway,
ends with one error row keyed by the shard's own path.
"""

from __future__ import annotations

import io
import json
import logging
import tarfile
from collections.abc import Callable, Container, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torch.utils.data import IterableDataset, get_worker_info

from toolkit.errors import InputError
from toolkit.io import id_text
from toolkit.media import IMAGE_EXTENSIONS
from toolkit.models.base import Task
from toolkit.scoring.decode import BatchPreparer, BatchVisuals, Decoded, PreparedBatch, decode_input
from toolkit.scoring.inputs import ScoreInput

if TYPE_CHECKING:
    import pyarrow as pa
    from PIL import Image

log = logging.getLogger(__name__)

ShardFormat = Literal["tar", "parquet", "arrow"]
TAR_SUFFIXES: tuple[str, ...] = (".tar", ".tar.gz", ".tgz")
TABLE_SUFFIXES: dict[str, ShardFormat] = {".parquet": "parquet", ".arrow": "arrow"}
_ROWS_PER_READ = 64  # table rows decoded from a file at a time: bounded memory whatever the file size


def shard_format(path: str | Path) -> ShardFormat | None:
    """The shard format a file name says, or ``None`` for anything else."""
    name = Path(path).name.lower()
    if name.endswith(TAR_SUFFIXES):
        return "tar"
    return TABLE_SUFFIXES.get(Path(name).suffix)


def dataset_files(folder: Path) -> list[Path] | None:
    """The Arrow files of a ``datasets`` folder written by ``save_to_disk`` (every split of a
    ``DatasetDict``), in their order; ``None`` when ``folder`` is not such a folder."""
    if (folder / "dataset_dict.json").is_file():
        splits = _json(folder / "dataset_dict.json").get("splits", [])
        return [f for split in splits for f in dataset_files(folder / str(split)) or []]
    if not (folder / "state.json").is_file():
        return None
    files = _json(folder / "state.json").get("_data_files", [])
    return [folder / str(f["filename"]) for f in files if isinstance(f, dict) and "filename" in f]


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the dataset description ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: not a dataset description (expected a JSON object)")
    return data


@dataclass(frozen=True)
class ShardSource:
    """One shard file; :meth:`keys` lists its samples cheaply, :meth:`items` streams them."""

    path: str  # as given: the prefix of every key
    format: ShardFormat
    image_column: str = "image"
    id_column: str | None = None

    def keys(self) -> list[str]:
        """The keys of the samples in order, without reading images: tar headers only (seeking
        past the data of an uncompressed tar), the id column only of a table."""
        return [item.path for item in self._samples(read_images=False)]

    def items(self, skip: Container[str] = frozenset(), part: int = 0, parts: int = 1) -> Iterator[ScoreInput]:
        """The samples in order with their image bytes, those whose key is in ``skip`` unread.

        With ``parts``, only part ``part`` of them: the samples ``i`` of a tar with
        ``i % parts == part``, likewise the row groups of a Parquet file and the blocks of 64 rows
        of an Arrow file. Several decoding workers thus share one shard, each reading the data
        of its own samples only (every worker reads the tar headers). A repeated id is then
        passed over only within a part; the merge keeps one row of it.
        """
        samples = self._samples(read_images=True, skip=skip, part=part, parts=parts)
        return (item for item in samples if item.path not in skip)

    def check(self) -> None:
        """Raise :class:`InputError` when a table has no usable image or id column, so a wrong
        ``--image-column`` stops a run at once instead of filling it with error rows."""
        if self.format != "tar":
            try:
                schema = _open_table(Path(self.path), self.format)[0]
            except (OSError, ValueError) as exc:  # unreadable: an error row when it is scored
                log.debug("%s: not checked (%s)", self.path, exc)
                return
            self._columns(schema)

    def _samples(
        self, read_images: bool, skip: Container[str] = frozenset(), part: int = 0, parts: int = 1
    ) -> Iterator[ScoreInput]:
        reader = self._tar_samples if self.format == "tar" else self._table_samples
        count = [0]  # samples gone past, in every part: where a damage was met
        try:
            yield from reader(read_images, skip, part, parts, count)
        except InputError as exc:
            # A table without the columns the first one had: one row says so, the run goes on.
            if part == 0:  # every part meets it; one row is enough
                yield ScoreInput(self.path, "image", error=str(exc))
        except (OSError, EOFError, ValueError, tarfile.TarError) as exc:
            # A shard cut short or damaged: the samples before the damage stay scored, the shard
            # gets one row saying where reading stopped (retried, like any error row, on resume).
            if part == 0:
                where = f"after {count[0]} sample(s)" if count[0] else "at its start"
                reason = f"{self.path}: unreadable {where} ({type(exc).__name__}: {_one_line(exc)})"
                yield ScoreInput(self.path, "image", error=reason)

    # ------------------------------------------------------------------ WebDataset tar

    def _tar_samples(
        self, read_images: bool, skip: Container[str], part: int, parts: int, count: list[int]
    ) -> Iterator[ScoreInput]:
        seen: set[str] = set()
        with tarfile.open(self.path, mode="r:*") as tar:
            for member in tar:
                key, ext = _sample_key(member.name)
                if not member.isfile() or key is None or key in seen or ext not in _IMAGE_EXTS:
                    continue
                seen.add(key)
                count[0] += 1
                if (count[0] - 1) % parts != part:
                    continue  # another part's sample: its data is never read here
                path = f"{self.path}/{key}"
                if not read_images or path in skip:
                    yield ScoreInput(path, "image")
                    continue
                fh = tar.extractfile(member)
                try:
                    data = fh.read() if fh is not None else b""
                except (OSError, EOFError, tarfile.TarError) as exc:
                    # The shard ends here: the next header read fails and ends it with its own row.
                    yield ScoreInput(path, "image", error=f"{path}: member {member.name} cut short ({exc})")
                    continue
                yield ScoreInput(path, "image", data=data)

    # ------------------------------------------------------------------ Parquet and Arrow

    def _columns(self, schema: pa.Schema) -> tuple[str, str | None]:
        names = list(schema.names)
        if self.image_column not in names:
            raise InputError(
                f"{self.path}: no image column {self.image_column!r} (columns: {', '.join(names) or 'none'});"
                " name it with --image-column"
            )
        kind = _image_cell_kind(schema.field(self.image_column).type)
        if kind is None:
            raise InputError(
                f"{self.path}: column {self.image_column!r} holds {schema.field(self.image_column).type}, not images"
                " (a {bytes, path} struct, binary image bytes or file paths)"
            )
        if self.id_column is not None and self.id_column not in names:
            raise InputError(f"{self.path}: no id column {self.id_column!r} (columns: {', '.join(names)})")
        return self.image_column, self.id_column

    def _table_samples(
        self, read_images: bool, skip: Container[str], part: int, parts: int, count: list[int]
    ) -> Iterator[ScoreInput]:
        schema, blocks = _open_table(Path(self.path), self.format)
        image_column, id_column = self._columns(schema)
        columns = [id_column] if id_column else []
        seen: set[str] = set()
        base = Path(self.path).parent
        for row, batch in blocks([*columns, image_column] if read_images else columns, part, parts):
            count[0] = row
            ids = batch.column(id_column).to_pylist() if id_column else range(row, row + batch.num_rows)
            cells = batch.column(image_column) if read_images else None
            for i, raw in enumerate(ids):
                n = row + i
                text = id_text(raw) if id_column else str(raw)
                if text is None:
                    path = f"{self.path}#row-{n}"
                    yield ScoreInput(path, "image", error=f"{path}: empty id in column {id_column!r}")
                    continue
                path = f"{self.path}#{text}"
                if path in seen:
                    log.warning("%s: id %r repeated at row %d; scored once", self.path, text, n)
                    continue
                seen.add(path)
                if cells is None or path in skip:
                    yield ScoreInput(path, "image")
                else:
                    yield _cell_input(path, cells[i].as_py(), base)


Blocks = Callable[[list[str], int, int], Iterator[tuple[int, "pa.RecordBatch"]]]
"""``blocks(columns, part, parts)``: (first row number, record batch) of some columns, for the
blocks ``b`` of the file with ``b % parts == part`` (row groups of Parquet, 64 rows of Arrow)."""


def _open_table(path: Path, fmt: ShardFormat) -> tuple[pa.Schema, Blocks]:
    """The schema of a table file and a function streaming its record batches."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == "parquet":
        pf = pq.ParquetFile(path)

        def parquet_blocks(columns: list[str], part: int, parts: int) -> Iterator[tuple[int, pa.RecordBatch]]:
            row = 0
            for g in range(pf.num_row_groups):
                rows = pf.metadata.row_group(g).num_rows
                if g % parts == part and not columns:  # row numbers only: the metadata knows how many
                    yield row, pa.record_batch({"n": pa.nulls(rows)})
                elif g % parts == part:
                    start = row
                    for batch in pf.iter_batches(batch_size=_ROWS_PER_READ, row_groups=[g], columns=columns):
                        yield start, batch
                        start += batch.num_rows
                row += rows

        return pf.schema_arrow, parquet_blocks

    # A datasets folder writes the Arrow streaming format; a plain .arrow file may be either form.
    source = pa.memory_map(str(path), "r")  # pages are read as rows are used, never the whole file
    try:
        stream = pa.ipc.open_stream(source)
        schema = stream.schema
        first: Any = stream
    except pa.ArrowInvalid:
        source.seek(0)
        first = pa.ipc.open_file(source)
        schema = first.schema

    def arrow_blocks(columns: list[str], part: int, parts: int) -> Iterator[tuple[int, pa.RecordBatch]]:
        batches = (
            (first.get_batch(i) for i in range(first.num_record_batches)) if hasattr(first, "get_batch") else first
        )
        row = block = 0
        for batch in batches:
            for start in range(0, batch.num_rows, _ROWS_PER_READ):
                size = min(_ROWS_PER_READ, batch.num_rows - start)
                if block % parts == part:
                    picked = batch.slice(start, size)
                    yield row, picked.select(columns) if columns else pa.record_batch({"n": pa.nulls(size)})
                block += 1
                row += size

    return schema, arrow_blocks


def _image_cell_kind(dtype: pa.DataType) -> str | None:
    import pyarrow as pa

    if pa.types.is_struct(dtype) and dtype.get_field_index("bytes") >= 0:
        return "struct"
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype):
        return "bytes"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "path"
    return None


def _cell_input(path: str, cell: Any, base: Path) -> ScoreInput:
    """One table cell as an input: its bytes, or the bytes of the file it names."""
    if isinstance(cell, dict):
        data, file = cell.get("bytes"), cell.get("path")
    elif isinstance(cell, (bytes, bytearray)):
        data, file = bytes(cell), None
    else:
        data, file = None, cell
    if data:
        return ScoreInput(path, "image", data=bytes(data))
    if not file:
        return ScoreInput(path, "image", error=f"{path}: no image in the cell")
    target = Path(str(file))
    target = target if target.is_absolute() else base / target
    try:
        return ScoreInput(path, "image", data=target.read_bytes())
    except OSError as exc:
        return ScoreInput(path, "image", error=f"{path}: cannot read image file {target} ({exc.strerror or exc})")


_IMAGE_EXTS = frozenset(e.lstrip(".") for e in IMAGE_EXTENSIONS)


def _sample_key(name: str) -> tuple[str | None, str]:
    """WebDataset's split of a member name: (key, extension) at the first dot of the file name;
    ``(None, "")`` for hidden files (``._x.jpg`` of macOS archives) and names without a dot."""
    name = name.removeprefix("./")
    folder, _, base = name.rpartition("/")
    if base.startswith(".") or "." not in base:
        return None, ""
    stem, _, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


# --------------------------------------------------------------------------- decoding


def image_from_bytes(data: bytes, name: str) -> Image.Image:
    """Encoded image bytes as a fully decoded RGB image, failing as :func:`toolkit.media.open_image`
    does for a file: :class:`InputError` naming the sample and why."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except UnidentifiedImageError:
        raise InputError(f"{name}: not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as exc:
        raise InputError(f"{name}: image too large to decode safely ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: cannot decode image ({exc})") from None


def decode_item(item: ScoreInput, max_frames: int | None = None, position: int = 0) -> Decoded:
    """:func:`~toolkit.scoring.decode.decode_input` for files, the carried bytes for a sample."""
    if item.data is None or item.error:
        return decode_input(item, max_frames, position)
    try:
        return Decoded(position, [image_from_bytes(item.data, item.path)])
    except InputError as exc:
        return Decoded(position, None, str(exc))
    except Exception as exc:  # a decoder bug: report it on the row, go on
        return Decoded(position, None, f"{item.path}: {type(exc).__name__}: {exc}")


Piece = list[ScoreInput] | ShardSource
"""What one decoding worker reads whole: a block of files (a batch) or a shard."""


class SampleStream(IterableDataset):
    """The inputs of one process as a stream of ``(input, decoded)``.

    With DataLoader workers, worker ``w`` of ``n`` takes the file blocks ``w, w + n, ...`` (one batch
    long: the DataLoader takes batches from the workers in turn, so files come out in their order)
    and one part of every shard (:meth:`ShardSource.items`), so that a process given fewer shards
    than it has workers still keeps them all decoding. The parts of shard ``k`` start at worker
    ``k % n``, which spreads small shards (one row group, say) over the workers as well.
    """

    def __init__(self, pieces: Sequence[Piece], skip: Container[str], max_frames: int | None) -> None:
        self.pieces = list(pieces)
        self.skip = skip
        self.max_frames = max_frames

    def __iter__(self) -> Iterator[tuple[ScoreInput, Decoded]]:
        worker = get_worker_info()
        me, workers = (worker.id, worker.num_workers) if worker is not None else (0, 1)
        for n, piece in enumerate(self.pieces):
            if isinstance(piece, ShardSource):
                items = piece.items(self.skip, (me - n) % workers, workers)
            elif n % workers == me:
                items = iter(piece)
            else:
                continue
            for item in items:
                yield item, decode_item(item, self.max_frames)


@dataclass
class StreamBatch:
    """A collated batch: its inputs, and the decoded inputs (positions index ``items``) with the
    model inputs built for them."""

    items: list[ScoreInput]
    prepared: PreparedBatch

    def pin_memory(self, *_: Any) -> StreamBatch:
        return StreamBatch(self.items, self.prepared.pin_memory())


class StreamCollate:
    """Collate function of a :class:`SampleStream`: numbers the batch's inputs from 0 and builds
    their model inputs with :class:`~toolkit.scoring.decode.BatchPreparer`."""

    def __init__(self, backbone: Any, task: Task) -> None:
        self.backbone = backbone
        self.task = task

    def __call__(self, pairs: list[tuple[ScoreInput, Decoded]]) -> StreamBatch:
        items = [item for item, _ in pairs]
        for position, (_, decoded) in enumerate(pairs):
            decoded.position = position
        return StreamBatch(items, BatchPreparer(self.backbone, items, self.task)([d for _, d in pairs]))


class ItemVisuals(BatchVisuals):
    """:class:`~toolkit.scoring.decode.BatchVisuals` that decodes a released sample again from
    its carried bytes (a shard sample has no file to open)."""

    def __getitem__(self, index: int) -> list[Image.Image]:  # type: ignore[override]
        d = self.decoded[index]
        if d.frames is not None:
            return d.frames
        again = decode_item(self.items[d.position], self.max_frames, d.position)
        if again.frames is None:
            raise InputError(again.error or f"{self.items[d.position].path}: cannot be decoded again")
        return again.frames
