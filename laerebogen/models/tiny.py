"""A random tiny Llama (or Qwen2) with a Danish byte-level BPE tokenizer, for tests on the
real engine.

Its output is noise, which is exactly what tests of the mechanics need: batching, seeds,
stops, constrained decoding, parsing failures and resumption, in seconds on a CPU. The
tokenizer is byte-level so that any text, JSON and regular expressions included, can be
encoded; it is trained on the packaged seed tasks so that Danish prompts stay short.
Attention heads are 32 wide because vLLM's CPU attention has no kernel for smaller ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal, get_args

from laerebogen.errors import ModelError
from laerebogen.models.files import build_model_dir
from laerebogen.seeds import load_seeds, packaged_seed_path

Architecture = Literal["llama", "qwen2"]
ARCHITECTURES: tuple[Architecture, ...] = get_args(Architecture)
TINY = "tiny"  # the model directory's name in configs: laerebogen prepares it when missing
VOCAB_SIZE = 2048
END_OF_TEXT = "<|endoftext|>"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"
# ChatML, written for this model: every message in a start/end pair, then the open
# assistant turn the model continues.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MODEL_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "max_position_embeddings": 4096,
}


def _training_text() -> list[str]:
    """Every field of the packaged seed tasks: a few hundred KB of varied Danish."""
    texts = []
    for task in load_seeds(packaged_seed_path()):
        texts.append(task.instruction)
        for instance in task.instances:
            texts.extend((instance.input, instance.output))
    return [text for text in texts if text]


def _train_tokenizer(directory: Path) -> int:
    """Train and save the tokenizer with its chat template; returns the end-of-turn id."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[END_OF_TEXT, TURN_START, TURN_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_training_text(), trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=TURN_END,
        pad_token=END_OF_TEXT,
        chat_template=CHAT_TEMPLATE,
    )
    wrapped.save_pretrained(directory)
    return tokenizer.token_to_id(TURN_END)


def _build(directory: Path, seed: int, architecture: Architecture) -> dict[str, object]:
    import torch
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    end_of_turn = _train_tokenizer(directory)
    config_class, model_class = {
        "llama": (LlamaConfig, LlamaForCausalLM),
        "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    }[architecture]
    config = config_class(
        vocab_size=VOCAB_SIZE,
        eos_token_id=end_of_turn,
        bos_token_id=None,
        tie_word_embeddings=True,
        **MODEL_SHAPE,
    )
    torch.manual_seed(seed)
    model_class(config).save_pretrained(directory)
    GenerationConfig(eos_token_id=end_of_turn).save_pretrained(directory)
    return {"source": f"random tiny {architecture}", "seed": seed}


def build_tiny_model(
    directory: Path,
    seed: int = 0,
    progress: Callable[[str], None] = print,
    architecture: Architecture = "llama",
) -> Path:
    """Create the tiny model in ``directory`` (a no-op when it is already there); a second
    ``architecture`` (``qwen2``) gives a mixture's tests two really different models."""
    if architecture not in ARCHITECTURES:
        raise ModelError(
            f"unknown tiny architecture {architecture!r}: use {' or '.join(ARCHITECTURES)}"
        )
    start = time.perf_counter()
    built = build_model_dir(directory, lambda target: _build(target, seed, architecture), progress)
    if built:
        progress(f"built tiny model in {time.perf_counter() - start:.1f} s -> {directory}")
    return directory
