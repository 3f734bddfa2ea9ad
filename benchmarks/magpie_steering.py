"""Which steering makes the local model's Magpie messages Danish, usable and new?

The Magpie stage runs on the local config's instruct model (Gemma 3 270M, pretrained, in
transcript mode) once per steering (``system``, ``user_start``, ``none``) over the same
prompt slots. A message counts as *Danish* when the language filter says so, as *usable*
when the stage kept its task (message and answer) and the merge's screening passes it, and
as *new* when it is usable and no near-duplicate (ROUGE-L 0.7) of a seed or of an earlier
message of the same steering. Not a speed benchmark: its headline is the share of new tasks.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import msgspec

from laerebogen.config.loading import load_config
from laerebogen.config.schema import DEFAULT_MODEL_DIR, MagpieSteering
from laerebogen.inference.engine import Engine
from laerebogen.records import Example
from laerebogen.stages.core import Context, drive
from laerebogen.stages.generation import prompt_slots
from laerebogen.stages.magpie import MagpieStage

STEERINGS: tuple[MagpieSteering, ...] = ("system", "user_start", "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=48)
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    parser.add_argument("--set", action="append", default=[], help="a config override")
    args = parser.parse_args()

    model_dir = f'model_dir="{Path(args.model_dir).expanduser()}"'
    config = load_config("local", [model_dir, *args.set])
    slots = prompt_slots(1, args.slots)
    messages: dict[str, list[str]] = {}
    tasks: dict[str, list[Example]] = {}
    engine = Engine.from_config(config, "instruct")
    with engine:
        context = Context(run_seed=config.seed, round=1, model=engine.name)
        for steering in STEERINGS:
            settings = msgspec.structs.replace(config.sources.magpie, steering=steering)
            stage = MagpieStage(settings)
            sent: list[str] = []

            def generate(requests, stage_sent=sent):  # type: ignore[no-untyped-def]
                results = engine.generate(requests)
                stage_sent += [r.text for q, r in zip(requests, results, strict=True)
                               if q.id.endswith("/user")]  # fmt: skip
                return results

            start = time.perf_counter()
            outcomes, _ = drive(stage, slots, context, generate)
            seconds = time.perf_counter() - start
            messages[steering] = sent
            tasks[steering] = [record for outcome in outcomes for record in outcome.records]
            print(f"{steering}: {args.slots} slots in {seconds:.0f} s", flush=True)

    from laerebogen.filtering.dedup import rouge_l_dedup
    from laerebogen.filtering.screening import Screener
    from laerebogen.seeds import load_seeds, seed_examples

    screener = Screener(config.filters)
    seeds = [seed.instruction for seed in seed_examples(load_seeds(config.seed_path()))]
    shares: dict[str, float] = {}
    print(f"{args.slots} slots per steering; shares of the slots")
    for steering in STEERINGS:
        judged = screener.language.judge_turns([[(text, "")] for text in messages[steering]])
        danish = sum(judgement.danish for judgement in judged)
        records = tasks[steering]
        screened = screener.screen([(r.instruction, r.input, r.output) for r in records])
        usable = [r for r, s in zip(records, screened, strict=True) if s.rejection is None]
        new = rouge_l_dedup([r.instruction for r in usable], 0.7, seeds)
        shares[steering] = len(new) / args.slots
        print(
            f"  {steering:<11} messages Danish {danish}/{len(messages[steering])}, tasks kept by "
            f"the stage {len(records)}, usable {len(usable)}, new {len(new)}"
        )
        for record in usable[:3]:
            print(f"    e.g. {record.instruction[:100]!r}")
    best = max(shares, key=shares.__getitem__)
    print(f"best steering on the local model: {best}")
    print("RESULT " + " ".join(f"{s}_new={v:.2f}" for s, v in shares.items()) + f" best={best}")


if __name__ == "__main__":
    main()
