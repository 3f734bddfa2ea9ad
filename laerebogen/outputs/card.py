"""The dataset card: a Hugging Face ``README.md`` written next to the export.

The card is rendered from the run's own figures (:class:`laerebogen.outputs.report.DatasetStats`)
and its config, never from hand-kept text, so it cannot disagree with the data: models and
sampling per stage, seed count, the funnel of every step with its rejection reasons and the
records the generation target left out, dedup counts, evolution generations and operations, the
thresholds of the filtered version with why each is set, the annotation's domains, task types,
difficulty, quality and harm counts (categories only: no harmful text is quoted), the code
check's blocks per language and outcome with the sandbox it ran in, an example
conversation from the filtered version, the plots (a sentence in place of a panel without data),
compute and limitations.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from laerebogen import __version__
from laerebogen.config.schema import ANNOTATION_RULES, Config, Sampling
from laerebogen.filtering.heuristics import MAX_WORDS, MIN_INSTRUCTION_WORDS
from laerebogen.filtering.language import ALONE_LETTERS, MIN_WORDS, WINDOW
from laerebogen.outputs.browse import BROWSE_DIR, MapPicture
from laerebogen.outputs.export import ANNOTATION_REASONS, CODE_REASONS, filter_reasons
from laerebogen.outputs.models import ModelWork
from laerebogen.outputs.report import OUTCOMES, PANELS, DatasetStats
from laerebogen.outputs.status import StepStatus
from laerebogen.outputs.task_map import METHOD
from laerebogen.pipeline.plan import later_steps, source_targets
from laerebogen.records import HARMLESS, Message

CARD_FILE = "README.md"
GEMMA_TERMS = "https://ai.google.dev/gemma/terms"
GEMMA_POLICY = "https://ai.google.dev/gemma/prohibited_use_policy"
EXAMPLE_CHARS = 600  # characters of each message shown in the card's example
SAMPLING_HEADER = (
    "stage", "requests", "model", "temperature", "top_p", "min_p", "repetition penalty",
    "max tokens",
)  # fmt: skip
SIZE_CATEGORIES = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
)


def size_category(count: int) -> str:
    """The Hugging Face ``size_categories`` bucket of ``count`` rows."""
    for limit, name in SIZE_CATEGORIES:
        if count < limit:
            return name
    return "n>10M"


def made_with_gemma(config: Config) -> bool:
    """Whether any model the recipe uses is a Gemma model: by its directory name or its
    ``model_type``."""
    for name in config.models_in_use():
        path = config.model_path(name)
        if "gemma" in path.name.lower():
            return True
        try:
            model_type = json.loads((path / "config.json").read_text()).get("model_type", "")
        except (OSError, ValueError, AttributeError):
            continue
        if "gemma" in str(model_type).lower():
            return True
    return False


def _header(stats: DatasetStats, config: Config, complete: str, filtered: str) -> str:
    gemma = made_with_gemma(config)
    licence = (
        f"license: other\nlicense_name: gemma-terms-of-use\nlicense_link: {GEMMA_TERMS}\n"
        if gemma
        else "license: other\nlicense_name: see-the-models-terms\n"
    )
    return (
        "---\n"
        "language:\n- da\n"
        f"{licence}"
        "pretty_name: Lærebogen\n"
        "task_categories:\n- text-generation\n"
        f"size_categories:\n- {size_category(stats.conversations)}\n"
        "tags:\n- synthetic\n- instruction-tuning\n- multi-turn\n- danish\n"
        "configs:\n"
        "- config_name: filtered\n  default: true\n  data_files:\n"
        f"  - split: train\n    path: {filtered}\n"
        "- config_name: complete\n  data_files:\n"
        f"  - split: train\n    path: {complete}\n"
        "---\n"
    )


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _reasons(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in counts.items()) or "-"


def _sampling_rows(config: Config) -> list[list[object]]:
    """A row per kind of request: stage, what is sampled, model(s), sampling parameters."""
    requests: list[tuple[str, str, Sampling]] = []
    sources = config.sources
    if "self_instruct" in sources.active():
        requests.append(("generation", "new tasks", config.generation.sampling))
    if "magpie" in sources.active():
        requests.append(("magpie", "user messages", sources.magpie.sampling))
        requests.append(("magpie", "answers", sources.magpie.answer_sampling))
    if "grounded" in sources.active():
        requests.append(("grounded", "questions, judgements", sources.grounded.sampling))
        requests.append(("grounded", "answers", sources.grounded.answer_sampling))
    stages = {stage for _, stage, _ in later_steps(config)}
    if "grammar" in stages:
        requests.append(("grammar", "corrections", config.grammar.sampling))
    if "quality" in stages:
        requests.append(("quality", "judgements, rewrites", config.quality.sampling))
    if "evolution" in stages:
        requests.append(("evolution", "evolved tasks", config.evolution.sampling))
        requests.append(("evolution", "answers", config.evolution.answer_sampling))
    if "followups" in stages:
        requests.append(("followups", "user turns", config.followups.sampling))
        requests.append(("followups", "answers", config.followups.answer_sampling))
    if "annotate" in stages:
        requests.append(("annotate", "judgements", config.annotate.sampling))
    rows: list[list[object]] = []
    for stage, what, s in requests:
        parameters = [s.temperature, s.top_p, s.min_p, s.repetition_penalty, s.max_tokens]
        rows.append([stage, what, _stage_models(config, stage), *parameters])
    return rows


def _stage_models(config: Config, stage: str) -> str:
    """A stage's model, or its mixture with the weights: "`a` 50 %, `b` 50 %"."""
    weights = config.stage_models(stage)
    if len(weights) == 1:
        return f"`{config.model_path(next(iter(weights))).name}`"
    return ", ".join(f"`{config.model_path(name).name}` {weight:.0%}" for name, weight in
                     sorted(weights.items()))  # fmt: skip


