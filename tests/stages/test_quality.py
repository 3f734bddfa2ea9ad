"""Quality judgement: good examples stay, poor ones are rewritten or dropped, with reasons.

Unit tests drive the stage with canned replies; one test runs it on the real engine with the
tiny random model, whose constrained noise parses into verdicts.
"""

from __future__ import annotations

import json
import re
from typing import get_args

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laerebogen.config.schema import Config, Quality
from laerebogen.inference.engine import Engine
from laerebogen.inference.requests import Constraint, FinishReason
from laerebogen.records import Example, Provenance, Step
from laerebogen.stages.core import Context, Outcome, drive
from laerebogen.stages.quality import QualityStage, rewrite_limits, verdict_regex
from laerebogen.stages.triples import Triple
from tests.support.records import make_example
from tests.support.stages import CONTEXT, RECORD, run, short_records

BETTER = Triple(
    "Forklar kort, hvorfor himlen er blå om dagen.",
    "",
    "Sollyset spredes af luftens molekyler, og det korte, blå lys spredes mest.",
)


def verdict(vurdering: object, begrundelse: object = "", *triple: object, **extra: object) -> str:
    """A reply as the model writes it under the constraint: compact JSON."""
    fields = dict(zip(("instruktion", "input", "output"), triple or ("", "", ""), strict=True))
    reply = {"vurdering": vurdering, "begrundelse": begrundelse, **fields, **extra}
    return json.dumps(reply, ensure_ascii=False, separators=(",", ":"))


def quality(**settings: object) -> QualityStage:
    return QualityStage(Quality(**settings))  # type: ignore[arg-type]


def single(text: str, finish: FinishReason = "stop", record: Example = RECORD) -> Outcome:
    [outcome], _, _ = run(quality(), [record], text, finish)
    return outcome


def test_the_prompt_holds_the_examples_text_and_nothing_internal() -> None:
    step = Step("generation", round=4, model="hemmelig-model-xyz", sampling_seed=987654321)
    record = Example(
        id="id-7f3a9c2e",
        instruction="Nævn tre danske øer.",
        output="Fyn, Lolland og Bornholm.",
        provenance=Provenance(
            origin="evolved",
            generation=3,
            operation="deepen",
            parent_id="forælder-55aa",
            steps=(step,),
        ),
        scores={"lix_score": 41.2718},
    )
    _, _, [request] = run(quality(), [record], verdict("god"))
    assert request.id == "id-7f3a9c2e/judge"
    assert request.seed == CONTEXT.seed("quality", "id-7f3a9c2e", "judge")
    [message] = request.messages  # type: ignore[union-attr]
    assert (
        "Nævn tre danske øer." in message.content and "Fyn, Lolland og Bornholm." in message.content
    )
    assert '"vurdering"' in message.content and "dårlig" in message.content
    for internal in (
        "7f3a9c2e", "41.27", "lix", "hemmelig", "987654321", "deepen", "forælder",
        "evolved", "generation",
    ):  # fmt: skip
        assert internal not in message.content


def test_the_regex_keeps_a_good_verdicts_rewrite_empty_and_bounds_a_poor_one() -> None:
    limits = rewrite_limits(100)
    pattern = re.compile(verdict_regex(limits))
    assert pattern.fullmatch(verdict("god", "Klar og korrekt."))
    assert not pattern.fullmatch(verdict("god", "Klar.", *BETTER))
    assert pattern.fullmatch(verdict("dårlig", "Uklar.", "Ny\nopgave", "", 'Et "svar".'))
    assert pattern.fullmatch(verdict("dårlig", "Kan ikke reddes."))
    assert not pattern.fullmatch(verdict("ok", "Klar."))
    too_long = "x" * (limits["output"] + 1)
    assert not pattern.fullmatch(verdict("dårlig", "Uklar.", "Ny opgave", "", too_long))
    assert quality(constrained=False).constraint is None


