"""The browse page at scale: how long ``write_browse`` takes and how much the first view loads.

A synthetic finished run of ``--conversations`` conversations is built without a model, shaped
like the full recipe: a quarter are base records (base generation, grammar correcting one in
ten, quality rewriting one in ten), three evolution generations add a quarter each, and every
conversation has four user turns with answers of about 80 words, annotated. The baseline is the
export of the same run (scoring and writing the complete and filtered JSONL), timed in the same
process. ``--browser`` also opens the page in headless Chromium and times the first view (the
table's first rows shown) and a text search over every conversation.

``seconds`` is the page as ``publish`` writes it (with the export's verdicts),
``standalone_seconds`` as ``laerebogen browse`` does (judging every conversation again). Targets
on the 2-core development machine: 200,000 conversations in at most 180 s, and the first view
under 2 s.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import msgspec
from dedup import vocabulary  # type: ignore[import-not-found]  # benchmarks/dedup.py

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/support/browser.py

from laerebogen.config.loading import load_config
from laerebogen.outputs.browse import write_browse
from laerebogen.outputs.export import export
from laerebogen.pipeline.driver import import_seeds
from laerebogen.pipeline.plan import plan_first
from laerebogen.records import Annotation, Example, Message, Provenance, Step, child_id, record_id
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import start_run
from tests.support.browser import chromium
from tests.support.finished_run import merge_step

GENERATIONS = 3
TURNS = 4
DOMAINS = ("madlavning", "sundhed", "historie", "programmering", "sprog", "natur")
OPERATIONS = ("add_constraints", "deepen", "concretise", "increase_reasoning", "in_breadth")


class Words:
    """Sentences of a Zipf vocabulary, as the dedup benchmark makes them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words, self.cumulative = vocabulary(self.rng, 20_000)

    def text(self, count: int) -> str:
        words = self.rng.choices(self.words, cum_weights=self.cumulative, k=count)
        return " ".join(words).capitalize() + "."


def build_run(root: Path, conversations: int) -> tuple[RunStore, object]:
    """The synthetic finished run (see the module docstring)."""
    words = Words(0)
    base_count = conversations // (GENERATIONS + 1)
    config = load_config(
        "tiny",
        [
            f"generation.target={base_count}",
            "generation.max_rounds=1",
            f"evolution.generations={GENERATIONS}",
            f"followups.turns={TURNS - 1}",
            "annotate.enabled=true",
            "code_check.enabled=false",
        ],
    )
    store = start_run(config, root)
    import_seeds(store, config.seed_path())
    plan = plan_first(store, config)

    def step(stage: str, seed: int, note: str = "", round: int = 0) -> Step:
        return Step(stage, round, "tiny", sampling_seed=seed, shard=seed % 8, note=note)

    base = [
        Example(
            id=record_id("bench", n),
            instruction=words.text(random.Random(n).randint(8, 30)),
            output=words.text(80),
            provenance=Provenance("self-instruct", steps=(step("generation", n, "slot 0", 1),)),
        )
        for n in range(base_count)
    ]
    plan = merge_step(store, config, plan, base)
    grammar = [
        msgspec.structs.replace(r, instruction=r.instruction + " Kort.").with_step(
            step("grammar", n, "corrected")
        )
        if n % 10 == 0
        else r.with_step(step("grammar", n, "unchanged"))
        for n, r in enumerate(base)
    ]
    plan = merge_step(store, config, plan, grammar)
    quality = [
        msgspec.structs.replace(r, output=words.text(90)).with_step(step("quality", n, "improved"))
        if n % 10 == 1
        else r.with_step(step("quality", n, "good"))
        for n, r in enumerate(grammar)
    ]
    plan = merge_step(store, config, plan, quality)
    pool, parents = list(quality), quality
    for generation in range(1, GENERATIONS + 1):
        children = []
        for n, parent in enumerate(parents):
            operation = OPERATIONS[n % len(OPERATIONS)]
            children.append(
                Example(
                    id=child_id(parent.id, "evolution", generation),
                    instruction=words.text(random.Random(n).randint(12, 40)),
                    output=words.text(80),
                    provenance=Provenance(
                        origin="evolved",
                        generation=generation,
                        operation=operation,
                        parent_id=parent.id,
                        steps=(
                            *parent.provenance.steps,
                            step("evolution", n, operation, generation),
                        ),
                    ),
                )
            )
        plan = merge_step(store, config, plan, children)
        pool += children
        parents = children
    followups = []
    for n, record in enumerate(pool):
        extra = [Message(role, words.text(20 if role == "user" else 80))
                 for _ in range(TURNS - 1) for role in ("user", "assistant")]  # fmt: skip
        longer = msgspec.structs.replace(
            record, messages=(*record.conversation(), *extra), scores={"danish_confidence": 0.9}
        )
        followups.append(longer.with_step(step("followups", n, f"turns={TURNS - 1}/{TURNS - 1}")))
    plan = merge_step(store, config, plan, followups)
    annotated = [
        msgspec.structs.replace(
            r,
            annotation=Annotation(DOMAINS[n % 6], "forklaring", 1 + n % 5, 1 + n % 5, "Ok.", "nej"),
        ).with_step(step("annotate", n))
        for n, r in enumerate(followups)
    ]
    merge_step(store, config, plan, annotated)
    return store, config


