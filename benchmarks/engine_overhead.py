"""The engine's overhead over raw ``vllm.LLM.generate``, on the same model in the same run.

Both sides answer the same 256 Danish completion prompts (three seed tasks as few-shot
examples, as base generation sends them) with the same per-request sampling parameters
and seeds, on one vLLM instance built on the tiny random model: the difference is what the
engine adds (building requests, rendering and tokenizing every prompt to check its length,
turning outputs into results). Repetitions alternate raw and engine, and the best time of
each is compared, so warm-up and machine noise hit both sides alike.

Target: overhead ratio (engine / raw) <= 1.05.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from laerebogen.config.schema import Engine as EngineSettings
from laerebogen.config.schema import Model, Sampling
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import CompletionRequest, Request, sampling_seed
from laerebogen.models.tiny import build_tiny_model
from laerebogen.seeds import load_seeds, packaged_seed_path

TARGET = 1.05


def few_shot_prompts(count: int, rng: random.Random) -> list[str]:
    """Prompts of three random seed tasks each, ending where the model writes task 4."""
    tasks = load_seeds(packaged_seed_path())
    prompts = []
    for _ in range(count):
        shots = rng.sample(tasks, 3)
        body = "".join(
            f"###\n{n}. Instruktion: {task.instruction}\n{n}. Input:\n"
            f"{task.instances[0].input or '<intet input>'}\n{n}. Output:\n"
            f"{task.instances[0].output}\n"
            for n, task in enumerate(shots, 1)
        )
        prompts.append(f"Find på nye opgaver.\n\n{body}###\n4. Instruktion:")
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--model-dir", type=Path, help="holds a built tiny/ (default: build one)")
    args = parser.parse_args()

    sampling = Sampling(temperature=1.0, max_tokens=args.max_tokens)
    prompts = few_shot_prompts(args.prompts, random.Random(0))
    with tempfile.TemporaryDirectory() as scratch:
        if args.model_dir:
            model_dir = args.model_dir / "tiny"
        else:
            model_dir = build_tiny_model(Path(scratch) / "tiny", progress=lambda _: None)
        model = Model(path=str(model_dir), dtype="float32", max_model_len=2048, enforce_eager=True)
        settings = EngineSettings(chunk_size=args.prompts, cpu_kvcache_gib=1)
        with Engine(model, model_dir, settings) as engine:
            llm = engine.load()
            from vllm import SamplingParams  # after the engine has configured vLLM

            seeds = [sampling_seed(0, "bench", 0, str(i)) for i in range(len(prompts))]

            def raw() -> int:
                params = [
                    SamplingParams(temperature=1.0, max_tokens=args.max_tokens, seed=seed)
                    for seed in seeds
                ]
                outputs = llm.generate(prompts, params, use_tqdm=False)
                return sum(len(output.outputs[0].token_ids) for output in outputs)

            def ours() -> int:
                requests: list[Request] = [
                    CompletionRequest(id=str(i), prompt=prompt, sampling=sampling, seed=seed)
                    for i, (prompt, seed) in enumerate(zip(prompts, seeds, strict=True))
                ]
                return sum(result.completion_tokens for result in engine.generate(requests))

            raw()  # warm-up, shared by both sides
            times: dict[str, list[float]] = {"raw": [], "engine": []}
            tokens: dict[str, int] = {}
            for _ in range(args.repeats):
                for name, run in (("raw", raw), ("engine", ours)):
                    start = time.perf_counter()
                    tokens[name] = run()
                    times[name].append(time.perf_counter() - start)

    best = {name: min(values) for name, values in times.items()}
    ratio = best["engine"] / best["raw"]
    print(f"{args.prompts} prompts x up to {args.max_tokens} tokens, {args.repeats} repetitions")
    for name in ("raw", "engine"):
        spread = ", ".join(f"{value:.3f}" for value in times[name])
        print(f"  {name:<7} best {best[name]:.3f} s ({spread}); {tokens[name]} tokens")
    verdict = "met" if ratio <= TARGET else "not met"
    print(f"overhead ratio {ratio:.3f} (target <= {TARGET}: {verdict})")
    print(
        f"RESULT overhead_ratio={ratio:.3f} raw_s={best['raw']:.3f} engine_s={best['engine']:.3f}"
    )


if __name__ == "__main__":
    main()
