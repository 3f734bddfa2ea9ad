"""``laerebogen report``: the figures of a finished run as ``stats.json`` and PNG plots.

The numbers are what a dataset card needs and what a user checks before trusting a run: the
funnel of every step (records in, out, rejected by reason in the shards and in the merge, kept,
and the base-generation records the target left out), the dataset's shape (words per message
by role, turns, origins, evolution generations and operations) and its quality scores (LIX,
Danish confidence) with the filtered version's thresholds and how many conversations each one
removed, and, when the run annotated, its domains, task types, difficulty, quality and harm
verdicts, and, when it checked code, its code blocks by language and outcome. Everything is
computed from the run's state files and one pass over the final
records; the same run gives the same bytes.

Plots are drawn with matplotlib's object API (no pyplot, no display: it runs headless on any
node) and saved without timestamps, so they too are reproducible. Count axes have integer ticks;
a panel with no data is left out (a plot with none is not drawn), and ``stats.json`` names it so
the card can say so.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import msgspec

from laerebogen.config.schema import Config
from laerebogen.filtering.readability import word_count
from laerebogen.outputs import figures as drawing
from laerebogen.outputs.decontaminate import (
    DecontaminationStats,
    Outcome,
    decontaminate,
    run_benchmarks,
)
from laerebogen.outputs.export import (
    Judged,
    annotation_rules,
    check_finished,
    code_rules,
    dataset_records,
    export_scores,
    judge_filtered,
)
from laerebogen.outputs.models import ModelStats, model_stats
from laerebogen.outputs.status import RunTotals, StepStatus, run_status, totals
from laerebogen.pipeline.imports import ImportResult, import_file
from laerebogen.pipeline.plan import STAGE_SOURCES, source_targets
from laerebogen.records import CODE_FAILURES, LANGUAGE_SCORE, Annotation, CodeOutcome, Example
from laerebogen.seeds import SEED_STAGE
from laerebogen.stages.taxonomy import LEVELS, load_taxonomy
from laerebogen.store.atomic import atomic_write
from laerebogen.store.run_dir import RunStore

if TYPE_CHECKING:  # matplotlib is imported only to draw
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

STATS_FILE = "stats.json"
PLOTS_DIR = "plots"
DEDUP_REASONS = ("near_duplicate", "duplicate_id")
ROLES = ("user", "assistant")


class Panel(NamedTuple):
    """One chart of a plot: the plot (PNG file) it is in, its title, and what the run lacks
    when it is empty."""

    plot: str
    title: str
    missing: str


PANELS = {
    "funnel": Panel("funnel", "Funnel per step", "steps"),
    "lengths": Panel("lengths", "Words per message", "messages"),
    "turns": Panel("turns", "Turns per conversation", "conversations"),
    "generations": Panel("evolution", "Evolution generation", "conversations"),
    "operations": Panel("evolution", "Evolution operation", "evolved conversations"),
    "language": Panel("language", "Danish confidence (lingua)", "language-judged conversations"),
    "lix": Panel("lix", "LIX of the answers", "conversations"),
    "domains": Panel("annotation", "Domain", "annotated conversations"),
    "task_types": Panel("annotation", "Task type", "annotated conversations"),
    "difficulty": Panel("annotation", "Difficulty (1-5)", "annotated conversations"),
    "quality": Panel("annotation", "Quality of the answers (1-5)", "annotated conversations"),
    "code": Panel("code", "Code blocks by language and outcome", "code blocks"),
}
ANNOTATION_PANELS = ("domains", "task_types", "difficulty", "quality")
PLOTS = tuple(dict.fromkeys(panel.plot for panel in PANELS.values()))


class Distribution(msgspec.Struct, frozen=True):
    """Summary of a list of numbers; all zero for an empty list."""

    count: int
    mean: float
    minimum: float
    p10: float
    median: float
    p90: float
    maximum: float


class AnnotationStats(msgspec.Struct, frozen=True):
    """The annotate step's judgements of the final conversations; every label of the
    taxonomy is a key, with 0 when no conversation got it."""

    annotated: int
    unannotated: int  # no usable reply after the retry (kept, left out of the filtered version)
    domains: dict[str, int]
    task_types: dict[str, int]
    difficulty: dict[str, int]  # level 1-5 -> conversations
    quality: dict[str, int]
    harm: dict[str, int]  # "nej" (harmless) and each hazard category -> conversations


# Outcomes in the order tables show them: what ran, the failures, what was not judged.
OUTCOMES: tuple[CodeOutcome, ...] = ("ok", *CODE_FAILURES, "not_verifiable", "not_checked")
TOP_DETAILS = 10  # the most frequent details (exception types, needs) per outcome in stats


class CodeCheckStats(msgspec.Struct, frozen=True):
    """The code_check step's results over the final conversations."""

    conversations_with_code: int
    blocks: int
    outcomes: dict[str, int]  # outcome -> blocks, every outcome
    languages: dict[str, dict[str, int]]  # language -> outcome -> blocks, most blocks first
    details: dict[str, dict[str, int]]  # outcome -> its most frequent details -> blocks
    sandboxes: dict[str, int]  # isolation the step ran with -> conversations