def _models(stats: DatasetStats) -> str:
    """Each model's share of every step it wrote for: inputs, records, requests by call (and
    that share of the step's requests of the call), tokens and rejections; then its totals."""
    steps: dict[str, dict[str, ModelWork]] = {}
    for name, model in stats.models.items():
        for step, work in model.steps.items():
            steps.setdefault(step, {})[name] = work
    order = {status.step: position for position, status in enumerate(stats.steps)}
    rows = []
    for step in sorted(steps, key=lambda step: order.get(step, len(order))):
        works = steps[step]
        inputs = sum(work.inputs for work in works.values())
        calls = sum((Counter(work.requests) for work in works.values()), Counter[str]())
        for name, work in sorted(works.items()):
            requests = ", ".join(
                f"{call} {count} ({count / calls[call]:.0%})"
                for call, count in work.requests.items()
            )
            share = f"{work.inputs / max(inputs, 1):.0%}"
            counts = [work.inputs, work.records, requests or "-", work.completion_tokens]
            rows.append([step, _model_name(stats, name), share, *counts, _reasons(work.rejected)])
    header = ["step", "model", "share", "inputs", "records", "requests (share of the step's)"]
    totals = [
        [_model_name(stats, name), work.shards, work.inputs, work.records, work.prompt_tokens,
         work.completion_tokens, _reasons(work.rejected)]
        for name, work in ((name, model.total) for name, model in stats.models.items())
    ]  # fmt: skip
    totals_header = ["model", "shards", "inputs", "records", "prompt tokens", "tokens written"]
    return (
        "### Models\n\n"
        "Which model wrote each step's records, by its finished shards (a shard runs one "
        "model; in a mixture each record's model is drawn by a hash of its id, the step and "
        "the run's seed), then each model over the whole run.\n\n"
        + _table([*header, "tokens written", "rejected"], rows)
        + "\n\n"
        + _table([*totals_header, "rejected"], totals)
        + "\n"
    )


def _model_name(stats: DatasetStats, name: str) -> str:
    """A model as the card names it: its directory (the model in provenance) and config name."""
    return f"`{stats.models[name].directory}` ({name})"


