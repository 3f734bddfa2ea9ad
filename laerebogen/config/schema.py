"""The configuration's schema: every section a frozen, strict msgspec Struct whose fields
carry the one-line descriptions of the generated reference (:mod:`laerebogen.config.reference`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from laerebogen.seeds import packaged_seed_path

DEFAULT_MODEL_DIR = "~/.cache/laerebogen/models"

Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


def doc(description: str) -> msgspec.Meta:
    """A field's one-line description (Markdown) for the generated configuration reference."""
    return msgspec.Meta(description=description)


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every config table: immutable, and unknown keys are errors."""


class Sampling(_Section):
    """Sampling parameters of one kind of request; ``max_tokens`` is always explicit."""

    temperature: Annotated[
        float, msgspec.Meta(ge=0.0), doc("Sampling temperature: 0 is greedy, higher is more varied")
    ] = 0.7
    top_p: Annotated[
        float,
        msgspec.Meta(gt=0.0, le=1.0),
        doc("Nucleus sampling: draw from the likeliest tokens that make up this share (1: off)"),
    ] = 1.0
    min_p: Annotated[
        Fraction, doc("Drop tokens less likely than this share of the likeliest token (0: off)")
    ] = 0.0
    repetition_penalty: Annotated[
        float,
        msgspec.Meta(gt=0.0),
        doc("vLLM's penalty on tokens already in the prompt or the reply (1: off)"),
    ] = 1.0
    max_tokens: Annotated[
        Positive,
        doc("Most tokens of a reply; a prompt longer than `max_model_len` minus this is rejected"),
    ] = 1024
    stop: Annotated[
        list[str],
        doc(
            "Strings that end a reply where they appear (not kept), e.g. a blank line for a "
            "pretrained model that never ends a chat turn"
        ),
    ] = []


class Model(_Section):
    """A model directory and the vLLM engine settings for it (0 means vLLM's default)."""

    path: Annotated[
        str,
        doc("Model directory (relative: under `model_dir`); its name is the model in provenance"),
    ]
    dtype: Annotated[
        Literal["auto", "bfloat16", "float16", "float32"],
        doc("Data type of weights and activations in vLLM (`auto`: from the model's config)"),
    ] = "auto"
    max_model_len: Annotated[
        Positive, doc("Context length in tokens (prompt plus reply) that vLLM makes room for")
    ] = 4096
    tensor_parallel_size: Annotated[
        Positive,
        doc(
            "GPUs one model is split over: a SLURM task of this model asks for this many (at "
            "most `slurm.gpu_job.gpus`); a local worker gets the largest model's"
        ),
    ] = 1
    gpu_memory_utilization: Annotated[
        float,
        msgspec.Meta(gt=0.0, le=1.0),
        doc("Share of GPU memory vLLM takes for weights and KV cache"),
    ] = 0.9
    max_num_seqs: Annotated[Positive, doc("Most sequences vLLM decodes in one batch")] = 256
    max_num_batched_tokens: Annotated[
        NonNegative, doc("Most tokens vLLM processes in one step (0: vLLM's default)")
    ] = 0
    enforce_eager: Annotated[
        bool, doc("No CUDA graphs: vLLM starts faster and needs less memory, but decodes slower")
    ] = False
    trust_remote_code: Annotated[
        bool, doc("Let vLLM run Python code that comes with the model directory")
    ] = False
    chat_template: Annotated[
        Literal["model", "transcript"],
        doc(
            "How chat requests are written for the model: `model`, its own chat template; "
            "`transcript`, a plain Danish transcript (Bruger:/Assistent:) that a pretrained "
            "model continues"
        ),
    ] = "model"


MODEL_CHOICE_DOC = (
    "The `[models.NAME]` that writes this stage's requests, or a mixture: a table of names and "
    "weights adding up to 1, e.g. `{ gemma = 0.5, other = 0.5 }` (each record's model is drawn "
    "by a hash of its id, the step and the run's seed)"
)
# A stage's model: one model's name, or a table of names and weights (a mixture).
ModelChoice = str | dict[str, float]


def model_weights(choice: ModelChoice) -> dict[str, float]:
    """A stage's ``model`` as weights by model name (one model: weight 1)."""
    return {choice: 1.0} if isinstance(choice, str) else dict(choice)


def check_weights(choice: ModelChoice) -> None:
    """A mixture's weights must be above 0 and add up to 1."""
    if isinstance(choice, str):
        return
    if not choice:
        raise ValueError("a model table needs at least one model")
    if any(weight <= 0 for weight in choice.values()):
        raise ValueError("every model's weight must be above 0 (leave a model out instead)")
    if abs(sum(choice.values()) - 1.0) > 1e-6:
        raise ValueError(f"the model weights add up to {sum(choice.values()):g}, not 1")


class Engine(_Section):
    """How requests are batched; a shard checkpoints after every chunk."""

    chunk_size: Annotated[
        Positive,
        doc(
            "Inputs per vLLM call; a shard commits after each, so a killed task redoes one at most"
        ),
    ] = 2000
    prefix_caching: Annotated[
        bool, doc("vLLM's prefix cache: prompts that start alike (few-shot headers) share work")
    ] = True
    cpu_kvcache_gib: Annotated[
        Positive,
        doc("KV cache GiB of vLLM's CPU build (`VLLM_CPU_KVCACHE_SPACE`; one already set wins)"),
    ] = 4
    deterministic: Annotated[
        bool,
        doc(
            "Outputs that do not depend on which requests share a batch: vLLM's batch-invariant "
            "kernels on GPUs that have them; on CPUs one sequence at a time. No prefix cache"
        ),
    ] = False


class Generation(_Section):
    """Base generation (Self-Instruct/Alpaca): rounds of few-shot prompts until ``target``."""

    target: Annotated[
        Positive,
        doc(
            "Base examples wanted from every source together (each its share of `[sources]`): "
            "rounds run until the merged rounds hold this many"
        ),
    ] = 52_000
    seeds_per_prompt: Annotated[
        Positive, doc("Seed tasks shown as the first items of each prompt's numbered list")
    ] = 3
    tasks_per_prompt: Annotated[
        Positive,
        doc("Length of each prompt's list, seeds included; must exceed `seeds_per_prompt`"),
    ] = 20
    first_round_prompts: Annotated[
        Positive,
        doc(
            "Prompts of round 1; later rounds are sized by the yield, capped at a multiple of "
            "this and never below one shard's worth"
        ),
    ] = 4000
    max_rounds: Annotated[
        Positive,
        doc("Most rounds of each base source, even when its share of `target` is not reached"),
    ] = 30
    prompts_per_shard: Annotated[Positive, doc("Prompts per shard (one array task)")] = 500
    model: Annotated[ModelChoice, doc(MODEL_CHOICE_DOC)] = "base"
    constrained: Annotated[
        bool, doc("Force the numbered-list format by a regex (for a model that cannot follow it)")
    ] = False
    sampling: Annotated[Sampling, doc("Sampling of the list completions")] = Sampling(
        temperature=1.0, max_tokens=3072
    )

    def __post_init__(self) -> None:
        check_weights(self.model)


class _InstructStage(_Section):
    """What every stage run with the instruction-tuned model has.

    ``constrained`` makes structured replies (JSON) follow their format exactly.
    ``bounded`` also bounds the length of every reply: free-text answers end at
    ``max_tokens // 2`` characters and JSON strings at a share of ``max_tokens``. Only for a
    model that never stops by itself, like the random test model: it cuts long answers of a
    real model short, and bounded JSON strings make constrained decoding slow (see
    :func:`~laerebogen.stages.text.json_string`).
    """

    records_per_shard: Annotated[Positive, doc("Records per shard (one array task)")] = 5000
    model: Annotated[ModelChoice, doc(MODEL_CHOICE_DOC)] = "instruct"
    constrained: Annotated[
        bool, doc("Make structured (JSON) replies follow their format exactly")
    ] = True
    bounded: Annotated[
        bool,
        doc(
            "Bound every reply's text within `max_tokens`: for a model that never stops (slow "
            "with a real vocabulary)"
        ),
    ] = False

    def __post_init__(self) -> None:
        check_weights(self.model)


class Grammar(_InstructStage):
    """Grammar correction; a correction further than ``min_similarity`` is a rewrite."""

    enabled: Annotated[bool, doc("Run grammar correction")] = True
    min_similarity: Annotated[
        Fraction, doc("ROUGE-L to the original below which a correction is a rewrite, not kept")
    ] = 0.5
    sampling: Annotated[Sampling, doc("Sampling of the corrections")] = Sampling(
        temperature=0.2, max_tokens=2048
    )


class Quality(_InstructStage):
    """Quality judgement and rewriting of poor examples."""

    enabled: Annotated[bool, doc("Run quality judgement")] = True
    sampling: Annotated[Sampling, doc("Sampling of the verdicts and rewrites")] = Sampling(
        temperature=0.3, max_tokens=2048
    )


EvolutionOperation = Literal[
    "add_constraints",
    "deepen",
    "concretise",
    "increase_reasoning",
    "complicate_input",
    "in_breadth",
]
EVOLUTION_OPERATIONS: tuple[EvolutionOperation, ...] = get_args(EvolutionOperation)


class Evolution(_InstructStage):
    """Evol-Instruct: ``generations`` rounds of in-depth and in-breadth evolution."""

    generations: Annotated[
        NonNegative, doc("Evolution rounds, each on the previous one's survivors (0: none)")
    ] = 4
    operations: Annotated[
        list[EvolutionOperation], doc("Operations a record's evolution is drawn from, uniformly")
    ] = msgspec.field(default_factory=lambda: list(EVOLUTION_OPERATIONS))
    sampling: Annotated[
        Sampling, doc("Sampling of the evolved tasks and the judgement of them")
    ] = Sampling(temperature=0.7, max_tokens=2048)
    answer_sampling: Annotated[Sampling, doc("Sampling of the evolved tasks' answers")] = Sampling(
        temperature=0.7, max_tokens=2048
    )


class Followups(_InstructStage):
    """Follow-up turns: a user message and an answer per turn."""

    turns: Annotated[
        NonNegative, doc("User/assistant turns added to each conversation (0: no follow-ups)")
    ] = 3
    sampling: Annotated[Sampling, doc("Sampling of the user's follow-up messages")] = Sampling(
        temperature=0.8, max_tokens=512
    )
    answer_sampling: Annotated[Sampling, doc("Sampling of the assistant's answers")] = Sampling(
        temperature=0.7, max_tokens=2048
    )


class Annotate(_InstructStage):
    """Judgement of each final conversation: domain, task type, difficulty, quality and harm."""

    enabled: Annotated[bool, doc("Run the annotate step after the follow-ups")] = True
    model: Annotated[
        str, doc("The `[models.NAME]` that judges every conversation (one model: no mixture)")
    ] = "instruct"
    taxonomy: Annotated[
        str,
        doc(
            "TOML file of the labels the model chooses from (empty: the packaged "
            "`laerebogen/prompts/annotate_taxonomy.toml`)"
        ),
    ] = ""
    message_chars: Annotated[
        Positive,
        doc("Characters of each message the model reads (longer ones are cut at a space, […])"),
    ] = 1200
    sampling: Annotated[Sampling, doc("Sampling of the judgements")] = Sampling(
        temperature=0.3, max_tokens=256
    )

    def taxonomy_path(self) -> Path | None:
        """The replacement taxonomy file, or None for the packaged one."""
        if not self.taxonomy:
            return None
        return Path(os.path.expandvars(self.taxonomy)).expanduser()


# The sources that write new tasks, in the order their rounds run; imports come on top.
BASE_SOURCES = ("self_instruct", "magpie", "grounded")
# The stage of each base source (and its config table); its rounds are steps ``<stage>-01`` ...
SOURCE_STAGES = {"self_instruct": "generation", "magpie": "magpie", "grounded": "grounded"}
# A path starting so names a file or folder shipped in the package's ``data`` folder.
PACKAGED = "packaged:"


def data_path(text: str) -> Path:
    """A path of the config: ``packaged:NAME`` in the package's data, else with ``$VARS`` and
    ``~`` expanded."""
    if text.startswith(PACKAGED):
        return packaged_seed_path().parent / text.removeprefix(PACKAGED)
    return Path(os.path.expandvars(text)).expanduser()


MagpieSteering = Literal["system", "user_start", "none"]
QUESTION_KINDS = ("hvem", "hvad", "hvor", "hvornår", "hvorfor", "hvordan", "forklar", "sammenlign")


class Magpie(_InstructStage):
    """Magpie: the instruct model writes a user's message from its bare chat template, then
    answers it. One prompt slot makes at most one task."""

    steering: Annotated[
        MagpieSteering,
        doc(
            "Where the Danish steering text goes: `system`, a system message; `user_start`, the "
            "start of the user's turn (kept in the message); `none`, the bare template"
        ),
    ] = "user_start"
    sampling: Annotated[Sampling, doc("Sampling of the user messages")] = Sampling(
        temperature=1.0, max_tokens=512
    )
    answer_sampling: Annotated[Sampling, doc("Sampling of the answers")] = Sampling(
        temperature=0.7, max_tokens=2048
    )


class Grounded(_InstructStage):
    """Questions grounded in a corpus of Danish texts: one question, answer and judgement per
    passage."""

    corpus: Annotated[
        str,
        doc(
            "JSONL file with a `text` field per line, or a folder of `.txt` files (`$VARS`, "
            "`~`); `packaged:corpus_da`: six short Danish texts shipped for tests and `local`"
        ),
    ] = ""
    min_passage_chars: Annotated[
        Positive, doc("Shortest passage: shorter paragraphs are joined with the next")
    ] = 300
    max_passage_chars: Annotated[
        Positive, doc("Longest passage: a longer paragraph is cut at a sentence end")
    ] = 1500
    closed_book_share: Annotated[
        Fraction,
        doc("Share of tasks whose passage the user does not see (the rest: reading comprehension)"),
    ] = 0.5
    kinds: Annotated[
        list[str], doc("Question kinds drawn from uniformly (`hvem`, `hvad`, ... `sammenlign`)")
    ] = msgspec.field(default_factory=lambda: list(QUESTION_KINDS))
    sampling: Annotated[Sampling, doc("Sampling of the questions and the judgements")] = Sampling(
        temperature=0.8, max_tokens=256
    )
    answer_sampling: Annotated[Sampling, doc("Sampling of the answers")] = Sampling(
        temperature=0.5, max_tokens=1024
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.min_passage_chars > self.max_passage_chars:
            raise ValueError("min_passage_chars is above max_passage_chars")
        unknown = sorted(set(self.kinds) - set(QUESTION_KINDS))
        if unknown or not self.kinds:
            wrong = f", not {', '.join(unknown)}" if unknown else ""
            raise ValueError(f"kinds must be some of {', '.join(QUESTION_KINDS)}{wrong}")

    def corpus_path(self) -> Path:
        """The corpus file or folder."""
        return data_path(self.corpus)


class ImportSource(_Section):
    """An existing instruction dataset brought into the run."""

    path: Annotated[
        str,
        doc(
            "JSONL or Parquet file, Alpaca form or messages form (`$VARS`, `~`; "
            "`packaged:import_sample.jsonl`: eight Danish tasks shipped for `local`)"
        ),
    ]
    step: Annotated[
        str, doc("The step its records enter at (e.g. `grammar`); it must be one of the run's")
    ] = "grammar"

    def file_path(self) -> Path:
        """The file to import."""
        return data_path(self.path)


class Sources(_Section):
    """Where tasks come from: the base sources' shares of `generation.target`, and imports."""

    shares: Annotated[
        dict[str, float],
        doc(
            "Share of the base target per source (`self_instruct`, `magpie`, `grounded`); the "
            "shares add up to 1"
        ),
    ] = msgspec.field(default_factory=lambda: {"self_instruct": 1.0})
    magpie: Annotated[Magpie, doc("Magpie: tasks written from the bare chat template")] = Magpie()
    grounded: Annotated[Grounded, doc("Questions and answers grounded in a corpus")] = Grounded()
    imports: Annotated[
        dict[str, ImportSource],
        doc("Datasets to import, by name (their records' source is `import:<name>`)"),
    ] = {}

    def __post_init__(self) -> None:
        if unknown := sorted(set(self.shares) - set(BASE_SOURCES)):
            choices = ", ".join(BASE_SOURCES)
            raise ValueError(f"unknown source {unknown[0]!r}: choose from {choices}")
        if any(share <= 0 for share in self.shares.values()):
            raise ValueError("every share must be above 0 (leave a source out instead)")
        if abs(sum(self.shares.values()) - 1.0) > 1e-6:
            raise ValueError(f"the shares add up to {sum(self.shares.values()):g}, not 1")
        if self.shares.get("grounded") and not self.grounded.corpus:
            raise ValueError("the grounded source needs `sources.grounded.corpus`")

    def active(self) -> list[str]:
        """The base sources with a share, in the order their rounds run."""
        return [source for source in BASE_SOURCES if source in self.shares]


class CodeCheck(_Section):
    """Execution of the Python and SQL blocks of the answers in a sandbox (a CPU step)."""

    enabled: Annotated[
        bool, doc("Run the code_check step after the follow-ups (no model, CPU only)")
    ] = True
    timeout_seconds: Annotated[
        float, msgspec.Meta(gt=0.0), doc("Wall-clock seconds one block may run")
    ] = 5.0
    cpu_seconds: Annotated[Positive, doc("CPU seconds of one message's process")] = 5
    memory_mb: Annotated[Positive, doc("Address space of one message's process (MiB)")] = 1024
    file_size_mb: Annotated[Positive, doc("Largest file the code may write (MiB)")] = 16
    open_files: Annotated[Positive, doc("Open files of one message's process")] = 64
    processes: Annotated[
        Positive, doc("Processes of the sandbox's user (a fork bomb stops here)")
    ] = 64
    workers: Annotated[
        NonNegative, doc("Messages checked at once in a shard (0: one per CPU the shard may use)")
    ] = 0
    records_per_shard: Annotated[Positive, doc("Records per shard (one array task)")] = 5000


class Filters(_Section):
    """Filters of the merge job; an empty ``banned_words`` uses the built-in Danish list."""

    rouge_threshold: Annotated[
        Fraction, doc("ROUGE-L of instructions above which a record is an earlier one's duplicate")
    ] = 0.7
    banned_words: Annotated[
        list[str],
        doc(
            "Words or phrases, any inflection, that reject a record's instruction (empty: built-in)"
        ),
    ] = []
    max_input_words: Annotated[
        Positive,
        doc("Most words of an input (the instruction keeps Alpaca's 150): texts to summarise"),
    ] = 400


class Export(_Section):
    """Thresholds of the dataset's filtered version; each bounds a conversation score
    inclusively (the card says why each is set as it is), and ``min_quality`` and
    ``max_domain_share`` apply to the annotation when the run annotates."""

    min_lix: Annotated[
        float, msgspec.Meta(ge=0.0), doc("Lowest LIX (readability) of the answers")
    ] = 20.0
    max_lix: Annotated[
        float, msgspec.Meta(ge=0.0), doc("Highest LIX of the answers; at least `min_lix`")
    ] = 60.0
    min_assistant_words: Annotated[
        NonNegative, doc("Fewest words of the answers of a conversation together")
    ] = 30
    min_danish_confidence: Annotated[
        Fraction, doc("Lowest confidence of the language detector that the text is Danish")
    ] = 0.5
    min_quality: Annotated[
        Annotated[int, msgspec.Meta(ge=1, le=5)],
        doc(
            "Lowest annotated quality (1-5); with `[annotate]` on, harmful and unannotated "
            "conversations are left out too"
        ),
    ] = 3
    max_domain_share: Annotated[
        Fraction,
        doc(
            "Largest share of one annotated domain, reached by leaving out its lowest-quality "
            "conversations first (0: no cap)"
        ),
    ] = 0.0

    def __post_init__(self) -> None:
        if self.min_lix > self.max_lix:
            raise ValueError(f"min_lix {self.min_lix} is above max_lix {self.max_lix}")

    def thresholds(self) -> dict[str, float]:
        """The score thresholds by name (``min_<score>``/``max_<score>``), in declaration
        order; the annotation's rules (``min_quality``, ``max_domain_share``) are not among them."""
        return {
            name: value
            for name, value in msgspec.structs.asdict(self).items()
            if name not in ANNOTATION_RULES
        }


# The fields of :class:`Export` that apply to the annotation rather than to a score.
ANNOTATION_RULES = ("min_quality", "max_domain_share")


class BenchmarkFile(_Section):
    """An evaluation set to decontaminate against, with the fields to read."""

    path: Annotated[
        str, doc("JSONL, Parquet or CSV file, or a `save_to_disk` folder (`$VARS`, `~`)")
    ]
    name: Annotated[str, doc("Its name in the card (empty: the file name)")] = ""
    fields: Annotated[
        list[str], doc("Fields whose text is matched (empty: every string field)")
    ] = []
    id_field: Annotated[
        str, doc("Field of an item's id in the card (a row without it: its row number)")
    ] = "id"

    def file_path(self) -> Path:
        """The benchmark file or folder."""
        return data_path(self.path)


class Decontamination(_Section):
    """Conversations that share word n-grams with evaluation sets leave the dataset."""

    files: Annotated[
        list[str | BenchmarkFile],
        doc(
            "Evaluation sets checked when the run exports: paths (every string field read) or "
            "tables `{ path, name, fields, id_field }`"
        ),
    ] = []
    ngram: Annotated[
        Annotated[int, msgspec.Meta(ge=2)],
        doc("Words per n-gram; a field of an item with at least this many words matches by them"),
    ] = 10
    answers: Annotated[
        bool, doc("Match the assistant's answers too, not only the user's messages")
    ] = False
    short_share: Annotated[
        Annotated[float, msgspec.Meta(gt=0.0, le=1.0)],
        doc("Share of a shorter field's words that must occur as one run (1: the whole field)"),
    ] = 1.0
    min_tokens: Annotated[
        Positive, doc("Fewest words of a field that is matched at all (shorter ones are names)")
    ] = 5
    common_share: Annotated[
        Fraction,
        doc(
            "An n-gram in more than this share of the conversations (and more than "
            "`common_min`) is a stock phrase and does not count"
        ),
    ] = 0.001
    common_min: Annotated[
        Positive, doc("An n-gram in this many conversations or fewer always counts")
    ] = 10

    def benchmarks(self) -> list[BenchmarkFile]:
        """Every entry of ``files`` as a table."""
        return [BenchmarkFile(path=e) if isinstance(e, str) else e for e in self.files]


class SlurmJob(_Section):
    """Resources of one kind of SLURM job."""

    time_minutes: Annotated[Positive, doc("Time limit of a task in minutes")] = 240
    gpus: Annotated[NonNegative, doc("GPUs per task (0: none asked for)")] = 1
    cpus: Annotated[Positive, doc("CPUs per task")] = 8
    mem_gb: Annotated[Positive, doc("Memory per task in GB")] = 64


class Slurm(_Section):
    """Where and how SLURM jobs run; ``extra`` holds further sbatch options, e.g.
    ``{constraint = "a100", requeue = true}`` (true: a flag without a value)."""

    partition: Annotated[str, doc("`sbatch --partition` (empty: the cluster's default)")] = ""
    account: Annotated[str, doc("`sbatch --account` (empty: the user's default)")] = ""
    qos: Annotated[str, doc("`sbatch --qos` (empty: the default)")] = ""
    array_parallelism: Annotated[Positive, doc("Most tasks of one array job running at once")] = 32
    gpu_job: Annotated[
        SlurmJob,
        doc(
            "Resources of a shard task; `gpus` is the most one may ask for: each asks for its "
            "model's `tensor_parallel_size` (none when `gpus` is 0, a CPU cluster)"
        ),
    ] = SlurmJob()
    cpu_job: Annotated[
        SlurmJob,
        doc("Resources of the merge jobs and of the shards of steps without a model (code_check)"),
    ] = SlurmJob(gpus=0, cpus=4, mem_gb=16, time_minutes=120)
    extra: Annotated[
        dict[str, str | int | bool], doc("Further sbatch options (`true`: a flag without a value)")
    ] = {}


class Container(_Section):
    """The Apptainer image array tasks run in (empty: run on the host)."""

    image: Annotated[
        str, doc("Apptainer image (`.sif`) of the SLURM tasks (empty: run on the host)")
    ] = ""
    binds: Annotated[
        list[str], doc("Further paths to bind; the run and model directories always are")
    ] = []


class Launch(_Section):
    """Which executor runs shards, how often a failed shard is retried (per driver run) and
    how often the driver looks at its jobs."""

    executor: Annotated[
        Literal["slurm", "local", "debug"],
        doc("Where tasks run: SLURM arrays, local subprocesses, or in the driver's process"),
    ] = "slurm"
    max_retries: Annotated[NonNegative, doc("Resubmissions of a failed shard per driver run")] = 2
    local_parallelism: Annotated[
        Positive, doc("Tasks the local executor runs at once (at most one per GPU group)")
    ] = 1
    poll_seconds: Annotated[
        float, msgspec.Meta(gt=0.0), doc("Seconds between the driver's looks at its jobs")
    ] = 2.0


class Config(_Section):
    """A whole recipe: models, per-stage settings and where the work runs."""

    models: Annotated[
        dict[str, Model],
        doc(
            "Models by name, each at least a `path`; stages name theirs with `model` "
            "(by default `base` for base generation, `instruct` for the rest)"
        ),
    ]
    name: Annotated[
        str, doc("Recipe name: shown by the driver; `runs/<name>` is the default run directory")
    ] = ""
    seed: Annotated[
        NonNegative, doc("Run seed every sampling seed and random draw derives from")
    ] = 0
    model_dir: Annotated[
        str, doc("Directory of relative model paths (`$VARS` and `~` expanded)")
    ] = DEFAULT_MODEL_DIR
    seed_file: Annotated[
        str, doc("Seed task file (JSONL) of base generation (empty: the packaged seeds)")
    ] = ""
    engine: Annotated[Engine, doc("How vLLM is run and fed")] = Engine()
    generation: Annotated[Generation, doc("Base generation with the pretrained model")] = (
        Generation()
    )
    sources: Annotated[Sources, doc("Sources of tasks besides Self-Instruct, and their shares")] = (
        Sources()
    )
    grammar: Annotated[Grammar, doc("Grammar correction")] = Grammar()
    quality: Annotated[Quality, doc("Quality judgement and rewriting")] = Quality()
    evolution: Annotated[
        Evolution, doc("Evol-Instruct: harder and rarer tasks, generation by generation")
    ] = Evolution()
    followups: Annotated[Followups, doc("Follow-up turns that make conversations multi-turn")] = (
        Followups()
    )
    annotate: Annotated[
        Annotate, doc("Domain, task type, difficulty, quality and harm of every conversation")
    ] = Annotate()
    code_check: Annotated[
        CodeCheck, doc("Sandboxed execution of the code blocks in the answers")
    ] = CodeCheck()
    filters: Annotated[Filters, doc("Filters of the merge jobs")] = Filters()
    export: Annotated[Export, doc("Thresholds of the filtered dataset (inclusive)")] = Export()
    decontamination: Annotated[
        Decontamination, doc("Evaluation sets no conversation of the dataset may overlap")
    ] = Decontamination()
    launch: Annotated[Launch, doc("Executor, retries and polling of the driver")] = Launch()
    slurm: Annotated[Slurm, doc("Partition, account and resources of the SLURM jobs")] = Slurm()
    container: Annotated[Container, doc("Apptainer image of the SLURM tasks")] = Container()

    def seed_path(self) -> Path:
        """The seed task file: ``seed_file`` if set, else the seeds shipped with the package."""
        if not self.seed_file:
            return packaged_seed_path()
        return Path(os.path.expandvars(self.seed_file)).expanduser()

    def __post_init__(self) -> None:
        for stage in self.model_stages():
            for name in model_weights(self.stage_settings(stage).model):
                if name not in self.models:
                    known = ", ".join(sorted(self.models)) or "none"
                    raise ValueError(
                        f"{stage} names the model {name!r}, but there is no [models.{name}] "
                        f"(models: {known})"
                    )

    def model_stages(self) -> list[str]:
        """The stages of this recipe that run a model, in order (each names its models)."""
        sources = [SOURCE_STAGES[source] for source in self.sources.active()]
        later = {
            "grammar": self.grammar.enabled,
            "quality": self.quality.enabled,
            "evolution": self.evolution.generations > 0,
            "followups": self.followups.turns > 0,
            "annotate": self.annotate.enabled,
        }
        return [*sources, *(stage for stage, enabled in later.items() if enabled)]

    def stage_settings(self, stage: str) -> Any:
        """The config table of ``stage`` (``magpie`` and ``grounded`` live under sources)."""
        if stage in ("magpie", "grounded"):
            return getattr(self.sources, stage)
        return getattr(self, stage)

    def stage_models(self, stage: str) -> dict[str, float]:
        """The models of ``stage`` with their weights; empty for a stage without a model."""
        settings = self.stage_settings(stage)
        return model_weights(settings.model) if hasattr(settings, "model") else {}

    def models_in_use(self) -> list[str]:
        """The models some stage of this recipe runs, sorted by name."""
        return sorted({name for stage in self.model_stages() for name in self.stage_models(stage)})

    def shard_gpus(self, model: str) -> int:
        """The GPUs a SLURM shard of ``[models.<model>]`` asks for: as many as the model is
        split over, none on a cluster whose ``gpu_job`` asks for none."""
        return self.models[model].tensor_parallel_size if self.slurm.gpu_job.gpus else 0

    def model_path(self, name: str) -> Path:
        """The directory of model ``name``; relative paths are taken under ``model_dir``."""
        path = Path(os.path.expandvars(self.models[name].path)).expanduser()
        if path.is_absolute():
            return path
        return Path(os.path.expandvars(self.model_dir)).expanduser() / path
