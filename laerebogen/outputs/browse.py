"""The browse page of a finished run: ``browse/index.html`` beside the dataset card.

The page opens from the file system with no server and no network: its script, style and
data are files of the folder. Browsers refuse to fetch ``file://`` URLs from a page, so each
data file is a script, ``LB.load("<name>", <JSON>);``, that the page adds when it needs it:

``meta``
    the run's totals, the labels the table's codes index, the rejections per step, the map's
    legend (:class:`Meta`);
``table``
    one column per filter, one value per conversation: filtering runs in memory;
``rows-NNNN``
    :data:`ROWS_CHUNK` conversations' ids, previews and user messages (the text search);
``conv-NNNN``
    :data:`CONV_CHUNK` whole conversations with their lineage (:mod:`.lineage`);
``rejects-NNNN``
    :data:`REJECTS_CHUNK` rejections of one step, with the record or the raw output;
``map``
    the 2-D map of the instructions (:mod:`.task_map`).

The first view loads ``meta``, ``table`` and one rows file, whatever the size of the run.
The folder is built beside the old one and replaces it whole (:func:`atomic_directory`).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import msgspec

from laerebogen.config.schema import Config
from laerebogen.errors import InvariantError
from laerebogen.log import Log, stderr_line
from laerebogen.outputs.decontaminate import Outcome, decontaminate, run_benchmarks
from laerebogen.outputs.export import Verdict, check_finished, judge_run
from laerebogen.outputs.lineage import Event, Lineage
from laerebogen.outputs.task_map import TaskMap, layout
from laerebogen.pipeline.plan import chain, final_records, import_step
from laerebogen.records import Annotation, BlockCheck, Example, Message, Passage, Rejection
from laerebogen.store.atomic import Folder, atomic_directory
from laerebogen.store.run_dir import RunStore

BROWSE_DIR = "browse"
DATA_DIR = "data"
PAGE_FILES = ("index.html", "app.js", "style.css")
ROWS_CHUNK = 2_000  # previews and user messages: about 1 MB a file
CONV_CHUNK = 100  # whole conversations with lineage: a few hundred kB a file
REJECTS_CHUNK = 1_000
FIRST_CHARS = 300  # the table's preview of the first user message
MAP_TEXT_CHARS = 160  # the map's hover text
RAW_CHARS = 4_000  # unparsable model output of a rejection, cut
MAX_REASONS = 31  # the table's reasons are bits of a JavaScript (32-bit) integer
# Rejections of the conversations decontamination removed, listed as a step of their own.
DECONTAMINATION_STEP = "decontamination"
CONTAMINATED = "contaminated"


class Facets(msgspec.Struct, frozen=True):
    """The labels that the table's codes index."""

    source: list[str]
    operation: list[str]
    domain: list[str]
    reason: list[str]


class MapInfo(msgspec.Struct, frozen=True):
    """What the map shows: how many points of how many, and the legend."""

    points: int
    total: int
    sampled: bool
    colour_by: str
    labels: list[str]


class RejectedStep(msgspec.Struct, frozen=True):
    """A step's rejections: counts per reason and the files that hold them."""

    step: str
    stage: str
    count: int
    reasons: dict[str, int]
    chunks: list[str]


class RejectionsInfo(msgspec.Struct, frozen=True):
    total: int
    chunk: int
    steps: list[RejectedStep]


class StepInfo(msgspec.Struct, frozen=True):
    """A step of the run as its merge left it."""

    step: str
    stage: str
    round: int
    records_in: int
    kept: int


class Meta(msgspec.Struct, frozen=True):
    """The page's first file: totals, labels and where everything else is."""

    title: str
    conversations: int
    filtered: int
    removed: int
    rows_chunk: int
    conv_chunk: int
    facets: Facets
    annotated: bool
    map: MapInfo | None
    rejections: RejectionsInfo
    steps: list[StepInfo]


class Table(msgspec.Struct, frozen=True):
    """One column per filter, one value per conversation (see the module docstring)."""

    source: list[int]
    generation: list[int]
    operation: list[int]  # -1: not evolved
    domain: list[int]  # -1: not annotated
    quality: list[int]  # 0: not annotated
    turns: list[int]
    failed: list[int]  # bit r: fails facets.reason[r]; 0: in the filtered version


class Rows(msgspec.Struct, frozen=True):
    start: int
    id: list[str]
    first: list[str]
    user: list[str]