def _how_it_was_made(stats: DatasetStats, config: Config) -> str:
    """The recipe's steps as this run did them: counts from its steps, not the config's
    intent (a step that did not run says so)."""
    steps: dict[str, list[StepStatus]] = {}
    for step in stats.steps:
        steps.setdefault(step.stage, []).append(step)
    generation = steps.get("generation", [])
    prompts = sum(step.records_in for step in generation)
    parsed = sum(step.records_out for step in generation)
    kept = sum(step.kept or 0 for step in generation)
    capped = _left_out(stats, generation)
    rounds = len(generation)
    targets = source_targets(config)
    self_instruct = (
        f"{prompts} few-shot prompts of "
        f"{config.generation.seeds_per_prompt} random seeds in {rounds} "
        f"round{'s' if rounds != 1 else ''} asked the pretrained model for up to "
        f"{config.generation.tasks_per_prompt} new tasks each; {parsed} were parsed and {kept} "
        f"kept after screening and deduplication (target "
        f"{targets.get('self_instruct', 0)}"
        + (f" of {config.generation.target}" if len(targets) > 1 else "")
        + (f"; {capped} left out by the target" if capped else "")
        + ")."
        if "self_instruct" in targets
        else "Self-Instruct had no share of the target: the tasks came from the sources below."
    )
    lines = [
        f"1. **Seeds**: {stats.seed_tasks} hand-written Danish tasks (instruction, optional "
        "input, output).",
        f"2. **Base generation**: {self_instruct}",
        *_other_sources(stats, config, steps),
    ]
    for number, (stage, what) in enumerate(
        (("grammar", "Grammar correction"), ("quality", "Quality improvement")), start=3
    ):
        done = steps.get(stage, [])
        lines.append(
            f"{number}. **{what}** by the instruction-tuned model: "
            + (
                f"{done[0].records_in} records, {sum(done[0].rejected.values())} of its "
                "replies rejected (the record then stays as it was)."
                if done
                else "not run."
            )
        )
    evolution = steps.get("evolution", [])
    lines.append(
        "5. **Evol-Instruct**: "
        + (
            f"{len(evolution)} generations of in-depth and in-breadth evolution; kept per "
            "generation: "
            + ", ".join(f"{s.step} {s.kept or 0} of {s.records_in}" for s in evolution)
            + "; all generations are kept and shuffled together."
            if evolution
            else "not run."
        )
    )
    added = {int(turns) - 1: count for turns, count in stats.turns.items()}
    lines.append(
        "6. **Follow-ups**: "
        + (
            f"up to {config.followups.turns} more user turns and answers per conversation; "
            "conversations by turns added: "
            + ", ".join(
                f"{turns} turn{'s' if turns != 1 else ''}: {count}"
                for turns, count in sorted(added.items(), reverse=True)
            )
            + "."
            if "followups" in steps
            else "not run."
        )
    )
    code = stats.code_check
    lines.append(
        "7. **Code check**: "
        + (
            "the Python and SQL blocks of every answer were run in a sandbox, without a "
            f"model; {code.conversations_with_code} conversations have code blocks "
            f"({code.blocks} blocks, {code.outcomes['ok']} ran without error)."
            if code is not None
            else "not run."
        )
    )
    annotation = stats.annotation
    lines.append(
        "8. **Annotation**: "
        + (
            "the instruction-tuned model judged every conversation (domain, task type, "
            "difficulty, quality of the answers, harm) in one "
            + ("constrained " if config.annotate.constrained else "")
            + "JSON reply, messages "
            f"cut to {config.annotate.message_chars} characters; {annotation.annotated} "
            f"annotated, {annotation.unannotated} without a usable reply after a retry."
            if annotation is not None
            else "not run."
        )
    )
    return "\n".join(lines) + "\n"


