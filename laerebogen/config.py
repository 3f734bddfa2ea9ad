"""Strict TOML configuration decoded into frozen msgspec Structs.

A configuration is a packaged name (``gemma-27b``, ``local``, ``tiny``) or a path to a TOML
file, plus ``key.path=value`` overrides. Unknown keys and wrong types are errors naming the
key path and the source, because a typo in a sampling setting would otherwise silently run
a multi-GPU-day job with defaults.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import msgspec

from laerebogen.errors import ConfigError
from laerebogen.seeds import packaged_seed_path

PACKAGED_DIR = Path(__file__).parent / "configs"
DEFAULT_MODEL_DIR = "~/.cache/laerebogen/models"

Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every config table: immutable, and unknown keys are errors."""


class Sampling(_Section):
    """Sampling parameters of one kind of request; ``max_tokens`` is always explicit."""

    temperature: Annotated[float, msgspec.Meta(ge=0.0)] = 0.7
    top_p: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 1.0
    min_p: Fraction = 0.0
    repetition_penalty: Annotated[float, msgspec.Meta(gt=0.0)] = 1.0
    max_tokens: Positive = 1024


class Model(_Section):
    """A model directory and the vLLM engine settings for it (0 means vLLM's default)."""

    path: str
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    max_model_len: Positive = 4096
    tensor_parallel_size: Positive = 1
    gpu_memory_utilization: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.9
    max_num_seqs: Positive = 256
    max_num_batched_tokens: NonNegative = 0
    enforce_eager: bool = False
    trust_remote_code: bool = False


class Models(_Section):
    """The pretrained model for base generation and the instruction-tuned one for the rest."""

    base: Model
    instruct: Model


class Engine(_Section):
    """How requests are batched; a shard checkpoints after every chunk."""

    chunk_size: Positive = 2000
    prefix_caching: bool = True
    cpu_kvcache_gib: Positive = 4


class Generation(_Section):
    """Base generation (Self-Instruct/Alpaca): rounds of few-shot prompts until ``target``."""

    target: Positive = 52_000
    seeds_per_prompt: Positive = 3
    tasks_per_prompt: Positive = 20
    first_round_prompts: Positive = 4000
    max_rounds: Positive = 30
    prompts_per_shard: Positive = 500
    constrained: bool = False
    sampling: Sampling = Sampling(temperature=1.0, max_tokens=3072)


class _InstructStage(_Section):
    """What every stage run with the instruction-tuned model has.

    ``constrained`` makes structured replies (JSON) follow their format exactly.
    ``bounded_answers`` also ends free-text answers at ``max_tokens // 2`` characters: only
    for a model that never stops by itself, like the random test model, since it cuts long
    answers of a real model short.
    """

    records_per_shard: Positive = 5000
    constrained: bool = True
    bounded_answers: bool = False


class Grammar(_InstructStage):
    """Grammar correction; a correction further than ``min_similarity`` is a rewrite."""

    enabled: bool = True
    min_similarity: Fraction = 0.5
    sampling: Sampling = Sampling(temperature=0.2, max_tokens=2048)


class Quality(_InstructStage):
    """Quality judgement and rewriting of poor examples."""

    enabled: bool = True
    sampling: Sampling = Sampling(temperature=0.3, max_tokens=2048)


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

    generations: NonNegative = 4
    operations: list[EvolutionOperation] = msgspec.field(
        default_factory=lambda: list(EVOLUTION_OPERATIONS)
    )
    sampling: Sampling = Sampling(temperature=0.7, max_tokens=2048)
    answer_sampling: Sampling = Sampling(temperature=0.7, max_tokens=2048)


class Followups(_InstructStage):
    """Follow-up turns: a user message and an answer per turn."""

    turns: NonNegative = 3
    sampling: Sampling = Sampling(temperature=0.8, max_tokens=512)
    answer_sampling: Sampling = Sampling(temperature=0.7, max_tokens=2048)


class Filters(_Section):
    """Filters of the merge job; an empty ``banned_words`` uses the built-in Danish list."""

    rouge_threshold: Fraction = 0.7
    banned_words: list[str] = []


class Export(_Section):
    """Thresholds of the dataset's filtered version; each bounds a conversation score
    inclusively (the card says why each is set as it is)."""

    min_lix: Annotated[float, msgspec.Meta(ge=0.0)] = 20.0
    max_lix: Annotated[float, msgspec.Meta(ge=0.0)] = 60.0
    min_assistant_words: NonNegative = 30
    min_danish_confidence: Fraction = 0.5

    def __post_init__(self) -> None:
        if self.min_lix > self.max_lix:
            raise ValueError(f"min_lix {self.min_lix} is above max_lix {self.max_lix}")

    def thresholds(self) -> dict[str, float]:
        """The thresholds by name (``min_<score>``/``max_<score>``), in declaration order."""
        return msgspec.structs.asdict(self)


class SlurmJob(_Section):
    """Resources of one kind of SLURM job."""

    time_minutes: Positive = 240
    gpus: NonNegative = 1
    cpus: Positive = 8
    mem_gb: Positive = 64


class Slurm(_Section):
    """Where and how SLURM jobs run; ``extra`` holds further sbatch options, e.g.
    ``{constraint = "a100", requeue = true}`` (true: a flag without a value)."""

    partition: str = ""
    account: str = ""
    qos: str = ""
    array_parallelism: Positive = 32
    gpu_job: SlurmJob = SlurmJob()
    cpu_job: SlurmJob = SlurmJob(gpus=0, cpus=4, mem_gb=16, time_minutes=120)
    extra: dict[str, str | int | bool] = {}