def test_strings_are_bounded_only_for_a_model_that_never_stops() -> None:
    """Bounded strings cost xgrammar up to seconds per token: a real model's are free."""
    free = quality()
    assert free.constraint is not None and free.limits is None
    pattern = re.compile(free.constraint.regex or "")
    long_rewrite = ("Et langt svar.\n" * 500, "", "Linje " * 2000)
    assert pattern.fullmatch(verdict("dårlig", "Uklar.", *long_rewrite))
    assert not pattern.fullmatch(verdict("god", "Klar.", *BETTER))
    bounded = quality(bounded=True)
    limits = rewrite_limits(Quality().sampling.max_tokens)
    assert bounded.constraint == Constraint(regex=verdict_regex(limits))
    assert bounded.limits is not None


def test_a_good_example_is_kept_with_its_score() -> None:
    outcome = single(verdict("god", "Klar opgave og korrekt svar."))
    [record] = outcome.records
    assert outcome.rejections == ()
    assert Triple.of(record) == Triple.of(RECORD) and record.id == RECORD.id
    assert record.scores == {**RECORD.scores, "quality_good": 1.0}
    step = record.provenance.steps[-1]
    assert (step.stage, step.note, step.model) == ("quality", "good", "instruct")
    assert step.sampling_seed == CONTEXT.seed("quality", RECORD.id, "judge")


def test_a_verdict_is_read_whatever_its_case_and_the_rewrite_of_a_good_one_is_ignored() -> None:
    [record] = single(verdict(" God ", "Fint.", *BETTER)).records
    assert Triple.of(record) == Triple.of(RECORD)
    assert record.scores["quality_good"] == 1.0


def test_a_poor_example_is_replaced_by_its_rewrite() -> None:
    outcome = single(verdict("dårlig", "Svaret er for\nkort.", *BETTER))
    [record] = outcome.records
    assert outcome.rejections == ()
    assert Triple.of(record) == BETTER
    assert record.id == RECORD.id and record.scores["quality_good"] == 0.0
    assert record.provenance.steps[:-1] == RECORD.provenance.steps
    assert record.provenance.steps[-1].note == "improved: Svaret er for kort."


def test_a_poor_example_without_a_reason_is_still_improved() -> None:
    [record] = single(verdict("dårlig", None, *BETTER)).records
    assert record.provenance.steps[-1].note == "improved"


@pytest.mark.parametrize(
    "reply",
    [
        verdict("dårlig", "Kan ikke reddes."),
        verdict("dårlig", "Mangler svar.", BETTER.instruction, "", "  "),
        verdict("dårlig", "Uklar.", "", "", BETTER.output),
        verdict("dårlig", "Uklar.", *Triple.of(RECORD)),  # "rewritten" as it was
        verdict("dårlig", "Uklar.", BETTER.instruction, "", ["Sollyset."]),
        json.dumps({"vurdering": "dårlig", "begrundelse": "Uklar."}),
    ],
)
def test_a_poor_example_without_a_usable_rewrite_is_dropped(reply: str) -> None:
    outcome = single(reply)
    assert outcome.records == ()
    [rejection] = outcome.rejections
    assert (rejection.reason, rejection.source_id) == ("poor_quality", RECORD.id)
    assert rejection.detail == json.loads(reply)["begrundelse"]
    assert rejection.record is not None
    assert rejection.record.scores["quality_good"] == 0.0


def test_a_dropped_example_without_a_reason_says_so() -> None:
    [rejection] = single(verdict("dårlig", 7)).rejections
    assert rejection.detail == "judged poor without a usable rewrite"


@pytest.mark.parametrize(
    ("text", "finish", "reason"),
    [
        ("Eksemplet er godt.", "stop", "invalid_json"),
        ('{"vurdering":"god","begrundelse":"Kla', "stop", "invalid_json"),
        ("Vurdering:\n" + verdict("god"), "stop", "invalid_json"),
        ('{"begrundelse": "Klar."}', "stop", "missing_field"),
        ('{"vurdering": true}', "stop", "wrong_type"),
        ('"god"', "stop", "not_an_object"),
        (verdict("good", "Clear and correct."), "stop", "invalid_verdict"),
        (verdict("middel", "Nogenlunde."), "stop", "invalid_verdict"),
        (verdict("god")[:30], "length", "truncated"),
        ("", "rejected", "prompt_too_long"),
        (verdict("god"), "abort", "aborted"),
    ],
)
def test_an_unusable_reply_keeps_the_example_unjudged(
    text: str, finish: FinishReason, reason: str
) -> None:
    outcome = single(text, finish)
    [record] = outcome.records
    assert record == RECORD.with_step(record.provenance.steps[-1])  # text and scores untouched
    assert record.provenance.steps[-1].note == "unjudged"
    [rejection] = outcome.rejections
    assert (rejection.reason, rejection.source_id, rejection.record) == (reason, RECORD.id, None)