def _other_sources(
    stats: DatasetStats, config: Config, steps: Mapping[str, list[StepStatus]]
) -> list[str]:
    """Sub-items of base generation for the run's other sources, from their steps."""
    targets = source_targets(config)
    lines = []
    magpie = steps.get("magpie", [])
    if magpie:
        steering = ", ".join(f"{name} {count}" for name, count in stats.magpie_steering.items())
        lines.append(
            f"   - **Magpie**: {sum(s.records_in for s in magpie)} prompt slots in "
            f"{_rounds(magpie)}: the instruction-tuned model wrote a user's message from its "
            "bare chat template and then answered it; "
            f"{sum(s.records_out for s in magpie)} tasks made, "
            f"{sum(s.kept or 0 for s in magpie)} kept (target {targets['magpie']}"
            + _left_out_note(stats, magpie)
            + f"; steering of the final conversations: {steering or 'none left'})."
        )
    grounded = steps.get("grounded", [])
    if grounded:
        unsupported = sum(s.rejected.get("unsupported", 0) for s in grounded)
        lines.append(
            f"   - **Grounded questions**: {sum(s.records_in for s in grounded)} passages of "
            f"the corpus `{config.sources.grounded.corpus_path().name}` in "
            f"{_rounds(grounded)}: a question of a drawn kind, an answer based on the passage "
            f"and a judgement whether the passage supports it; "
            f"{sum(s.records_out for s in grounded)} tasks made ({unsupported} more rejected "
            f"as unsupported), {sum(s.kept or 0 for s in grounded)} kept (target "
            f"{targets['grounded']}" + _left_out_note(stats, grounded) + ")."
        )
    for result in stats.imports:
        lines.append(
            f"   - **Imported** `{result.name}` from `{Path(result.path).name}`: {result.rows} "
            f"rows, {result.kept} kept after screening and deduplication, entering at "
            f"{result.step}."
        )
    return lines


def _left_out(stats: DatasetStats, steps: Sequence[StepStatus]) -> int:
    """Records of ``steps`` (a source's rounds) left out by the source's target."""
    return sum(stats.left_out_by_target.get(step.step, 0) for step in steps)


def _left_out_note(stats: DatasetStats, steps: Sequence[StepStatus]) -> str:
    left_out = _left_out(stats, steps)
    return f"; {left_out} left out by the target" if left_out else ""


def _rounds(steps: Sequence[StepStatus]) -> str:
    return f"{len(steps)} round{'s' if len(steps) != 1 else ''}"


SOURCE_MAKING = {
    "self_instruct": "Self-Instruct: few-shot prompts of seed tasks to the pretrained model",
    "magpie": "Magpie: written by the instruction-tuned model from its bare chat template",
    "grounded": "questions and answers grounded in a passage of a Danish corpus, judged",
}


def _sources(stats: DatasetStats) -> str:
    """Where the conversations' tasks came from, in both versions; grounded kinds and forms."""
    imported = {f"import:{result.name}": result for result in stats.imports}
    rows = []
    for source, counts in stats.sources.items():
        made = SOURCE_MAKING.get(source)
        if made is None:
            result = imported.get(source)
            made = f"imported from `{Path(result.path).name}`" if result else "imported"
        share = round(100 * counts.conversations / max(stats.conversations, 1), 1)
        rows.append([f"`{source}`", made, counts.conversations, counts.filtered, f"{share} %"])
    lines = [
        "### Sources\n",
        "Every conversation's task comes from one source (its `source` in the metadata); "
        "evolved tasks keep their parent's:\n",
        _table(["source", "how its tasks were made", "conversations", "filtered", "share"], rows)
        + "\n",
    ]
    if stats.grounded_questions:
        forms = ("reading", "closed_book")
        lines += [
            "Grounded tasks by question kind and form (`reading`: the passage is the input; "
            "`closed_book`: the user does not see it):\n",
            _table(
                ["kind", *forms],
                [
                    [kind, *(row.get(form, 0) for form in forms)]
                    for kind, row in stats.grounded_questions.items()
                ],
            )
            + "\n",
        ]
    return "\n".join(lines)


def _annotation(stats: DatasetStats, config: Config) -> str:
    """The annotation's figures: tables of every label, the plot, harm counts by category."""
    annotation = stats.annotation
    if annotation is None:
        return ""
    pretrained = (
        " A pretrained model made these judgements (see Limitations): they are noise."
        if config.models[config.annotate.model].chat_template == "transcript"
        else ""
    )
    harmful = {label: count for label, count in annotation.harm.items() if label != HARMLESS}
    return "\n".join(
        [
            "## Annotation\n",
            f"Each conversation was judged by the instruction-tuned model ({annotation.annotated} "
            f"annotated, {annotation.unannotated} without a usable reply). The labels come from "
            "the run's taxonomy; the judgements are a model's and unchecked by people."
            + pretrained
            + "\n",
            _counts(annotation.domains, "domain") + "\n",
            _counts(annotation.task_types, "task type") + "\n",
            _table(
                ["level", "difficulty", "quality of the answers"],
                [
                    [level, annotation.difficulty[level], annotation.quality[level]]
                    for level in annotation.difficulty
                ],
            )
            + "\n",
            _plot(stats, "annotation", "Domains, task types, difficulty and quality"),
            "Conversations judged harmful, by category (counts only; none is quoted here, and "
            "none is in the filtered version):\n",
            _counts(harmful, "harm category") + "\n",
        ]
    )