def first_view(index: Path, search: str) -> tuple[float, float]:
    """Seconds to the first rows of the table in headless Chromium (the tests' browser), and
    of a search over every conversation until it has looked in every file."""
    with chromium(index.parent / "screenshots") as browser:
        started = time.perf_counter()
        browser.open(index)
        browser.wait(lambda: browser.find_all("#conversations tbody tr"), "the first rows")
        shown = time.perf_counter() - started
        started = time.perf_counter()
        browser.find("#search").send_keys(search)
        browser.wait(lambda: browser.find_all("#search-status[data-done]"), "the search", 600)
        return shown, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=200_000)
    parser.add_argument("--browser", action="store_true", help="time the page in Chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        started = time.perf_counter()
        store, config = build_run(Path(temporary) / "run", args.conversations)
        built = time.perf_counter() - started
        print(f"built a run of {args.conversations} conversations in {built:.0f} s")
        started = time.perf_counter()
        exported = export(store, config)  # type: ignore[arg-type]
        export_seconds = time.perf_counter() - started
        print(f"export (baseline): {export_seconds:.1f} s")
        started = time.perf_counter()
        # As publish does: the export's verdicts, not judged again.
        result = write_browse(
            store,
            config,  # type: ignore[arg-type]
            verdicts=exported.verdicts,
            log=lambda line: print(line, flush=True),
        )
        seconds = time.perf_counter() - started
        started = time.perf_counter()
        write_browse(store, config, log=lambda _: None)  # type: ignore[arg-type]
        standalone = time.perf_counter() - started  # `laerebogen browse`: judged again
        print(f"laerebogen browse (judges the conversations again): {standalone:.1f} s")
        data = result.index.parent / "data"
        total = sum(path.stat().st_size for path in data.iterdir()) / 2**20
        first = sum((data / f"{name}.js").stat().st_size for name in ("meta", "table", "rows-0000"))
        print(
            f"browse: {seconds:.1f} s ({seconds / export_seconds:.2f}x the export), "
            f"{result.files} files, {total:.0f} MiB; first view loads {first / 2**20:.1f} MiB"
        )
        figures = {
            "conversations": exported.count,
            "seconds": f"{seconds:.1f}",
            "export_seconds": f"{export_seconds:.1f}",
            "ratio_to_export": f"{seconds / export_seconds:.2f}",
            "standalone_seconds": f"{standalone:.1f}",
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "data_mib": f"{total:.0f}",
            "first_view_mib": f"{first / 2**20:.1f}",
        }
        if args.browser:
            shown, searched = first_view(result.index, "zzzz-not-there")
            print(f"Chromium: first view {shown:.2f} s, a search over everything {searched:.1f} s")
            figures |= {"first_view_s": f"{shown:.2f}", "search_s": f"{searched:.1f}"}
    print("RESULT " + " ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    sys.exit(main())