class SourceStats(msgspec.Struct, frozen=True):
    """The conversations of one source in both versions of the dataset."""

    conversations: int
    filtered: int


class DatasetStats(msgspec.Struct, frozen=True):
    """What ``stats.json`` holds."""

    name: str
    seed: int
    models: dict[str, ModelStats]  # [models.NAME] -> its directory and work, per step
    seed_tasks: int
    conversations: int
    filtered: int  # conversations in the filtered version
    filters: dict[str, float]  # the score thresholds of the filtered version
    annotation_rules: dict[str, float]  # its rules on the annotation (none without annotation)
    code_rules: dict[str, float]  # its rules on the checked code (none without code_check)
    # conversations each threshold or rule removes (one may fail several)
    failed_filters: dict[str, int]
    origins: dict[str, int]
    sources: dict[str, SourceStats]  # source of the task -> conversations, most first
    # grounded tasks: question kind -> form (reading, closed_book) -> conversations
    grounded_questions: dict[str, dict[str, int]]
    magpie_steering: dict[str, int]  # Magpie tasks by the steering that made them
    imports: list[ImportResult]  # each imported dataset: rows, kept, rejections, entry step
    generations: dict[str, int]  # evolution generation (0: not evolved) -> conversations
    operations: dict[str, int]  # evolution operation of evolved conversations
    turns: dict[str, int]  # user turns -> conversations
    words: dict[str, Distribution]  # words per message, by role
    lix: Distribution
    danish_confidence: Distribution
    annotation: AnnotationStats | None  # None: the run did not annotate
    code_check: CodeCheckStats | None  # None: the run did not check code
    # None: no benchmark to check against; else what each one matched and what left the dataset
    decontamination: DecontaminationStats | None
    dedup: dict[str, int]  # the merges' duplicate rejections over the run, by reason
    steps: list[StepStatus]
    left_out_by_target: dict[str, int]  # base step -> kept records past its source's target
    total: RunTotals
    plots: dict[str, str]  # plot name -> path relative to stats.json; only plots with data
    omitted: list[str]  # panels of :data:`PANELS` left out: the run has no data for them


class _Samples:
    """The per-conversation numbers the statistics and plots are made from."""

    def __init__(self) -> None:
        self.words: dict[str, list[int]] = {role: [] for role in ROLES}
        self.lix: list[float] = []
        self.confidence: list[float] = []
        self.turns: Counter[int] = Counter()
        self.origins: Counter[str] = Counter()
        self.sources: list[str] = []  # each conversation's, in order
        self.grounded: Counter[tuple[str, str]] = Counter()  # (kind, form) -> conversations
        self.steering: Counter[str] = Counter()
        self.generations: Counter[int] = Counter()
        self.operations: Counter[str] = Counter()
        self.filter_inputs: list[Judged] = []
        self.code: Counter[tuple[str, str]] = Counter()  # (language, outcome) -> blocks
        self.code_details: Counter[tuple[str, str]] = Counter()  # (outcome, detail) -> blocks
        self.with_code = 0
        self.sandboxes: Counter[str] = Counter()
        self.count = 0

    @property
    def annotations(self) -> list[Annotation]:
        """The annotations of the conversations that have one."""
        return [entry.annotation for entry in self.filter_inputs if entry.annotation is not None]

    def add(self, record: Example) -> None:
        scores = export_scores(record)
        self.filter_inputs.append(Judged.of(record, scores))
        checks = record.code_check or ()
        self.with_code += bool(checks)
        for check in checks:
            self.code[check.language, check.outcome] += 1
            if check.detail:
                self.code_details[check.outcome, check.detail] += 1
        for step in record.provenance.steps:
            if step.stage == "code_check":
                self.sandboxes[step.note.removeprefix("sandbox: ")] += 1
            elif step.stage == "grounded":
                kind, _, form = step.note.partition(" ")
                self.grounded[kind, form] += 1
            elif step.stage == "magpie":
                self.steering[step.note.removeprefix("steering ")] += 1
        for message in record.conversation():
            if message.role in self.words:
                self.words[message.role].append(word_count(message.content))
        self.lix.append(scores["lix"])
        if LANGUAGE_SCORE in scores:
            self.confidence.append(scores[LANGUAGE_SCORE])
        self.turns[int(scores["turns"])] += 1
        provenance = record.provenance
        self.origins[provenance.origin] += 1
        self.sources.append(provenance.source)
        self.generations[provenance.generation] += 1
        if provenance.operation:
            self.operations[provenance.operation] += 1
        self.count += 1