SANDBOXES = {
    "namespaces": "network, process and mount namespaces (no network but its own loopback), as "
    "the user nobody",
    "user-namespace": "user, network, process and mount namespaces, without capabilities",
    "none": "no namespaces (the machine allowed none): the process refused sockets, new "
    "processes and writes outside its directory itself",
}


def _code_check(stats: DatasetStats, config: Config) -> str:
    """The code check's figures: blocks per language and outcome, the sandbox and limits."""
    code = stats.code_check
    if code is None:
        return ""
    settings = config.code_check
    sandboxes = "; ".join(
        f"{SANDBOXES.get(mode, mode)} ({count} conversations)"
        for mode, count in code.sandboxes.items()
    )
    details = [
        f"- {outcome}: " + ", ".join(f"{detail} {count}" for detail, count in found.items())
        for outcome, found in code.details.items()
    ]
    return "\n".join(
        [
            "## Code check\n",
            "The code blocks of the answers (fenced; an untagged block counts as Python when it "
            "parses as Python and is more than a word) were run, each message's Python and SQL "
            "blocks in order in one new process (SQL against an in-memory SQLite database "
            "holding what the blocks create), in an empty temporary directory, without input "
            f"or network, limited to {settings.timeout_seconds:g} s per block, "
            f"{settings.cpu_seconds} CPU seconds and {settings.memory_mb} MiB per message. "
            "Other languages are not run (`not_checked`); `not_verifiable` blocks need input, "
            "files, network or a module that is not installed. "
            f"Sandbox: {sandboxes or 'no code to run'}.\n",
            _table(
                ["language", *OUTCOMES, "blocks"],
                [
                    [language, *(counts.get(o, 0) for o in OUTCOMES), sum(counts.values())]
                    for language, counts in code.languages.items()
                ],
            )
            if code.languages
            else "(no code blocks)",
            "",
            *(["Most frequent details per outcome:\n", *details, ""] if details else []),
            _plot(stats, "code", "Code blocks by language and outcome"),
            "Running is not checking: a block that runs may still compute the wrong thing, and "
            "a block that needs files or input is not judged either way.\n",
        ]
    )


def _decontamination(stats: DatasetStats) -> str:
    """Against which evaluation sets the conversations were checked and what left the data."""
    found = stats.decontamination
    if found is None:
        return (
            "## Decontamination\n\n"
            "Not checked against any evaluation set (the run named none in `[decontamination] "
            "files`): items of benchmarks the models reproduced may be in the data.\n"
        )
    shorter = (
        "the whole of a shorter field"
        if found.short_share == 1
        else f"{found.short_share:.0%} of a shorter field's words in one run"
    )
    rows = [
        [
            f"`{b.name}`",
            b.items,
            ", ".join(f"`{name}`" for name in b.fields) or "-",
            b.unmatchable,
            b.contaminated,
            ", ".join(f"`{item.id}` ({item.conversations})" for item in b.top_items) or "-",
        ]
        for b in found.benchmarks
    ]
    header = [
        "benchmark", "items", "fields", "items too short to match", "conversations removed",
        "most matched items (conversations)",
    ]  # fmt: skip
    return "\n".join(
        [
            "## Decontamination\n",
            f"The {'messages' if found.answers else 'user messages'} of all {found.checked} "
            "conversations were compared with the items of "
            f"{len(found.benchmarks)} evaluation set(s) as word {found.ngram}-grams (words "
            "lowercased, punctuation dropped, never across two messages or two fields): a "
            f"conversation is contaminated when it shares a {found.ngram}-gram with a field of "
            f"at least {found.ngram} words, or {shorter} of at least {found.min_tokens} words. "
            f"An n-gram in more than {found.common_above:g} conversations is a stock phrase and "
            f"did not count ({found.common_ngrams} such n-grams). **{found.removed}** "
            "contaminated conversations were removed from both versions (one may match several "
            "sets).\n",
            _table(header, rows) + "\n",
            "Matching finds copies, not paraphrases or translations of an item.\n",
        ]
    )


