"""What a stage would send to the model, as text: prompt debugging without a GPU."""

from __future__ import annotations

import json
from collections.abc import Iterator

from laerebogen.config.schema import Config
from laerebogen.errors import LaerebogenError
from laerebogen.inference.requests import ChatRequest, Request, UserTurnRequest, request_kind
from laerebogen.records import Example
from laerebogen.seeds import load_seeds, seed_examples
from laerebogen.stages import build_stage
from laerebogen.stages.core import Context, CpuStage


def preview_inputs(stage_name: str, config: Config, count: int) -> list[Example]:
    """Inputs to show a stage with: prompt slots for generation and Magpie, corpus passages
    for grounded questions, else the seed examples."""
    if stage_name in ("generation", "magpie"):
        from laerebogen.stages.generation import prompt_slots

        return prompt_slots(0, count)
    if stage_name == "grounded":
        from laerebogen.sources.corpus import corpus_passages

        return corpus_passages(config.sources.grounded)[:count]
    return list(seed_examples(load_seeds(config.seed_path())))[:count]


def first_requests(stage_name: str, config: Config, count: int) -> Iterator[Request]:
    """The first request of the stage's work for each of ``count`` inputs."""
    stage = build_stage(stage_name, config)
    if isinstance(stage, CpuStage):
        raise LaerebogenError(f"{stage_name} asks no model: it has no requests to preview")
    model = min(config.stage_models(stage_name))  # of a mixture: the first by name
    context = Context(run_seed=config.seed, model=config.model_path(model).name)
    for record in preview_inputs(stage_name, config, count):
        request = next(stage.process(record, context), None)
        if request is not None:
            yield request


def request_preview(request: Request) -> str:
    """A request as a person reads it: settings on one line, then the prompt or messages."""
    sampling = request.sampling
    settings = [
        f"seed {request.seed}",
        f"temperature {sampling.temperature}",
        f"top_p {sampling.top_p}",
        f"min_p {sampling.min_p}",
        f"repetition_penalty {sampling.repetition_penalty}",
        f"max_tokens {sampling.max_tokens}",
    ]
    if request.stop:
        settings.append("stop " + json.dumps(list(request.stop), ensure_ascii=False))
    if request.constraint is not None:
        kind = "JSON schema" if request.constraint.json_schema is not None else "regex"
        settings.append(f"constrained by {kind}")
    lines = [f"=== {request.id} ({request_kind(request)}; {', '.join(settings)})"]
    if isinstance(request, ChatRequest):
        for message in request.messages:
            lines += [f"--- {message.role}", message.content]
    elif isinstance(request, UserTurnRequest):
        if request.system:
            lines += ["--- system", request.system]
        lines += ["--- user (the model writes it, starting with:)", request.start]
    else:
        lines.append(request.prompt)
    if request.constraint is not None:
        constraint = request.constraint.json_schema or request.constraint.regex
        text = constraint if isinstance(constraint, str) else json.dumps(constraint)
        lines += ["--- constraint", text]
    return "\n".join(lines)