class Container(_Section):
    """The Apptainer image array tasks run in (empty: run on the host)."""

    image: str = ""
    binds: list[str] = []


class Launch(_Section):
    """Which executor runs shards, how often a failed shard is retried (per driver run) and
    how often the driver looks at its jobs."""

    executor: Literal["slurm", "local", "debug"] = "slurm"
    max_retries: NonNegative = 2
    local_parallelism: Positive = 1
    poll_seconds: Annotated[float, msgspec.Meta(gt=0.0)] = 2.0


class Config(_Section):
    """A whole recipe: models, per-stage settings and where the work runs."""

    models: Models
    name: str = ""
    seed: NonNegative = 0
    model_dir: str = DEFAULT_MODEL_DIR
    seed_file: str = ""
    engine: Engine = Engine()
    generation: Generation = Generation()
    grammar: Grammar = Grammar()
    quality: Quality = Quality()
    evolution: Evolution = Evolution()
    followups: Followups = Followups()
    filters: Filters = Filters()
    export: Export = Export()
    launch: Launch = Launch()
    slurm: Slurm = Slurm()
    container: Container = Container()

    def seed_path(self) -> Path:
        """The seed task file: ``seed_file`` if set, else the seeds shipped with the package."""
        if not self.seed_file:
            return packaged_seed_path()
        return Path(os.path.expandvars(self.seed_file)).expanduser()

    def model_path(self, role: Literal["base", "instruct"]) -> Path:
        """The model directory of ``role``; relative paths are taken under ``model_dir``."""
        model: Model = getattr(self.models, role)
        path = Path(os.path.expandvars(model.path)).expanduser()
        if path.is_absolute():
            return path
        return Path(os.path.expandvars(self.model_dir)).expanduser() / path


def packaged_names() -> list[str]:
    """Names of the configurations that ship with the package."""
    return sorted(path.stem for path in PACKAGED_DIR.glob("*.toml"))


def resolve_source(name_or_path: str) -> Path:
    """The TOML file behind a packaged name or a path."""
    candidate = Path(name_or_path).expanduser()
    looks_like_path = candidate.suffix == ".toml" or "/" in name_or_path
    if looks_like_path or candidate.is_file():
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: no such config file")
        return candidate
    packaged = PACKAGED_DIR / f"{name_or_path}.toml"
    if packaged.is_file():
        return packaged
    names = ", ".join(packaged_names())
    raise ConfigError(f"unknown config {name_or_path!r}: use one of {names} or a path to a .toml")


def load_config(name_or_path: str, overrides: Sequence[str] = ()) -> Config:
    """Load, validate and override a configuration; every problem is one ConfigError line."""
    path = resolve_source(name_or_path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    config = _validate(data, str(path))
    if not overrides:
        return config
    for override in overrides:
        _apply_override(data, override)
    return _validate(data, "--set " + " ".join(overrides))


def parse_config(text: str, source: str) -> Config:
    """Validate TOML text (e.g. a run's saved config); ``source`` names it in errors."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{source}: invalid TOML: {error}") from None
    return _validate(data, source)


def dump_config(config: Config) -> str:
    """The configuration as TOML text that :func:`parse_config` reads back."""
    return msgspec.toml.encode(config).decode("utf-8")


def _validate(data: dict[str, Any], source: str) -> Config:
    try:
        return msgspec.convert(data, Config)
    except msgspec.ValidationError as error:
        raise ConfigError(f"{source}: {_describe(error)}") from None


_ERROR_AT = re.compile(r"(?P<what>.*) - at `\$(?P<where>.*)`")
_KEY_IN_MESSAGE = re.compile(r"Object (?:contains unknown|missing required) field `(?P<key>[^`]+)`")


def _describe(error: msgspec.ValidationError) -> str:
    """Turn msgspec's message into one line with a dotted key path."""
    message = str(error)
    match = _ERROR_AT.fullmatch(message)
    what, where = (match["what"], match["where"]) if match else (message, "")
    key_path = where.lstrip(".")
    key = _KEY_IN_MESSAGE.match(what)
    if key:
        full = f"{key_path}.{key['key']}" if key_path else key["key"]
        kind = "unknown key" if "unknown" in what else "missing required key"
        return f"{kind} '{full}'"
    what = what.replace("`", "")
    return f"'{key_path}': {what}" if key_path else what


def _apply_override(data: dict[str, Any], override: str) -> None:
    """Set ``key.path=value`` in the raw TOML data; the value is parsed as TOML if it can be."""
    key_path, separator, raw_value = override.partition("=")
    keys = key_path.strip().split(".")
    if not separator or not all(keys):
        raise ConfigError(f"--set {override!r}: expected key.path=value")
    try:
        value = tomllib.loads(f"value = {raw_value}")["value"]
    except tomllib.TOMLDecodeError:
        value = raw_value
    table = data
    for depth, key in enumerate(keys[:-1]):
        table = table.setdefault(key, {})
        if not isinstance(table, dict):
            where = ".".join(keys[: depth + 1])
            raise ConfigError(f"--set {override!r}: '{where}' is a value, not a table")
    table[keys[-1]] = value