def _filtered_version(stats: DatasetStats) -> str:
    """The rules of the filtered version with why each is set and what each removed."""
    reasons = filter_reasons(stats.filters)
    lines = [
        f"- `{name}` = {value:g}: {reasons[name]} "
        f"({stats.failed_filters.get(name, 0)} conversations fail it)"
        for name, value in stats.filters.items()
    ]
    lines += [
        f"- `{name}`"
        + (f" = {value:g}" if name in ANNOTATION_RULES else "")
        + f": {ANNOTATION_REASONS[name].format(value=value)} "
        f"({stats.failed_filters.get(name, 0)} conversations fail it)"
        for name, value in stats.annotation_rules.items()
    ]
    lines += [
        f"- `{name}`: {CODE_REASONS[name]} ({stats.failed_filters.get(name, 0)} conversations "
        "fail it)"
        for name in stats.code_rules
    ]
    return "\n".join(lines) + "\n"


def _funnel(stats: DatasetStats) -> str:
    """A row per step; the last column only for base generation, whose target caps it."""
    rows = [
        [
            s.step,
            s.records_in,
            s.records_out,
            _reasons(s.rejected),
            _reasons(s.merge_rejected),
            "-" if s.kept is None else s.kept,
            stats.left_out_by_target.get(s.step, "-"),
        ]
        for s in stats.steps
    ]
    header = [
        "step", "in", "out", "rejected in the shards", "rejected by the merge", "kept",
        "left out by the target",
    ]  # fmt: skip
    return _table(header, rows)


def _plot(stats: DatasetStats, plot: str, alt: str) -> str:
    """The image of ``plot`` (when it has data), and a sentence for each panel of it left
    out for having none."""
    lines = [f"![{alt}]({stats.plots[plot]})"] if plot in stats.plots else []
    lines += [
        f'No "{PANELS[name].title}" panel: the run has no {PANELS[name].missing}.'
        for name in stats.omitted
        if PANELS[name].plot == plot
    ]
    return "\n\n".join(lines) + "\n"


def _screen(config: Config) -> str:
    """The rules every merge job screened the records with, from the run's config."""
    banned = config.filters.banned_words
    topics = (
        f"the run's own list ({', '.join(banned)})"
        if banned
        else "the built-in Danish list (billede, foto, graf, diagram, flowchart, tegning, "
        'illustration, fil, landkort, video, lydfil, lydoptagelse, musik, "gå til", "klik på")'
    )
    return (
        "The merge jobs screen the records with two filters (the follow-up merge with the "
        "second only, on the added turns); the funnel below gives the rejections per step and "
        "reason.\n\n"
        f"- **Heuristics** (Alpaca's, made right for Danish): an instruction of "
        f"{MIN_INSTRUCTION_WORDS}-{MAX_WORDS} words, an input of at most "
        f"{config.filters.max_input_words} words, a non-empty output, no punctuation first, not "
        '"Skriv et program", no leaked prompt-template headers, and no topic a text model '
        f"cannot do in the instruction: {topics}, in every inflection and as the head of a "
        "compound; a verb phrase only where it asks to navigate (its imperative starting a "
        "clause, or a page, link, menu or button within five words).\n"
        "- **Danish** (lingua, with function words that tell Danish from its neighbours): "
        "code, formulas, URLs, numbers, notations, names and quoted terms are removed; a "
        f"field with fewer than {MIN_WORDS} words left is not judged; one with at least "
        f"{ALONE_LETTERS} letters is judged alone (a long one on its first and last {WINDOW} "
        "characters); a shorter one is rejected when a neighbour language's words win in it "
        "or lingua alone is sure of a neighbour, and is otherwise judged with the rest of the "
        "example. Translation tasks may use the language they name. The follow-up merge "
        f"judges every added user message and answer (an answer on its last {WINDOW} "
        "characters).\n"
    )


