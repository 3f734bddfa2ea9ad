"""Grammar correction: corrections are applied, rewrites and unreadable replies are not.

Unit tests drive the stage with canned replies; one test runs it on the real engine with the
tiny random model, whose constrained noise parses but is never a correction.
"""

from __future__ import annotations

import json
import re
from typing import get_args

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laerebogen.config.schema import Config, Grammar
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import ChatRequest, Constraint, FinishReason
from laerebogen.records import Example
from laerebogen.stages.core import Context, Outcome, drive
from laerebogen.stages.grammar import GrammarStage, correction_limits, similarity
from laerebogen.stages.text import json_object
from laerebogen.stages.triples import Triple, triple_members
from tests.support.records import make_example
from tests.support.stages import CONTEXT, RECORD, run, short_records

FIXED = Triple(
    "Forklar, hvorfor himlen er blå.",
    "",
    'Sollyset spredes i atmosfæren, og det blå lys spredes mest.\n\n"Rayleigh-spredning".',
)


def as_json(instruction: str, input: str, output: str, **extra: object) -> str:
    """A reply as the model writes it under the constraint: compact JSON."""
    fields = {"instruktion": instruction, "input": input, "output": output, **extra}
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def grammar(**settings: object) -> GrammarStage:
    return GrammarStage(Grammar(**settings))  # type: ignore[arg-type]


def single(text: str, record: Example = RECORD, finish: FinishReason = "stop") -> Outcome:
    [outcome], _, _ = run(grammar(), [record], text, finish)
    return outcome


def test_the_request_asks_in_danish_for_json_with_the_triple_and_a_regex() -> None:
    stage = grammar(sampling={"temperature": 0.1, "max_tokens": 300})
    _, _, [request] = run(stage, [RECORD], as_json(*FIXED))
    assert isinstance(request, ChatRequest)
    assert request.id == "rec-1/correct"
    assert request.seed == CONTEXT.seed("grammar", "rec-1", "correct")
    assert request.sampling == stage.settings.sampling
    [message] = request.messages
    assert message.role == "user"
    assert "stavefejl" in message.content and '"instruktion"' in message.content
    assert Triple.of(RECORD).render() in message.content
    assert request.constraint is not None and request.constraint.regex is not None
    assert run(grammar(constrained=False), [RECORD], "")[2][0].constraint is None


def test_one_shared_free_regex_unless_bounded_for_a_model_that_never_stops() -> None:
    """Per-record bounds cost xgrammar up to seconds per token; they are for the test model."""
    records = [RECORD, msgspec.structs.replace(RECORD, id="rec-2", output="Et andet svar.")]
    free = {request.constraint for request in run(grammar(), records, "")[2]}
    assert free == {Constraint(regex=json_object(triple_members(None)))}
    bounded = [request.constraint for request in run(grammar(bounded=True), records, "")[2]]
    assert bounded == [
        Constraint(regex=json_object(triple_members(correction_limits(Triple.of(record)))))
        for record in records
    ]


def test_the_regex_allows_line_breaks_and_quotes_but_keeps_empty_fields_empty() -> None:
    limits = correction_limits(Triple.of(RECORD))
    assert limits["input"] == 0
    pattern = re.compile(json_object(triple_members(limits)))
    assert pattern.fullmatch(as_json(*FIXED))
    assert pattern.fullmatch(as_json("Forklar \\u00e6.", "", "Svar"))
    assert not pattern.fullmatch(as_json(FIXED.instruction, "Nyt input", FIXED.output))
    too_long = "x" * (limits["output"] + 1)
    assert not pattern.fullmatch(as_json(FIXED.instruction, "", too_long))
    assert not pattern.fullmatch(as_json(*FIXED).replace('":"', '": "', 1))  # no spaces


def test_a_correction_replaces_the_text_and_keeps_id_scores_and_provenance() -> None:
    outcome = single(as_json(*FIXED))
    [record] = outcome.records
    assert outcome.rejections == ()
    assert Triple.of(record) == FIXED
    assert (record.id, record.scores) == (RECORD.id, RECORD.scores)
    assert record.provenance.steps[:-1] == RECORD.provenance.steps
    step = record.provenance.steps[-1]
    assert (step.stage, step.note, step.round, step.shard, step.model) == (
        "grammar", "corrected", 1, 2, "instruct",
    )  # fmt: skip
    assert step.sampling_seed == CONTEXT.seed("grammar", "rec-1", "correct")