class Conversation(msgspec.Struct, frozen=True):
    """A conversation as the page shows it, with its verdict and lineage."""

    id: str
    messages: tuple[Message, ...]
    origin: str
    source: str
    generation: int
    operation: str | None
    turns: int
    scores: dict[str, float]
    failed: list[str]
    annotation: Annotation | None
    code_check: tuple[BlockCheck, ...] | None
    passage: Passage | None
    lineage: list[Event]


class Conversations(msgspec.Struct, frozen=True):
    start: int
    items: list[Conversation]


class RejectedRecord(msgspec.Struct, frozen=True):
    id: str
    instruction: str
    input: str
    output: str


class Rejected(msgspec.Struct, frozen=True):
    """A rejection as the page lists it; ``shard`` None: the step's merge rejected it."""

    shard: int | None
    reason: str
    source: str | None
    detail: str
    record: RejectedRecord | None
    raw: str


class RejectsChunk(msgspec.Struct, frozen=True):
    step: str
    start: int
    items: list[Rejected]


class MapData(msgspec.Struct, frozen=True):
    x: list[float]
    y: list[float]
    row: list[int]  # the conversation's index in the table
    colour: list[int]  # index into MapInfo.labels
    text: list[str]


class MapPicture(NamedTuple):
    """The map as laid out, with what it is coloured by and each point's label: what the
    card's PNG of it is drawn from."""

    task_map: TaskMap
    colour_by: str
    labels: list[str]


class BrowseResult(NamedTuple):
    """What :func:`write_browse` wrote; ``map`` is None for an empty dataset."""

    index: Path
    conversations: int
    rejections: int
    map: MapPicture | None
    files: int
    seconds: float


class _Codes:
    """Labels numbered in the order they first occur."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self._index: dict[str, int] = {}

    def code(self, label: str) -> int:
        if label not in self._index:
            self._index[label] = len(self.labels)
            self.labels.append(label)
        return self._index[label]


class _DataFiles:
    """Writes the data files of the page being built and counts them."""

    def __init__(self, folder: Folder) -> None:
        self.folder = folder
        self.count = 0
        self._encoder = msgspec.json.Encoder()

    def write(self, name: str, value: msgspec.Struct) -> str:
        payload = self._encoder.encode(value)
        script = b'LB.load("' + name.encode() + b'", ' + payload + b");\n"
        self.folder.write(f"{DATA_DIR}/{name}.js", script)
        self.count += 1
        return name


def chunk_name(kind: str, number: int) -> str:
    """The name of data file ``number`` of a kind (``rows``, ``conv``, ``rejects``)."""
    return f"{kind}-{number:04d}"


def user_text(messages: Sequence[Message]) -> str:
    """Every user message of a conversation: what the page's text search looks in."""
    return "\n\n".join(message.content for message in messages if message.role == "user")