def _pretrained_note(config: Config) -> str:
    """A limitation when a pretrained model played the instruction-tuned role."""
    transcript = {  # a dict: several names may hold one directory
        f"`{config.model_path(name).name}`": None
        for name in config.models_in_use()
        if config.models[name].chat_template == "transcript"
    }
    if not transcript:
        return ""
    model = " and ".join(transcript)
    return (
        f"- The instruction-tuned role was played by {model}, a pretrained model given each "
        "chat as a plain transcript to continue: its answers, corrections, evolved tasks, "
        "follow-up questions and annotations show the recipe's shape (turns, generations, the "
        "funnel), not instruction following or judgement; the annotation's domains, quality "
        "and harm verdicts, and so what the filtered version leaves out by them, are noise. "
        "Data made this way shows how the pipeline works; it is not meant for training.\n"
    )


def _example(messages: Sequence[Message]) -> str:
    shown = []
    for message in messages:
        content = message.content
        if len(content) > EXAMPLE_CHARS:
            content = content[:EXAMPLE_CHARS].rstrip() + " […]"
        shown.append({"role": message.role, "content": content})
    text = json.dumps({"messages": shown}, ensure_ascii=False, indent=2)
    return f"```json\n{text}\n```"


def _counts(counts: Mapping[str, int], key: str) -> str:
    return _table([key, "conversations"], list(counts.items())) if counts else "(none)"


def render_card(
    stats: DatasetStats,
    config: Config,
    *,
    complete: str,
    filtered: str,
    example: Sequence[Message],
    task_map: tuple[str, MapPicture] | None = None,
) -> str:
    """The card's Markdown, for a card next to ``stats.json``: ``complete``/``filtered`` are
    the data files' names, ``example`` is the conversation shown, ``task_map`` the map's
    picture (path, what it shows), None when there is none."""
    gemma = made_with_gemma(config)
    models = sorted({model.directory for model in stats.models.values()})
    total = stats.total
    words = stats.words
    evolution_steps = [s for s in stats.steps if s.stage == "evolution"]
    sections = [
        _header(stats, config, complete, filtered),
        f"# Lærebogen{f' ({stats.name})' if stats.name else ''}\n",
        f"A synthetic Danish instruction-tuning dataset of **{stats.conversations}** "
        f"conversations (**{stats.filtered}** in the filtered version), made by "
        f"laerebogen {__version__} with "
        + " and ".join(f"`{m}`" for m in models)
        + f" from {stats.seed_tasks} hand-written Danish seed tasks (run seed {stats.seed}).\n",
        "```python\nfrom datasets import load_dataset\n\n"
        'filtered = load_dataset("path/to/this/directory", "filtered", split="train")\n'
        'complete = load_dataset("path/to/this/directory", "complete", split="train")\n```\n',
        "## Structure\n",
        'One conversation per line: `{"messages": [{"role": "user" | "assistant", '
        '"content": ...}, ...]}`. Files: '
        f"`{complete}` (complete), `{filtered}` (filtered). For example:\n",
        _example(example) + "\n",
        _counts(stats.turns, "user turns") + "\n",
        _plot(stats, "turns", "Turns per conversation"),
        _table(
            ["role", "messages", "mean words", "median", "10th percentile", "90th percentile"],
            [[role, d.count, d.mean, d.median, d.p10, d.p90] for role, d in words.items()],
        )
        + "\n",
        _plot(stats, "lengths", "Words per message"),
        _task_map(task_map, stats.seed),
        "## How it was made\n",
        _how_it_was_made(stats, config),
        "After every step a merge job screens the records again and removes near-duplicates: "
        "ROUGE-L of the instruction above "
        f"{config.filters.rouge_threshold} against every record kept before "
        f"(over the run: {stats.dedup.get('near_duplicate', 0)} near-duplicates and "
        f"{stats.dedup.get('duplicate_id', 0)} duplicate ids removed).\n",
        _screen(config),
        _sources(stats),
        "### Models and sampling\n",
        _table(SAMPLING_HEADER, _sampling_rows(config)) + "\n",
        _models(stats),
        "### Funnel\n",
        "Records into each step, out of its shards and kept by its merge, with every rejection "
        "reason, and the records base generation kept beyond its target (left out before the "
        "next step):\n",
        _funnel(stats) + "\n",
        _plot(stats, "funnel", "Funnel per step"),
        "### Evolution\n",
        "Conversations by evolution generation (0: not evolved) and by the operation that "
        "made them:\n",
        _counts(stats.generations, "generation") + "\n",
        _counts(stats.operations, "operation") + "\n",
        (
            "Eliminated evolutions: "
            + "; ".join(f"{s.step}: {_reasons(s.rejected)}" for s in evolution_steps)
            + "\n"
            if evolution_steps
            else ""
        ),
        _plot(stats, "evolution", "Evolution generations and operations"),
        _code_check(stats, config),
        _annotation(stats, config),
        "## Quality scores and the filtered version\n",
        "Every conversation is scored: LIX readability of the answers (the Scandinavian index: "
        "words per sentence plus the share of words longer than 6 letters), words per role, "
        "turns and lingua's Danish confidence. The filtered version keeps the conversations "
        "that pass every threshold"
        + (" and every rule on their annotation" if stats.annotation_rules else "")
        + (" and whose code blocks do not fail" if stats.code_rules else "")
        + " (a conversation may fail several):\n",
        _filtered_version(stats),
        f"LIX of the answers: median {stats.lix.median}, 10th-90th percentile "
        f"{stats.lix.p10}-{stats.lix.p90}. Danish confidence: median "
        f"{stats.danish_confidence.median}, 10th percentile {stats.danish_confidence.p10}.\n",
        _plot(stats, "lix", "LIX"),
        _plot(stats, "language", "Danish confidence"),
        _decontamination(stats),
        "## Compute\n",
        f"{total.prompt_tokens} prompt tokens and {total.completion_tokens} generated tokens "
        f"over {total.shards} shards in {len(stats.steps)} steps; shard wall time "
        f"{total.wall_seconds / 3600:.2f} h "
        + (f"({total.gpu_hours:.2f} GPU-hours), " if total.gpu_hours else "on CPUs (no GPUs), ")
        + f"{total.failed_attempts} retried jobs.\n",
        "## Limitations\n",
        "- Every answer is written by a language model and has not been checked by people: "
        "it can state wrong facts, reason badly or follow the instruction only in part.\n"
        "- The Danish is the models' Danish: the grammar step and the filters catch much, but "
        "anglicisms, Norwegian and Swedish forms and stilted phrasing remain.\n"
        "- Language detection tells Danish from other languages, not good Danish from bad; "
        "LIX measures readability, not correctness.\n"
        "- Deduplication compares instructions only (ROUGE-L), so similar tasks with "
        "different wording remain, and new tasks stay near the topics of the seed tasks "
        "they were written from.\n"
        "- Follow-up user turns are written by the model and are tidier than real users.\n"
        + _pretrained_note(config),
        "## Licence\n",
        (
            "The conversations are output of Gemma models and are provided under and subject "
            f"to the [Gemma Terms of Use]({GEMMA_TERMS}); use must follow the "
            f"[Gemma Prohibited Use Policy]({GEMMA_POLICY}). "
            if gemma
            else "The conversations are output of "
            + " and ".join(f"`{m}`" for m in models)
            + ": the terms of those models apply to them. "
        )
        + "The seed tasks and laerebogen are Apache-2.0.\n",
    ]
    return "\n".join(section for section in sections if section)