def test_an_identical_reply_is_unchanged_and_surrounding_whitespace_is_dropped() -> None:
    outcome = single(as_json(f"  {RECORD.instruction}\n", "", RECORD.output))
    [record] = outcome.records
    assert Triple.of(record) == Triple.of(RECORD) and outcome.rejections == ()
    assert record.provenance.steps[-1].note == "unchanged"


def test_a_code_fenced_reply_and_extra_keys_are_read() -> None:
    [record] = single(f"```json\n{as_json(*FIXED, kommentar='rettet')}\n```").records
    assert Triple.of(record) == FIXED


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ('{"instruktion": "Forklar, hvorfor', "invalid_json"),
        ("Her er den rettede tekst:\n" + as_json(*FIXED), "invalid_json"),
        ("Beklager, men det kan jeg ikke hjælpe med.", "invalid_json"),
        ("", "invalid_json"),
        ("[1, 2]", "not_an_object"),
        (
            '{"instruktion": "Forklar, hvorfor himlen er blå.", "output": "Sollyset."}',
            "missing_field",
        ),
        (as_json(FIXED.instruction, None, FIXED.output), "wrong_type"),  # type: ignore[arg-type]
        (as_json(FIXED.instruction, "", ["Sollyset."]), "wrong_type"),  # type: ignore[arg-type]
    ],
)
def test_an_unreadable_reply_keeps_the_original_and_says_why(text: str, reason: str) -> None:
    outcome = single(text)
    [record] = outcome.records
    assert Triple.of(record) == Triple.of(RECORD)
    assert record.provenance.steps[-1].note == "unchanged"
    [rejection] = outcome.rejections
    assert (rejection.reason, rejection.source_id, rejection.record) == (reason, "rec-1", None)
    assert rejection.raw == text


@pytest.mark.parametrize(
    ("finish", "reason"),
    [("length", "truncated"), ("rejected", "prompt_too_long"), ("abort", "aborted")],
)
def test_an_unfinished_reply_keeps_the_original(finish: FinishReason, reason: str) -> None:
    outcomes, funnel, _ = run(grammar(), [RECORD], as_json(*FIXED)[:40], finish, "too long")
    [record] = outcomes[0].records
    assert Triple.of(record) == Triple.of(RECORD)
    assert funnel.rejected == {reason: 1} and funnel.records == 1
    assert funnel.finished == {finish: 1}


@pytest.mark.parametrize(
    "mode", [{}, {"bounded": True}, {"constrained": False}], ids=["free", "bounded", "plain"]
)
def test_a_field_that_reaches_its_bound_ran_on_and_is_not_applied(
    mode: dict[str, object],
) -> None:
    bound = correction_limits(FIXED)["output"]
    ran_on = FIXED.output + " og så videre" * 40
    for reply in (ran_on[:bound], ran_on):  # cut at the bound while decoding, or not
        [[outcome], _, _] = run(grammar(**mode), [RECORD], as_json(FIXED.instruction, "", reply))
        assert Triple.of(outcome.records[0]) == Triple.of(RECORD)
        assert outcome.rejections[0].reason == "too_long"
    [fixed] = run(grammar(**mode), [RECORD], as_json(*FIXED))[0]
    assert Triple.of(fixed.records[0]) == FIXED


@pytest.mark.parametrize(
    "reply",
    [
        # The model answered the task instead of correcting it.
        as_json("Himlen er blå på grund af Rayleigh-spredning.", "", FIXED.output),
        # A refusal inside the JSON.
        as_json(FIXED.instruction, "", "Beklager, det kan jeg ikke hjælpe med."),
        # Translated into English.
        as_json("Explain why the sky is blue.", "", "Sunlight scatters in the atmosphere."),
        # An emptied field and a filled-in empty one.
        as_json(FIXED.instruction, "", ""),
        as_json(FIXED.instruction, "Himlen om dagen.", FIXED.output),
    ],
)
def test_a_rewrite_is_rejected_with_its_candidate_and_the_original_is_kept(reply: str) -> None:
    outcome = single(reply)
    [record] = outcome.records
    assert Triple.of(record) == Triple.of(RECORD)
    assert record.provenance.steps[-1].note == "unchanged"
    [rejection] = outcome.rejections
    assert rejection.reason == "rewrite" and "ROUGE-L" in rejection.detail
    assert rejection.record is not None and rejection.record.id == RECORD.id
    assert Triple.of(rejection.record) == triple_of_reply(reply)