def distribution(values: Sequence[float]) -> Distribution:
    """Count, mean, extremes and the interpolated 10th, 50th and 90th percentiles."""
    if not values:
        return Distribution(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    ordered = sorted(values)
    deciles = (
        statistics.quantiles(ordered, n=10, method="inclusive")
        if len(ordered) > 1
        else [float(ordered[0])] * 9
    )
    return Distribution(
        count=len(ordered),
        mean=round(statistics.fmean(ordered), 4),
        minimum=float(ordered[0]),
        p10=round(deciles[0], 4),
        median=round(deciles[4], 4),
        p90=round(deciles[8], 4),
        maximum=float(ordered[-1]),
    )


def _keyed(counts: Counter[int] | Counter[str]) -> dict[str, int]:
    """A counter as a JSON object with keys in their natural order."""
    return {str(key): counts[key] for key in sorted(counts)}  # type: ignore[type-var]


def left_out_by_target(steps: Sequence[StepStatus], targets: Mapping[str, int]) -> dict[str, int]:
    """Per base step, its kept records that did not go on because the source's rounds
    overshot its target (``targets``: records per source). The cut is taken from the source's
    last rounds, as the run takes each source's records in round order."""
    left_out: dict[str, int] = {}
    for source, target in targets.items():
        rounds = [step for step in steps if STAGE_SOURCES.get(step.stage) == source]
        surplus = sum(step.kept or 0 for step in rounds) - target
        for step in reversed(rounds):
            left_out[step.step] = min(max(surplus, 0), step.kept or 0)
            surplus -= left_out[step.step]
    return {step.step: left_out[step.step] for step in steps if step.step in left_out}


def _by_kind_and_form(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    """Grounded tasks as kind -> form -> conversations, in the order of the names."""
    table: dict[str, dict[str, int]] = {}
    for (kind, form), count in sorted(counts.items()):
        table.setdefault(kind, {})[form] = count
    return table


def source_stats(samples: _Samples, failures: Sequence[Sequence[str]]) -> dict[str, SourceStats]:
    """Conversations per source in the complete and the filtered version, most first."""
    complete = Counter(samples.sources)
    passed = Counter(
        source for source, failed in zip(samples.sources, failures, strict=True) if not failed
    )
    return {
        source: SourceStats(count, passed[source])
        for source, count in sorted(complete.items(), key=lambda item: (-item[1], item[0]))
    }


def empty_panels(samples: _Samples, steps: Sequence[StepStatus]) -> list[str]:
    """The panels of :data:`PANELS` with nothing to show."""
    annotated = len(samples.annotations)
    sizes = {
        "funnel": len(steps),
        "lengths": sum(len(words) for words in samples.words.values()),
        "turns": samples.count,
        "generations": samples.count,
        "operations": samples.operations.total(),
        "language": len(samples.confidence),
        "lix": len(samples.lix),
        **dict.fromkeys(ANNOTATION_PANELS, annotated),
        "code": samples.code.total(),
    }
    return [name for name in PANELS if not sizes[name]]


def annotation_stats(
    config: Config, annotations: Sequence[Annotation], count: int
) -> AnnotationStats:
    """The counts of every label of the run's taxonomy over ``annotations`` (of ``count``
    final conversations)."""
    taxonomy = load_taxonomy(config.annotate.taxonomy_path())

    def counted(labels: Sequence[str], values: Iterable[str]) -> dict[str, int]:
        """Every label in the taxonomy's order, then any label the taxonomy no longer has
        (its file was edited during the run): nothing judged goes uncounted."""
        found = Counter(values)
        return {**{label: found[label] for label in labels}, **found}

    return AnnotationStats(
        annotated=len(annotations),
        unannotated=count - len(annotations),
        domains=counted(taxonomy.domains, (a.domain for a in annotations)),
        task_types=counted(taxonomy.task_types, (a.task_type for a in annotations)),
        difficulty=counted(LEVELS, (str(a.difficulty) for a in annotations)),
        quality=counted(LEVELS, (str(a.quality) for a in annotations)),
        harm=counted(taxonomy.verdicts, (a.harm for a in annotations)),
    )


def code_check_stats(samples: _Samples) -> CodeCheckStats:
    """Blocks by outcome, by language and outcome, and the outcomes' frequent details."""
    languages: dict[str, Counter[str]] = {}
    for (language, outcome), blocks in samples.code.items():
        languages.setdefault(language, Counter())[outcome] += blocks
    ordered = sorted(languages.items(), key=lambda item: (-item[1].total(), item[0]))
    details: dict[str, dict[str, int]] = {}
    for (outcome, detail), blocks in sorted(samples.code_details.items()):
        details.setdefault(outcome, {})[detail] = blocks
    return CodeCheckStats(
        conversations_with_code=samples.with_code,
        blocks=samples.code.total(),
        outcomes={o: sum(c[o] for _, c in ordered) for o in OUTCOMES},
        languages={language: {o: c[o] for o in OUTCOMES if c[o]} for language, c in ordered},
        details={
            outcome: dict(Counter(found).most_common(TOP_DETAILS))
            for outcome, found in sorted(details.items(), key=lambda i: OUTCOMES.index(i[0]))
        },
        sandboxes=dict(sorted(samples.sandboxes.items())),
    )


def collect(
    store: RunStore,
    config: Config,
    records: Iterable[Example],
    decontamination: DecontaminationStats | None = None,
) -> tuple[DatasetStats, _Samples]:
    """The statistics of a finished run whose dataset is ``records`` (the final records left by
    ``decontamination``)."""
    filters = config.export.thresholds()
    rules, checks = annotation_rules(config), code_rules(config)
    samples = _Samples()
    for record in records:
        samples.add(record)
    failures = judge_filtered(samples.filter_inputs, filters, rules | checks)
    failed = Counter(name for names in failures for name in names)
    steps = run_status(store.root)
    run_totals = totals(steps)
    omitted = empty_panels(samples, steps)
    drawn = {panel.plot for name, panel in PANELS.items() if name not in omitted}
    stats = DatasetStats(
        name=config.name,
        seed=config.seed,
        models=model_stats(store, config),
        seed_tasks=store.manifest(SEED_STAGE, 0).outputs,
        conversations=samples.count,
        filtered=sum(not names for names in failures),
        filters=filters,
        annotation_rules=rules,
        code_rules=checks,
        failed_filters={name: failed[name] for name in [*filters, *rules, *checks]},
        origins=_keyed(samples.origins),
        sources=source_stats(samples, failures),
        grounded_questions=_by_kind_and_form(samples.grounded),
        magpie_steering=_keyed(samples.steering),
        imports=[
            result
            for name in sorted(config.sources.imports)
            if (result := store.read_state(import_file(name), ImportResult)) is not None
        ],
        generations=_keyed(samples.generations),
        operations=_keyed(samples.operations),
        turns=_keyed(samples.turns),
        words={role: distribution(values) for role, values in samples.words.items()},
        lix=distribution(samples.lix),
        danish_confidence=distribution(samples.confidence),
        annotation=(
            annotation_stats(config, samples.annotations, samples.count)
            if config.annotate.enabled
            else None
        ),
        code_check=code_check_stats(samples) if config.code_check.enabled else None,
        decontamination=decontamination,
        dedup={reason: run_totals.merge_rejected.get(reason, 0) for reason in DEDUP_REASONS},
        steps=steps,
        left_out_by_target=left_out_by_target(steps, source_targets(config)),
        total=run_totals,
        plots={name: f"{PLOTS_DIR}/{name}.png" for name in PLOTS if name in drawn},
        omitted=omitted,
    )
    return stats, samples


# ---------------------------------------------------------------- plots


def _counts_on(axis: Axis) -> None:
    """Integer ticks on an axis of counts (there is no half a conversation)."""
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _bars(axes: Axes, counts: Mapping[str, int], title: str, xlabel: str) -> None:
    axes.bar(list(counts), list(counts.values()), color="#4c72b0")
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("conversations")
    _counts_on(axes.yaxis)
    for label in axes.get_xticklabels():
        label.set_rotation(20 if len(counts) > 4 else 0)


def plot_lengths(samples: _Samples) -> Figure:
    """Words per message by role, on a log scale (answers run from one line to pages)."""
    import numpy as np

    figure, (axes,) = drawing.figure()
    longest = max((max(v) for v in samples.words.values() if v), default=1)
    bins = np.unique(np.geomspace(1, max(longest, 2) + 1, 40).astype(int))
    for role, color in zip(ROLES, ("#dd8452", "#4c72b0"), strict=True):
        values = [max(value, 1) for value in samples.words[role]]
        axes.hist(values, bins=bins, histtype="step", linewidth=2, label=role, color=color)
    axes.set_xscale("log")
    axes.set_title(PANELS["lengths"].title)
    axes.set_xlabel("words (log scale)")
    axes.set_ylabel("messages")
    _counts_on(axes.yaxis)
    axes.legend()
    return figure


def plot_turns(stats: DatasetStats) -> Figure:
    """Conversations by their number of user turns."""
    figure, (axes,) = drawing.figure()
    _bars(axes, stats.turns, PANELS["turns"].title, "user turns")
    return figure


def plot_evolution(stats: DatasetStats) -> Figure:
    """Conversations by evolution generation and by the operation that made them; a panel
    without data (no conversation evolved) is left out."""
    panels = [
        (PANELS[name].title, counts, xlabel)
        for name, counts, xlabel in (
            ("generations", stats.generations, "generation (0: not evolved)"),
            ("operations", stats.operations, ""),
        )
        if name not in stats.omitted
    ]
    figure, axes = drawing.figure(columns=len(panels), width=5.5)
    for chart, (title, counts, xlabel) in zip(axes, panels, strict=True):
        _bars(chart, counts, title, xlabel)
    return figure


def plot_funnel(stats: DatasetStats) -> Figure:
    """Per step: records in, out of the shards, kept by the merge, and (when any were) left
    out by the generation target."""
    import numpy as np

    steps = [status.step for status in stats.steps]
    height = max(3.0, 0.45 * len(steps) + 1.5)
    figure, (axes,) = drawing.figure(width=8.0, height=height)
    rows = np.arange(len(steps))
    series = [
        ("in", [s.records_in for s in stats.steps], "#9aa5b1"),
        ("out of the shards", [s.records_out for s in stats.steps], "#4c72b0"),
        ("kept by the merge", [s.kept or 0 for s in stats.steps], "#55a868"),
    ]
    left_out = [stats.left_out_by_target.get(step, 0) for step in steps]
    if any(left_out):
        series.append(("left out by the target", left_out, "#c44e52"))
    bar = 0.81 / len(series)
    for position, (label, values, color) in enumerate(series):
        offset = (position - (len(series) - 1) / 2) * bar
        axes.barh(rows + offset, values, height=bar, label=label, color=color)
    axes.set_yticks(rows, steps)
    axes.invert_yaxis()
    axes.set_xlabel("records")
    _counts_on(axes.xaxis)
    axes.set_title(PANELS["funnel"].title)
    axes.legend(loc="lower right")
    return figure


def plot_language(samples: _Samples, stats: DatasetStats) -> Figure:
    """Danish confidence of the conversations, with the filtered version's threshold."""
    figure, (axes,) = drawing.figure()
    axes.hist(samples.confidence, bins=40, range=(0.0, 1.0), color="#4c72b0")
    threshold = stats.filters.get(f"min_{LANGUAGE_SCORE}")
    if threshold is not None:
        axes.axvline(threshold, color="#c44e52", linestyle="--", label="filtered version")
        axes.legend(loc="upper left")
    axes.set_title(PANELS["language"].title)
    axes.set_xlabel("confidence")
    axes.set_ylabel("conversations")
    _counts_on(axes.yaxis)
    return figure


def plot_lix(samples: _Samples, stats: DatasetStats) -> Figure:
    """LIX of the answers, with the filtered version's bounds."""
    figure, (axes,) = drawing.figure()
    axes.hist(samples.lix, bins=40, color="#4c72b0")
    for name in ("min_lix", "max_lix"):
        if name in stats.filters:
            axes.axvline(stats.filters[name], color="#c44e52", linestyle="--")
    axes.set_title(f"{PANELS['lix'].title} (dashed: the filtered version's bounds)")
    axes.set_xlabel("LIX")
    axes.set_ylabel("conversations")
    _counts_on(axes.yaxis)
    return figure


def plot_annotation(stats: DatasetStats) -> Figure:
    """The annotation's domains, task types, difficulty and quality, one panel each."""
    annotation = stats.annotation
    assert annotation is not None
    panels = [
        ("domains", annotation.domains, ""),
        ("task_types", annotation.task_types, ""),
        ("difficulty", annotation.difficulty, "level"),
        ("quality", annotation.quality, "level"),
    ]
    figure, axes = drawing.figure(columns=len(panels), width=5.5, height=4.5)
    for chart, (name, counts, xlabel) in zip(axes, panels, strict=True):
        _bars(chart, counts, PANELS[name].title, xlabel)
        labelled = name in ("domains", "task_types")  # long names; levels are digits
        for label in chart.get_xticklabels():
            label.set_rotation(60 if labelled else 0)
            label.set_horizontalalignment("right" if labelled else "center")
    return figure


def plot_code(stats: DatasetStats) -> Figure:
    """Code blocks per language (most first), stacked by outcome."""
    code = stats.code_check
    assert code is not None
    figure, (axes,) = drawing.figure(width=8.0)
    languages = list(code.languages)
    bottom = [0] * len(languages)
    colours = ("#55a868", "#c44e52", "#dd8452", "#8172b3", "#937860", "#9aa5b1", "#cccccc")
    for outcome, colour in zip(OUTCOMES, colours, strict=True):
        counts = [code.languages[language].get(outcome, 0) for language in languages]
        if any(counts):
            axes.bar(languages, counts, bottom=bottom, label=outcome, color=colour)
            bottom = [low + count for low, count in zip(bottom, counts, strict=True)]
    axes.set_title(PANELS["code"].title)
    axes.set_ylabel("code blocks")
    _counts_on(axes.yaxis)
    axes.legend()
    return figure


def figures(stats: DatasetStats, samples: _Samples) -> dict[str, Figure]:
    """The plots of ``stats.plots`` (those with data) as matplotlib figures."""
    draw_plot: dict[str, Callable[[], Figure]] = {
        "funnel": lambda: plot_funnel(stats),
        "lengths": lambda: plot_lengths(samples),
        "turns": lambda: plot_turns(stats),
        "evolution": lambda: plot_evolution(stats),
        "language": lambda: plot_language(samples, stats),
        "lix": lambda: plot_lix(samples, stats),
        "annotation": lambda: plot_annotation(stats),
        "code": lambda: plot_code(stats),
    }
    return {name: draw_plot[name]() for name in stats.plots}


def draw(stats: DatasetStats, samples: _Samples) -> dict[str, bytes]:
    """The plots of ``stats.plots`` as PNG bytes."""
    return {name: drawing.png(figure) for name, figure in figures(stats, samples).items()}


# ---------------------------------------------------------------- the report


class Report(msgspec.Struct, frozen=True):
    """Where a report was written."""

    stats: DatasetStats
    stats_path: Path
    plot_paths: dict[str, Path]


def write_report(
    store: RunStore,
    config: Config,
    out_dir: Path | None = None,
    decontamination: Outcome | None = None,
) -> Report:
    """Write ``stats.json`` and ``plots/*.png`` of a finished run into ``out_dir`` (default:
    the run directory); ``decontamination`` is the export's (None: decontaminate anew)."""
    check_finished(store)
    directory = store.root if out_dir is None else Path(out_dir)
    if decontamination is None:
        decontamination = decontaminate(store, config, run_benchmarks(store, config))
    records = dataset_records(store, config, decontamination.removed)
    stats, samples = collect(store, config, records, decontamination.stats)
    stats_path = atomic_write(
        directory / STATS_FILE, msgspec.json.format(msgspec.json.encode(stats)) + b"\n"
    )
    plot_paths = {
        name: atomic_write(directory / stats.plots[name], png)
        for name, png in draw(stats, samples).items()
    }
    for name in set(PLOTS) - set(plot_paths):  # no data now: no plot of an earlier report
        (directory / PLOTS_DIR / f"{name}.png").unlink(missing_ok=True)
    return Report(stats, stats_path, plot_paths)


def report_summary(report: Report) -> str:
    """What a report wrote and its headline figures."""
    stats = report.stats
    return "\n".join(
        [
            f"conversations: {stats.conversations} ({stats.filtered} in the filtered version)",
            f"stats: {report.stats_path}",
            f"plots: {', '.join(str(path) for path in report.plot_paths.values())}",
        ]
    )