def _task_map(task_map: tuple[str, MapPicture] | None, seed: int) -> str:
    """The map of the tasks and how it was made; the browse page beside the card."""
    browse = (
        f"`{BROWSE_DIR}/index.html` beside this card is a page to browse the data: open it from "
        "the file system (no server, no network) to search and filter the conversations, read "
        "each one's lineage through the run (the seed tasks of its prompt, every step's change "
        "as a word diff, with the model and sampling seed) and every rejection with its reason.\n"
    )
    if task_map is None:
        return f"## Browsing the data\n\n{browse}"
    path, picture = task_map
    shown = len(picture.labels)
    sample = (
        f"{shown} of the {picture.task_map.total} instructions, a uniform sample"
        if picture.task_map.sampled
        else f"all {shown} instructions"
    )
    return (
        "## Map of the tasks\n\n"
        f"![Map of the tasks]({path})\n\n"
        f"Each point is an instruction ({sample}), coloured by {picture.colour_by}: "
        f"{METHOD} (run seed {seed}). Nearby points are tasks with similar words; the axes "
        "mean nothing.\n\n" + browse
    )


def card_path(dataset: Path) -> Path:
    """Where the card of the dataset file ``dataset`` goes: ``README.md`` beside it."""
    return dataset.parent / CARD_FILE
