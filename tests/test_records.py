"""Records: round trips, provenance and stable ids."""

import msgspec
import pytest

from laerebogen.records import Example, Message, Provenance, Rejection, Step, child_id, record_id
from tests.support.records import make_example, make_rejection


def test_example_round_trips_through_msgpack_and_json() -> None:
    example = make_example(3, followups=True)
    for module in (msgspec.msgpack, msgspec.json):
        assert module.decode(module.encode(example), type=Example) == example


def test_conversation_is_built_from_the_first_exchange_until_follow_ups_exist() -> None:
    example = make_example(0)
    assert example.input  # index 0 has an input
    user, assistant = example.conversation()
    assert user == Message("user", f"{example.instruction}\n\n{example.input}")
    assert assistant == Message("assistant", example.output)
    with_turns = make_example(0, followups=True)
    assert len(with_turns.conversation()) == 4
    assert with_turns.conversation()[2].content == "Kan du give et eksempel?"


def test_with_step_appends_provenance_without_touching_the_original() -> None:
    example = make_example(1)
    step = Step(
        stage="grammar", model="gemma-3-27b-it", sampling_seed=99, shard=4, note="corrected"
    )
    changed = example.with_step(step)
    assert changed.provenance.steps[-1] == step
    assert len(changed.provenance.steps) == len(example.provenance.steps) + 1
    assert example.provenance.steps[-1].stage == "generation"


def test_records_are_immutable() -> None:
    example = make_example(2)
    with pytest.raises(AttributeError):
        example.instruction = "ny"  # type: ignore[misc]


def test_ids_are_stable_and_distinct() -> None:
    assert record_id(42, "generation", 1, 7) == record_id(42, "generation", 1, 7)
    ids = {
        record_id(42, "generation", round_, prompt) for round_ in range(50) for prompt in range(200)
    }
    assert len(ids) == 50 * 200
    assert all(len(value) == 16 for value in ids)
    parent = record_id("seed", 1)
    assert child_id(parent, "evolution", 1) != child_id(parent, "evolution", 2)
    # Parts are separated, so ("ab", "c") and ("a", "bc") differ.
    assert record_id("ab", "c") != record_id("a", "bc")


def test_provenance_rejects_unknown_origin() -> None:
    raw = msgspec.json.encode({"origin": "magic"})
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(raw, type=Provenance)


def test_rejection_keeps_reason_and_candidate() -> None:
    rejection = make_rejection(5, "banned_word")
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(rejection), type=Rejection)
    assert decoded.reason == "banned_word"
    assert decoded.record is not None and decoded.record.id == rejection.record.id
