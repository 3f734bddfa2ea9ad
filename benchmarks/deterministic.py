"""What ``[engine] deterministic = true`` buys and costs on this machine's CPUs.

The same seeded requests (a shared few-shot header, then a task) are sent twice to one
engine, once in one batch and once in another order, split in two batches. With vLLM's
default batching the logits of a request can depend on its batch mates, so samples can
differ; deterministic mode (one sequence at a time on CPUs, where vLLM has no
batch-invariant kernels; no prefix cache) must give the same texts both ways. Headlines:
differing samples in each mode and the cost in tokens/s. Model: Gemma 3 270M (the
``local`` config's), prepared into ``--model-dir`` on first use.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

from laerebogen.config.schema import DEFAULT_MODEL_DIR, Model, Sampling
from laerebogen.config.schema import Engine as EngineSettings
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import CompletionRequest, Request, Result, sampling_seed
from laerebogen.models.prepare import prepare_model
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples

SAMPLING = Sampling(temperature=0.7, min_p=0.05, repetition_penalty=1.1, max_tokens=48)


def requests(count: int) -> list[Request]:
    """Seeded continuations of packaged seed instructions after a shared few-shot header, as
    base generation sends them (the header is what the prefix cache shares)."""
    examples = random.Random(0).sample(
        list(seed_examples(load_seeds(packaged_seed_path()))), count + 3
    )
    header = "".join(f"Opgave: {e.instruction}\nSvar: {e.output}\n\n" for e in examples[:3])
    return [
        CompletionRequest(
            id=str(index),
            prompt=f"{header}Opgave: {example.instruction}\nSvar:",
            sampling=SAMPLING,
            seed=sampling_seed(0, "deterministic", 0, str(index)),
        )
        for index, example in enumerate(examples[3:])
    ]


def two_ways(engine: Engine, batch: list[Request]) -> tuple[list[Result], list[Result], float]:
    """Results of ``batch`` in one call, then reversed in two calls (in request order), and
    the tokens per second of the first call."""
    start = time.perf_counter()
    together = engine.generate(batch)
    seconds = time.perf_counter() - start
    reversed_batch = batch[::-1]
    half = len(batch) // 2
    apart = engine.generate(reversed_batch[:half]) + engine.generate(reversed_batch[half:])
    by_id = {result.request_id: result for result in apart}
    tokens = sum(result.completion_tokens for result in together)
    return together, [by_id[request.id] for request in batch], tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16)
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()

    path = prepare_model("gemma-3-270m", Path(args.model_dir).expanduser())
    model = Model(path=str(path), dtype="float32", max_model_len=1024, enforce_eager=True)
    batch = requests(args.requests)
    figures: dict[str, tuple[int, float]] = {}
    for mode in ("default", "deterministic"):
        settings = EngineSettings(cpu_kvcache_gib=2, deterministic=mode == "deterministic")
        with Engine(model, path, settings) as engine:
            together, apart, rate = two_ways(engine, batch)
        differing = sum(a.text != b.text for a, b in zip(together, apart, strict=True))
        figures[mode] = (differing, rate)
        print(f"{mode:<14} {differing}/{len(batch)} samples differ between batchings; "
              f"{rate:.1f} tokens/s")  # fmt: skip
    cost = figures["default"][1] / figures["deterministic"][1]
    print(f"deterministic mode is {cost:.1f}x slower here")
    print(
        f"RESULT default_differing={figures['default'][0]} "
        f"deterministic_differing={figures['deterministic'][0]} slowdown={cost:.2f}"
    )


if __name__ == "__main__":
    main()
