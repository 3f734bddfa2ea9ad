"""Request and result types, and the derivation of sampling seeds."""

from __future__ import annotations

import msgspec
import pytest

from laerebogen.config.schema import Sampling
from laerebogen.inference.requests import (
    SEED_BITS,
    ChatRequest,
    CompletionRequest,
    Constraint,
    Request,
    sampling_seed,
)
from laerebogen.records import Message


def test_sampling_seed_is_stable_and_distinct_per_component() -> None:
    base = sampling_seed(7, "generation", 1, "abc")
    assert base == sampling_seed(7, "generation", 1, "abc")
    variants = {
        sampling_seed(8, "generation", 1, "abc"),
        sampling_seed(7, "evolution", 1, "abc"),
        sampling_seed(7, "generation", 2, "abc"),
        sampling_seed(7, "generation", 1, "abd"),
    }
    assert base not in variants and len(variants) == 4
    # Fields are separated, so shifting text between them does not collide.
    assert sampling_seed(7, "gen", 11, "x") != sampling_seed(7, "gen1", 1, "x")


def test_sampling_seeds_fit_in_63_bits_and_do_not_collide_over_many_records() -> None:
    seeds = {sampling_seed(0, "generation", 0, f"record-{i}") for i in range(100_000)}
    assert len(seeds) == 100_000
    assert all(0 <= seed < 2**SEED_BITS for seed in seeds)


def test_requests_round_trip_through_json_with_their_kind() -> None:
    sampling = Sampling(temperature=0.2, max_tokens=64)
    requests: list[Request] = [
        CompletionRequest(id="a", prompt="Hej", sampling=sampling, seed=1, stop=("\n20.",)),
        ChatRequest(
            id="b",
            messages=(Message("user", "Hvad er 2+2?"),),
            sampling=sampling,
            seed=2,
            constraint=Constraint(json_schema={"type": "object"}),
        ),
    ]
    encoded = msgspec.json.encode(requests)
    assert b'"kind":"completion"' in encoded and b'"kind":"chat"' in encoded
    assert msgspec.json.decode(encoded, type=list[Request]) == requests


def test_a_request_without_max_tokens_gets_the_configured_default_not_vllms_16() -> None:
    request = msgspec.json.decode(
        b'{"kind":"completion","id":"a","prompt":"Hej","seed":1,"sampling":{}}', type=Request
    )
    assert request.sampling.max_tokens == Sampling().max_tokens > 16


def test_a_constraint_needs_exactly_one_kind() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Constraint()
    with pytest.raises(ValueError, match="exactly one"):
        Constraint(json_schema={"type": "object"}, regex="a+")
    with pytest.raises(msgspec.ValidationError, match="exactly one"):
        msgspec.json.decode(b"{}", type=Constraint)
