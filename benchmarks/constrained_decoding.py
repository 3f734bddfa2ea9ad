"""What constrained decoding costs per token: free JSON strings against bounded ones.

The quality stage's requests (its JSON verdict is the recipe's largest structured reply), made
by the real stage with the full recipe's settings, are decoded on Gemma 3 270M three ways: without
a constraint (the baseline), constrained with free strings (the default), and constrained with
strings bounded by a share of ``max_tokens`` (``bounded = true``, meant for the random test
model). Gemma's 262k-token vocabulary matters: it is what xgrammar masks at every token, and
the 27B model of the full recipe has the same one. Decoding stops after ``--max-tokens``: the
cost per token is what counts, not the replies. Models are prepared into ``--model-dir`` on
first use. The figure is seconds per decoding step (one token of every unfinished request),
against the unconstrained run.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import msgspec

from laerebogen.config.schema import DEFAULT_MODEL_DIR, Model, Quality
from laerebogen.config.schema import Engine as EngineSettings
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import Request
from laerebogen.models.prepare import prepare_model
from laerebogen.seeds import load_seeds, packaged_seed_path, seed_examples
from laerebogen.stages.core import Context
from laerebogen.stages.quality import QualityStage

MODEL = "gemma-3-270m"


def quality_requests(settings: Quality, count: int, max_tokens: int) -> list[Request]:
    """The first request the quality stage makes for ``count`` seed examples, cut short."""
    examples = list(seed_examples(load_seeds(packaged_seed_path())))
    stage = QualityStage(settings)
    context = Context(run_seed=0, model=MODEL)
    requests = []
    for example in random.Random(0).sample(examples, count):
        request = next(stage.process(example, context))
        sampling = msgspec.structs.replace(request.sampling, max_tokens=max_tokens)
        requests.append(msgspec.structs.replace(request, sampling=sampling))
    return requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--model-dir", default=DEFAULT_MODEL_DIR)
    args = parser.parse_args()

    modes = {
        "none": Quality(constrained=False),
        "free": Quality(),
        "bounded": Quality(bounded=True),
    }
    batches = {
        mode: quality_requests(settings, args.requests, args.max_tokens)
        for mode, settings in modes.items()
    }
    path = prepare_model(MODEL, Path(args.model_dir).expanduser())
    model = Model(path=str(path), dtype="bfloat16", max_model_len=2048, enforce_eager=True)
    per_step: dict[str, float] = {}
    with Engine(model, path, EngineSettings(cpu_kvcache_gib=2)) as engine:
        # Warm-up with every prompt, so that each mode finds them in the prefix cache alike.
        engine.generate(batches["none"])
        for mode, requests in batches.items():
            start = time.perf_counter()
            results = engine.generate(requests)
            seconds = time.perf_counter() - start
            # A step decodes one token of every unfinished request; replies differ in length.
            steps = max(result.completion_tokens for result in results)
            tokens = sum(result.completion_tokens for result in results)
            per_step[mode] = seconds / max(steps, 1)
            print(
                f"{mode:>8}: {len(requests)} requests, {tokens} tokens in {steps} steps, "
                f"{seconds:.2f} s ({1000 * per_step[mode]:.0f} ms per step)",
                flush=True,
            )
    free = per_step["free"] / per_step["none"]
    bounded = per_step["bounded"] / per_step["none"]
    print(
        f"per step against no constraint: free strings {free:.2f}x, bounded {bounded:.1f}x; "
        f"free strings are {bounded / free:.0f}x faster than bounded ones"
    )
    print(
        f"RESULT free_slowdown={free:.2f} bounded_slowdown={bounded:.1f} "
        f"free_vs_bounded_speedup={bounded / free:.0f} "
        f"ms_per_step_none={1000 * per_step['none']:.0f}"
    )


if __name__ == "__main__":
    main()
