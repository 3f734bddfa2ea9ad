"""The tiny test model: built in seconds, idempotent, byte-level, with a chat template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from laerebogen.errors import ModelError
from laerebogen.models.files import MARKER
from laerebogen.models.tiny import MODEL_SHAPE, build_tiny_model
from tests.support.commands import cli


def test_the_tokenizer_encodes_any_text_and_keeps_danish_short(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    for text in ("Ærø og blåbær på Østerbro", '{"svar": "ja"}\t\\d+ 🙂', "Здравствуйте"):
        assert tokenizer.decode(tokenizer(text).input_ids) == text
    danish = "Forklar forskellen mellem en sætning og et ord i en dansk tekst."
    assert len(tokenizer(danish).input_ids) < len(danish) / 2.5


def test_the_chat_template_renders_every_turn_and_opens_the_answer(tiny_model_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hej"}, {"role": "assistant", "content": "Goddag"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert rendered == (
        "<|im_start|>user\nHej<|im_end|>\n<|im_start|>assistant\nGoddag<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert tokenizer.eos_token == "<|im_end|>"


def test_the_model_has_vllm_cpu_compatible_heads(tiny_model_dir: Path) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["head_dim"] == MODEL_SHAPE["head_dim"] >= 32
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert (tiny_model_dir / "model.safetensors").is_file()


def test_a_second_architecture_makes_a_really_different_model(
    tiny_model_dir: Path, tiny_qwen2_dir: Path
) -> None:
    config = json.loads((tiny_qwen2_dir / "config.json").read_text())
    assert config["architectures"] == ["Qwen2ForCausalLM"] and config["head_dim"] == 32
    weights = (tiny_qwen2_dir / "model.safetensors").read_bytes()
    assert weights != (tiny_model_dir / "model.safetensors").read_bytes()


def test_an_unknown_architecture_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"^unknown tiny architecture 'gpt2': use llama or qwen2$"):
        build_tiny_model(tmp_path / "x", architecture="gpt2")  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


def test_model_tiny_command_builds_once_and_then_is_a_no_op(tmp_path: Path) -> None:
    target = tmp_path / "models" / "tiny"
    first = cli("model", "tiny", str(target), "--seed", "3")
    assert first.returncode == 0, first.stderr
    assert f"-> {target}" in first.stdout and (target / MARKER).is_file()
    weights = (target / "model.safetensors").read_bytes()
    again = cli("model", "tiny", str(target), "--seed", "3")
    assert again.returncode == 0 and again.stdout.strip() == f"{target}: already prepared"
    assert (target / "model.safetensors").read_bytes() == weights
    assert not [p.name for p in target.parent.iterdir() if ".partial" in p.name]


def test_a_directory_laerebogen_did_not_build_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "tiny"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    result = cli("model", "tiny", str(target))
    assert result.returncode == 2
    assert "exists but was not built by laerebogen" in result.stderr
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