class _Table:
    """The table's columns, the rows and conversation files, filled conversation by
    conversation."""

    def __init__(self, files: _DataFiles) -> None:
        self.files = files
        self.columns: dict[str, list[int]] = {name: [] for name in Table.__struct_fields__}
        self.sources, self.operations, self.domains, self.reasons = (_Codes() for _ in range(4))
        self.rows: list[tuple[str, str, str]] = []
        self.conversations: list[Conversation] = []
        self.instructions: list[str] = []  # the map's texts
        self.filtered = 0

    def add(self, record: Example, verdict: Verdict, lineage: list[Event]) -> None:
        if record.id != verdict.id:
            raise InvariantError(f"the final records changed while browsing ({record.id})")
        provenance, annotation = record.provenance, record.annotation
        messages = record.conversation()
        turns = sum(message.role == "user" for message in messages)
        failed = 0
        for reason in verdict.failed:
            failed |= 1 << self.reasons.code(reason)
        if len(self.reasons.labels) > MAX_REASONS:
            raise InvariantError(f"more than {MAX_REASONS} reasons to leave a conversation out")
        self.filtered += not verdict.failed
        for name, value in (
            ("source", self.sources.code(provenance.source)),
            ("generation", provenance.generation),
            (
                "operation",
                self.operations.code(provenance.operation) if provenance.operation else -1,
            ),
            ("domain", self.domains.code(annotation.domain) if annotation else -1),
            ("quality", annotation.quality if annotation else 0),
            ("turns", turns),
            ("failed", failed),
        ):
            self.columns[name].append(value)
        first = record.first_user_message()
        self.instructions.append(record.instruction)
        self.rows.append((record.id, first[:FIRST_CHARS], user_text(messages)))
        self.conversations.append(
            Conversation(
                id=record.id,
                messages=messages,
                origin=provenance.origin,
                source=provenance.source,
                generation=provenance.generation,
                operation=provenance.operation,
                turns=turns,
                scores=verdict.scores,
                failed=verdict.failed,
                annotation=annotation,
                code_check=record.code_check,
                passage=provenance.passage,
                lineage=lineage,
            )
        )
        self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        """Write the rows and conversation files that are full (all, at the end)."""
        count = len(self.instructions)
        if self.rows and (final or count % ROWS_CHUNK == 0):
            start = count - len(self.rows)
            ids, firsts, users = (list(column) for column in zip(*self.rows, strict=True))
            self.files.write(
                chunk_name("rows", start // ROWS_CHUNK), Rows(start, ids, firsts, users)
            )
            self.rows = []
        if self.conversations and (final or count % CONV_CHUNK == 0):
            start = count - len(self.conversations)
            chunk = Conversations(start, self.conversations)
            self.files.write(chunk_name("conv", start // CONV_CHUNK), chunk)
            self.conversations = []

    def finish(self) -> Table:
        self._flush(final=True)
        return Table(**self.columns)

    def facets(self) -> Facets:
        return Facets(
            self.sources.labels, self.operations.labels, self.domains.labels, self.reasons.labels
        )


def _write_conversations(
    files: _DataFiles,
    store: RunStore,
    config: Config,
    verdicts: Sequence[Verdict],
    removed: Collection[str],
) -> tuple[_Table, Table, list[Example]]:
    """The table, rows and conversation files of the dataset's conversations (in the order of
    ``verdicts``); returns what filled them, the table's columns and the final records
    decontamination removed."""
    lineage = Lineage(store, config)
    table = _Table(files)
    contaminated: list[Example] = []
    conversations = iter(verdicts)
    for record in final_records(store, config):
        if record.id in removed:
            contaminated.append(record)
            continue
        verdict = next(conversations, None)
        if verdict is None:
            raise InvariantError(f"the final records changed while browsing ({record.id})")
        table.add(record, verdict, lineage.events(record))
    if next(conversations, None) is not None:
        raise InvariantError("the final records changed while browsing (fewer records)")
    columns = table.finish()
    files.write("table", columns)
    return table, columns, contaminated


def map_colours(table: Table, facets: Facets) -> tuple[str, list[str]]:
    """What the map is coloured by and each conversation's label: the annotation's domain
    where the run annotated, else the source when there are several, else the generation."""
    if any(code >= 0 for code in table.domain):
        labels = [*facets.domain, "not annotated"]
        return "domain", [labels[code] for code in table.domain]
    if len(facets.source) > 1:
        return "source", [facets.source[code] for code in table.source]
    return "generation", [f"generation {generation}" for generation in table.generation]


def _write_map(
    files: _DataFiles, table: Table, facets: Facets, instructions: list[str], task_map: TaskMap
) -> tuple[MapInfo, MapPicture]:
    colour_by, labels = map_colours(table, facets)
    codes = _Codes()
    rows = [int(row) for row in task_map.rows]
    data = MapData(
        x=[round(float(x), 3) for x in task_map.xy[:, 0]],
        y=[round(float(y), 3) for y in task_map.xy[:, 1]],
        row=rows,
        colour=[codes.code(labels[row]) for row in rows],
        text=[instructions[row][:MAP_TEXT_CHARS] for row in rows],
    )
    files.write("map", data)
    info = MapInfo(len(rows), task_map.total, task_map.sampled, colour_by, codes.labels)
    return info, MapPicture(task_map, colour_by, [labels[row] for row in rows])


def _rejected(rejection: Rejection, shard: int | None) -> Rejected:
    record = rejection.record
    return Rejected(
        shard=shard,
        reason=rejection.reason,
        source=rejection.source_id,
        detail=rejection.detail,
        record=RejectedRecord(record.id, record.instruction, record.input, record.output)
        if record
        else None,
        raw=rejection.raw[:RAW_CHARS],
    )


def _step_rejections(store: RunStore, step: str) -> Iterator[Rejected]:
    """Every rejection of ``step``: its shards' in shard order, then its merge's."""
    for index in store.done_shards(step):
        for rejection in store.read_rejects(step, index):
            yield _rejected(rejection, index)
    if store.merged_manifest(step) is not None:
        for rejection in store.read_merge_rejects(step):
            yield _rejected(rejection, None)


def _write_rejections(
    files: _DataFiles, step: str, stage: str, rejections: Iterable[Rejected], first_chunk: int
) -> RejectedStep:
    """One step's rejections in files of :data:`REJECTS_CHUNK`, numbered from ``first_chunk``."""
    reasons: dict[str, int] = {}
    chunks: list[str] = []
    batch: list[Rejected] = []
    count = 0

    def flush() -> None:
        name = chunk_name("rejects", first_chunk + len(chunks))
        chunks.append(files.write(name, RejectsChunk(step, count - len(batch), batch)))

    for rejected in rejections:
        reasons[rejected.reason] = reasons.get(rejected.reason, 0) + 1
        batch.append(rejected)
        count += 1
        if len(batch) == REJECTS_CHUNK:
            flush()
            batch = []
    if batch:
        flush()
    return RejectedStep(step, stage, count, dict(sorted(reasons.items())), chunks)


def _rejected_steps(
    store: RunStore, config: Config, contaminated: list[Example]
) -> Iterator[tuple[str, str, Iterable[Rejected]]]:
    """(step, stage, rejections) of every step of the run, imports and decontamination last."""
    for plan, _ in chain(store):
        yield plan.step, plan.stage, _step_rejections(store, plan.step)
    for name in sorted(config.sources.imports):
        yield import_step(name), "import", _step_rejections(store, import_step(name))
    if contaminated:
        detail = "matched an evaluation set: in neither version (the card's Decontamination)"
        removed = (
            _rejected(Rejection(CONTAMINATED, record.id, detail, record), None)
            for record in contaminated
        )
        yield DECONTAMINATION_STEP, DECONTAMINATION_STEP, removed


def _steps(store: RunStore) -> list[StepInfo]:
    return [
        StepInfo(plan.step, plan.stage, plan.round, merged.records_in, merged.kept)
        for plan, merged in chain(store)
        if merged is not None
    ]


def copy_page(folder: Folder) -> None:
    """The page's own files (HTML, script, style), from the package."""
    page = resources.files("laerebogen.outputs").joinpath("browse_page")
    for name in PAGE_FILES:
        folder.write(name, page.joinpath(name).read_bytes())


def write_browse(
    store: RunStore,
    config: Config,
    out: Path | None = None,
    *,
    decontamination: Outcome | None = None,
    verdicts: Sequence[Verdict] | None = None,
    log: Log = stderr_line,
) -> BrowseResult:
    """Write the browse page of a finished run into ``<out>/browse`` (``out``: the folder of
    the export and card, default the run directory).

    ``decontamination`` and ``verdicts`` are the export's (None: decontaminate and judge
    anew), so the page shows the conversations of the dataset files.
    """
    started = time.monotonic()
    check_finished(store)
    if decontamination is None:
        decontamination = decontaminate(store, config, run_benchmarks(store, config), log=log)
    removed = decontamination.removed
    if verdicts is None:
        verdicts = judge_run(store, config, removed)
    log(f"browse: writing {len(verdicts)} conversations with their lineage")
    folder = (store.root if out is None else Path(out)) / BROWSE_DIR
    with atomic_directory(folder) as building:
        copy_page(building)
        files = _DataFiles(building)
        table, columns, contaminated = _write_conversations(files, store, config, verdicts, removed)
        facets = table.facets()
        rejected_steps: list[RejectedStep] = []
        for step, stage, rejections in _rejected_steps(store, config, contaminated):
            first = sum(len(done.chunks) for done in rejected_steps)
            rejected_steps.append(_write_rejections(files, step, stage, rejections, first))
        total = sum(step.count for step in rejected_steps)
        log(f"browse: laying out the map of {len(table.instructions)} instructions")
        task_map = layout(table.instructions, config.seed)
        map_info, picture = (
            _write_map(files, columns, facets, table.instructions, task_map)
            if len(task_map.rows)
            else (None, None)
        )
        meta = Meta(
            title=store.root.resolve().name,
            conversations=len(verdicts),
            filtered=table.filtered,
            removed=len(contaminated),
            rows_chunk=ROWS_CHUNK,
            conv_chunk=CONV_CHUNK,
            facets=facets,
            annotated=config.annotate.enabled,
            map=map_info,
            rejections=RejectionsInfo(total, REJECTS_CHUNK, rejected_steps),
            steps=_steps(store),
        )
        files.write("meta", meta)
    seconds = time.monotonic() - started
    return BrowseResult(folder / PAGE_FILES[0], len(verdicts), total, picture, files.count, seconds)


def browse_summary(result: BrowseResult) -> str:
    """One line: what the page holds and where it is."""
    return (
        f"browse: {result.conversations} conversations, {result.rejections} rejections, "
        f"{len(result.map.labels) if result.map else 0} points on the map, "
        f"{result.files} data files "
        f"({result.seconds:.1f} s) -> {result.index}"
    )