def triple_of_reply(reply: str) -> Triple:
    fields = json.loads(reply)
    return Triple(fields["instruktion"].strip(), fields["input"].strip(), fields["output"].strip())


def test_the_similarity_threshold_comes_from_the_settings() -> None:
    reply = as_json(FIXED.instruction, "", "Sollyset spredes i luften, og blåt lys spredes mest.")
    assert single(reply).rejections == ()
    [strict] = run(grammar(min_similarity=0.95), [RECORD], reply)[0]
    assert strict.rejections[0].reason == "rewrite"


def test_language_is_not_this_stages_job() -> None:
    """An English example corrected in English is applied; the merge filters judge language."""
    english = msgspec.structs.replace(
        RECORD, instruction="Explain why teh sky is blue.", output="Becuase of scattering."
    )
    reply = as_json("Explain why the sky is blue.", "", "Because of scattering.")
    [record] = single(reply, english).records
    assert record.output == "Because of scattering."
    assert record.provenance.steps[-1].note == "corrected"


def test_punctuation_only_fields_may_change_but_not_vanish() -> None:
    assert similarity("", "") == similarity("?", "!") == similarity("a b", "a b") == 1.0
    assert similarity("?", "") == similarity("", "?") == similarity("Hej", "") == 0.0


def test_every_record_comes_out_once_and_the_funnel_counts_what_was_not_applied() -> None:
    records = [make_example(index) for index in range(6)]
    outcomes, funnel, sent = run(grammar(), records, "ikke json")
    assert len({request.id for request in sent}) == 6
    assert [outcome.records[0].id for outcome in outcomes] == [r.id for r in records]
    assert funnel.inputs == funnel.records == 6 and funnel.rejected == {"invalid_json": 6}


texts = st.one_of(
    st.text(),
    st.dictionaries(
        st.sampled_from(["instruktion", "input", "output", "andet"]),
        st.one_of(st.text(), st.integers(), st.none(), st.lists(st.text(), max_size=2)),
    ).map(json.dumps),
    st.builds(as_json, st.text(), st.text(), st.text()).map(lambda text: f"```\n{text}\n```"),
)


@given(text=texts, finish=st.sampled_from(get_args(FinishReason)))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_reply_gives_exactly_one_record_and_never_raises(
    text: str, finish: FinishReason
) -> None:
    record = make_example(0)
    for constrained in (True, False):
        [outcome], funnel, _ = run(grammar(constrained=constrained), [record], text, finish)
        [result] = outcome.records
        assert result.id == record.id and result.provenance.steps[-1].stage == "grammar"
        assert len(outcome.rejections) <= 1 and funnel.records == 1


def test_the_stage_runs_on_the_real_engine(tiny_engine: Engine, tiny_config: Config) -> None:
    """Noise from the random model parses (constrained) but is no correction: every record
    comes out once with a grammar step, and only what was not applied is rejected."""
    records = short_records()
    stage = GrammarStage(tiny_config.grammar)
    assert stage.settings.constrained
    context = Context(run_seed=tiny_config.seed, model=tiny_engine.name)
    outcomes, funnel = drive(stage, records, context, tiny_engine.generate)
    assert funnel.finished == {"stop": len(records)}
    assert funnel.inputs == funnel.records == len(records)
    assert set(funnel.rejected) <= {"rewrite", "too_long"}
    for record, outcome in zip(records, outcomes, strict=True):
        [result] = outcome.records
        assert result.id == record.id
        step = result.provenance.steps[-1]
        assert (step.stage, step.model) == ("grammar", tiny_engine.name)
        assert step.note in ("corrected", "unchanged")
        assert step.sampling_seed == context.seed("grammar", record.id, "correct")