def test_a_code_fenced_reply_is_read() -> None:
    [record] = single(f"```json\n{verdict('god', 'Fint.')}\n```").records
    assert record.provenance.steps[-1].note == "good"


def test_a_rewrite_that_fills_its_bound_was_cut_and_is_not_applied() -> None:
    bound = rewrite_limits(Quality().sampling.max_tokens)["output"]
    cut = verdict("dårlig", "Kort.", BETTER.instruction, "", ("Et langt svar. " * 200)[:bound])
    [[outcome], _, _] = run(quality(bounded=True), [RECORD], cut)
    assert Triple.of(outcome.records[0]) == Triple.of(RECORD)
    assert outcome.rejections[0].reason == "too_long"
    for unbounded in (quality(), quality(constrained=False)):
        [free] = run(unbounded, [RECORD], cut)[0]
        assert free.records[0].provenance.steps[-1].note == "improved: Kort."


def test_an_english_rewrite_is_not_this_stages_concern() -> None:
    """Language is judged by the merge filters, so an English rewrite is applied here."""
    english = ("Explain why the sky is blue.", "", "Because blue light scatters the most.")
    [record] = single(verdict("dårlig", "Svaret er for kort.", *english)).records
    assert Triple.of(record) == Triple(*english)


texts = st.one_of(
    st.text(),
    st.dictionaries(
        st.sampled_from(["vurdering", "begrundelse", "instruktion", "input", "output"]),
        st.one_of(st.sampled_from(["god", "dårlig"]), st.text(), st.integers(), st.none()),
    ).map(json.dumps),
    st.builds(
        verdict,
        st.sampled_from(["god", "dårlig", "GOD"]),
        st.text(),
        st.text(),
        st.text(),
        st.text(),
    ),
)


@given(text=texts, finish=st.sampled_from(get_args(FinishReason)))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_reply_gives_one_record_or_one_poor_quality_rejection(
    text: str, finish: FinishReason
) -> None:
    record = make_example(0)
    for constrained in (True, False):
        [outcome], funnel, _ = run(quality(constrained=constrained), [record], text, finish)
        if outcome.records:
            [kept] = outcome.records
            assert kept.id == record.id and kept.provenance.steps[-1].stage == "quality"
            assert all(r.reason != "poor_quality" for r in outcome.rejections)
            assert len(outcome.rejections) <= 1
        else:
            [rejection] = outcome.rejections
            assert rejection.reason == "poor_quality" and funnel.rejected == {"poor_quality": 1}


def test_the_stage_runs_on_the_real_engine(tiny_engine: Engine, tiny_config: Config) -> None:
    """Noise from the random model parses into verdicts (constrained): every record is kept,
    rewritten or dropped with a reason, and the funnel adds up."""
    records = short_records()
    stage = QualityStage(tiny_config.quality)
    assert stage.settings.constrained
    context = Context(run_seed=tiny_config.seed, model=tiny_engine.name)
    outcomes, funnel = drive(stage, records, context, tiny_engine.generate)
    assert funnel.inputs == len(records) == funnel.requests
    dropped = funnel.rejected.get("poor_quality", 0)
    assert funnel.records + dropped == funnel.inputs
    assert set(funnel.rejected) <= {"poor_quality", "too_long", "truncated"}
    for record, outcome in zip(records, outcomes, strict=True):
        for result in outcome.records:
            assert result.id == record.id
            step = result.provenance.steps[-1]
            assert (step.stage, step.model) == ("quality", tiny_engine.name)
            judged = step.note != "unjudged"
            assert ("quality_good" in result.scores) == judged
            assert step.sampling_seed == context.seed("quality", record.id, "judge")
