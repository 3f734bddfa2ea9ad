"""The merge job: shard checks, screening, deduplication, invariants and resumption.

Steps are planned with the real planner and their shards written by hand with the store, so
the merge runs exactly as after real shards, with the real language filter and ROUGE-L
deduplication, but without an engine.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest

from laerebogen.config.loading import load_config
from laerebogen.config.schema import Config
from laerebogen.errors import InvariantError, StoreError
from laerebogen.filtering.dedup import rouge_l
from laerebogen.pipeline import merge
from laerebogen.pipeline.merge import merge_step, merge_summary
from laerebogen.pipeline.plan import (
    MergeResult,
    StepPlan,
    dedup_pool,
    merge_file,
    plan_file,
    plan_first,
    plan_next,
    read_merge,
    read_plan,
    round_size,
)
from laerebogen.records import LANGUAGE_SCORE, Example, Message, Provenance, Step, record_id
from laerebogen.store.run_dir import RunStore
from laerebogen.store.saved_config import start_run
from laerebogen.store.shards import ShardWriter

TINY = load_config("tiny")  # target 24, 2 prompt slots per shard, 8 records per later shard
# Generation 0 is the rounds of base generation; one round, then evolution (or follow-ups).
BARE = ["grammar.enabled=false", "quality.enabled=false", "generation.max_rounds=1"]

# Distinct Danish tasks (instruction, output), none near any seed task or each other.
SLEEP = (
    "Giv tre gode råd til at sove bedre om natten.",
    "Gå i seng på samme tid hver aften, også i weekenden. Undgå kaffe og skærme den sidste "
    "time før sengetid, fordi de holder hjernen vågen. Sørg for at soveværelset er mørkt, "
    "stille og tilpas køligt, så kroppen kan falde til ro.",
)
SEASONS = (
    "Hvorfor skifter årstiderne i løbet af et år?",
    "Jordens akse hælder i forhold til banen rundt om solen. Når vores halvdel af kloden hælder "
    "mod solen, står den højt på himlen, dagene bliver lange, og det bliver sommer. Et halvt år "
    "senere hælder vi væk fra solen, og så bliver det vinter.",
)
INVITATION = (
    "Skriv en kort invitation til en fødselsdagsfest for en syvårig dreng.",
    "Kære venner! Oskar fylder syv år og holder fest lørdag den 12. maj fra klokken 14 til 17. "
    "Der bliver kage, lege og skattejagt i haven. Giv gerne besked senest onsdag, om I kan komme.",
)
ICE = (
    "Forklar med enkle ord, hvorfor is flyder på vand.",
    "Når vand fryser, danner molekylerne et åbent mønster, som fylder mere end flydende vand. "
    "Isen vejer derfor mindre pr. liter end vandet omkring den, og så flyder den ovenpå.",
)
LUNCH = (
    "Foreslå en sund madpakke til en skoleelev.",
    "En god madpakke kan bestå af rugbrød med leverpostej og agurk, en portion gulerodsstave og "
    "et æble. Tilføj gerne en lille bøtte med nødder eller rosiner, hvis barnet er meget sultent.",
)
WINTER_CYCLING = (
    "Om vinteren er det vigtigt at have gode lygter og dæk med mønster, og at man cykler lidt "
    "langsommere, især i sving. Mange kommuner rydder cykelstierne før vejene, så det går ofte "
    "bedre, end man tror."
)
CYCLING = (
    "Hvilke fordele har det at cykle til arbejde hver dag?",
    "Cykling giver motion, som styrker hjertet og musklerne. Man sparer penge til benzin og "
    "parkering, og man undgår ofte køer i myldretiden. Samtidig udleder cyklen ingen forurening.",
)
POWER = (
    "Hvad kan en familie gøre for at spare på strømmen derhjemme?",
    "Sluk for apparater i stedet for at lade dem stå på standby, og skift gamle pærer ud med LED. "
    "Vask tøj ved lavere temperatur og tør det på en tørresnor.",
)
# Nearly the same instruction as SLEEP, INVITATION and the seed "Hvorfor er himlen blå på en
# skyfri dag?" (ROUGE-L about 0.9), each with its own Danish answer.
SLEEP_AGAIN = (
    "Giv tre gode råd til at sove bedre om natten som voksen.",
    "Hold faste sengetider, også i ferien. Drop alkohol om aftenen, fordi den forstyrrer søvnen "
    "i løbet af natten. Brug sengen til søvn og ikke til arbejde eller telefonen.",
)
INVITATION_AGAIN = (
    "Skriv en kort invitation til en fødselsdagsfest for en syvårig pige.",
    "Kære alle! Ida fylder syv år og inviterer til fest søndag den 3. juni fra klokken 13 til 16. "
    "Vi skal spise pandekager, lege i haven og slå katten af tønden. Sig til senest fredag.",
)
SKY_LIKE_A_SEED = (
    "Hvorfor er himlen blå på en skyfri sommerdag?",
    "Sollyset bliver spredt af luftens molekyler, og det blå lys spredes mere end det røde, fordi "
    "det har en kortere bølgelængde. Derfor kommer der blåt lys ind i øjet fra hele himlen.",
)
ENGLISH = (
    "Explain why the sky appears blue during a clear summer day.",
    "Sunlight is scattered by the molecules in the atmosphere, and blue light is scattered much "
    "more than red light because of its shorter wavelength.",
)
TOO_SHORT = ("Forklar fotosyntese.", "Planter laver sukker af lys, vand og kuldioxid.")


def task(name: str, text: tuple[str, str], provenance: Provenance | None = None) -> Example:
    """A generated record with an id made from ``name`` and the given instruction and output."""
    return Example(
        id=record_id("merge-test", name),
        instruction=text[0],
        output=text[1],
        provenance=provenance
        or Provenance("self-instruct", steps=(Step(stage="generation", round=1, model="tiny"),)),
        scores={"lix": 30.0},
    )


def evolved(name: str, text: tuple[str, str], parent: Example) -> Example:
    """An evolved record one generation below ``parent``."""
    provenance = Provenance(
        origin="evolved",
        generation=parent.provenance.generation + 1,
        operation="deepen",
        parent_id=parent.id,
        steps=(*parent.provenance.steps, Step(stage="evolution", round=1)),
    )
    return task(name, text, provenance=provenance)


def quiet(_: str) -> None:
    """The merge log, silenced."""


def run_shard(
    store: RunStore, step: str, index: int, outputs: Sequence[Example], consumed: int | None = None
) -> None:
    """Finish shard ``index`` of ``step`` with ``outputs``, consuming its first ``consumed``
    inputs (all by default), as a shard job does."""
    inputs = [record.id for record in store.read_inputs(step, index)]
    with store.open_shard(step, index) as writer:
        writer.write_chunk(outputs, [], consumed=inputs[:consumed])
        writer.finish()


def merge_by_hand(store: RunStore, step: str, kept: Sequence[Example]) -> None:
    """A merged set written directly, for steps whose own merge is not under test."""
    with store.open_merged(step) as writer:
        writer.write_chunk(kept, [], consumed=[record.id for record in kept])
        writer.finish()


def new_run(tmp_path: Path, config: Config = TINY) -> tuple[RunStore, StepPlan]:
    """A run directory with its config saved and the first generation round planned."""
    store = start_run(config, tmp_path / "run")
    return store, plan_first(store, config)


def snapshot(root: Path) -> dict[Path, tuple[bytes, int]]:
    """Every file of a run directory with its bytes and modification time."""
    return {
        path: (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


GENERATION_SHARDS = (
    [
        task("sleep", SLEEP),
        task("english", ENGLISH),
        task("seasons", SEASONS),
        task("short", TOO_SHORT),
    ],
    [
        task("sky", SKY_LIKE_A_SEED),
        task("invitation", INVITATION),
        task("sleep-again", SLEEP_AGAIN),
        task("ice", ICE),
    ],
)


def generation_run(tmp_path: Path) -> RunStore:
    """The first generation round of the tiny recipe with both shards done."""
    store, planned = new_run(tmp_path)
    assert planned.shards == len(GENERATION_SHARDS)
    for index, outputs in enumerate(GENERATION_SHARDS):
        run_shard(store, "generation-01", index, outputs)
    return store


# ---------------------------------------------------------------- a generation round


def test_a_generation_round_is_screened_deduplicated_and_the_next_round_planned(
    tmp_path: Path,
) -> None:
    store = generation_run(tmp_path)
    result = merge_step(store, "generation-01", log=quiet)

    kept = list(store.read_merged("generation-01"))
    assert [record.id for record in kept] == [
        record_id("merge-test", name) for name in ("sleep", "seasons", "invitation", "ice")
    ]
    for record in kept:
        assert record.scores["lix"] == 30.0  # earlier scores are kept
        assert 0.25 <= record.scores[LANGUAGE_SCORE] <= 1.0
    reasons = {
        rejection.source_id: rejection.reason
        for rejection in store.read_merge_rejects("generation-01")
    }
    assert reasons == {
        record_id("merge-test", "english"): "not_danish",
        record_id("merge-test", "short"): "instruction_too_short",
        record_id("merge-test", "sky"): "near_duplicate",  # of a seed task
        record_id("merge-test", "sleep-again"): "near_duplicate",  # of a record in shard 0
    }
    rejected = {"instruction_too_short": 1, "near_duplicate": 2, "not_danish": 1}
    assert result == MergeResult(
        step="generation-01",
        records_in=8,
        kept=4,
        rejected=rejected,
        next="generation-02",
        seconds=result.seconds,
    )
    assert result.records_in == result.kept + sum(result.rejected.values())
    assert read_merge(store, "generation-01") == result
    # 4 kept of 4 prompts: 20 missing at one per prompt, capped at 4 x the first round.
    following = read_plan(store, "generation-02")
    assert following is not None
    assert following.inputs == round_size(TINY, "self_instruct", [(4, 4)]) == 16
    assert merge_summary(result) == (
        "generation-01: merged 8 records, kept 4, rejected 4 (near_duplicate 2, "
        "instruction_too_short 1, not_danish 1); next: generation-02"
    )


def test_rejected_records_keep_their_language_confidence(tmp_path: Path) -> None:
    """The funnel can show how far from Danish a rejected record was."""
    store = generation_run(tmp_path)
    merge_step(store, "generation-01", log=quiet)
    by_reason = {r.reason: r.record for r in store.read_merge_rejects("generation-01")}
    assert by_reason["not_danish"] is not None
    assert by_reason["not_danish"].scores[LANGUAGE_SCORE] < 0.01
    assert by_reason["instruction_too_short"] is not None  # never reached the language filter
    assert LANGUAGE_SCORE not in by_reason["instruction_too_short"].scores


# ---------------------------------------------------------------- invariants


def test_a_shard_that_did_not_consume_all_its_inputs_stops_the_merge(tmp_path: Path) -> None:
    store, _ = new_run(tmp_path)
    run_shard(store, "generation-01", 0, GENERATION_SHARDS[0])
    run_shard(store, "generation-01", 1, GENERATION_SHARDS[1], consumed=1)
    with pytest.raises(InvariantError, match=r"generation-01 shard 1: consumed 1 of its 2 inputs"):
        merge_step(store, "generation-01", log=quiet)
    assert store.merged_manifest("generation-01") is None
    assert read_merge(store, "generation-01") is None
    assert read_plan(store, "generation-02") is None


def test_an_unfinished_shard_stops_the_merge(tmp_path: Path) -> None:
    store, _ = new_run(tmp_path)
    run_shard(store, "generation-01", 0, GENERATION_SHARDS[0])
    slot = next(store.read_inputs("generation-01", 1))
    with store.open_shard("generation-01", 1) as writer:  # killed before its manifest
        writer.write_chunk(GENERATION_SHARDS[1][:2], [], consumed=[slot.id])
    with pytest.raises(StoreError, match=r"generation-01/shard-00001\.msgpack\.zst: shard is not"):
        merge_step(store, "generation-01", log=quiet)
    assert store.merged_manifest("generation-01") is None
    assert read_merge(store, "generation-01") is None


def test_a_duplicate_id_is_rejected_once_and_nothing_is_lost(tmp_path: Path) -> None:
    store, _ = new_run(tmp_path)
    first = task("sleep", SLEEP)
    # Another task under the same id: which text it has does not matter, the id is taken.
    twin = Example(
        id=first.id, instruction=CYCLING[0], output=CYCLING[1], provenance=first.provenance
    )
    run_shard(store, "generation-01", 0, [first, task("seasons", SEASONS)])
    run_shard(store, "generation-01", 1, [twin, task("lunch", LUNCH)])
    result = merge_step(store, "generation-01", log=quiet)
    assert (result.records_in, result.kept, result.rejected) == (4, 3, {"duplicate_id": 1})
    kept = list(store.read_merged("generation-01"))
    assert [r.instruction for r in kept] == [SLEEP[0], SEASONS[0], LUNCH[0]]
    [rejection] = store.read_merge_rejects("generation-01")
    assert (rejection.reason, rejection.source_id) == ("duplicate_id", first.id)
    assert rejection.record is not None and rejection.record.instruction == CYCLING[0]
    merged = store.merged_manifest("generation-01")
    assert merged is not None and merged.inputs == 3  # each id consumed once


# ---------------------------------------------------------------- evolution


def test_an_evolved_record_may_resemble_its_ancestors_but_not_other_records(
    tmp_path: Path,
) -> None:
    config = load_config("tiny", BARE)
    store, first = new_run(tmp_path, config)
    base = [task("sleep", SLEEP), task("ice", ICE), task("inv", INVITATION), task("lunch", LUNCH)]
    sleep, ice, _, lunch = base
    # Both near-duplicates would be rejected without the exemption.
    threshold = config.filters.rouge_threshold
    assert rouge_l(SLEEP_AGAIN[0], SLEEP[0]) > threshold
    assert rouge_l(INVITATION_AGAIN[0], INVITATION[0]) > threshold
    merge_by_hand(store, "generation-01", base)
    evolution = plan_next(store, config, first)
    assert evolution == StepPlan("evolution-01", "evolution", 1, shards=1, inputs=4)
    assert dedup_pool(store, config, evolution) == base  # generation 0: the one round

    own_parent = evolved("e-sleep", SLEEP_AGAIN, sleep)  # near its parent
    someone_else = evolved("e-ice", INVITATION_AGAIN, ice)  # near a record it is not from
    new_task = evolved("e-lunch", CYCLING, lunch)
    run_shard(store, "evolution-01", 0, [own_parent, someone_else, new_task])
    result = merge_step(store, "evolution-01", log=quiet)
    assert [r.id for r in store.read_merged("evolution-01")] == [own_parent.id, new_task.id]
    [rejection] = store.read_merge_rejects("evolution-01")
    assert (rejection.reason, rejection.source_id) == ("near_duplicate", someone_else.id)
    assert (result.records_in, result.kept, result.next) == (3, 2, "evolution-02")

    # One generation further, a grandparent is an ancestor too.
    grandchild = evolved("e2-sleep", SLEEP, own_parent)
    run_shard(store, "evolution-02", 0, [grandchild, evolved("e2-lunch", POWER, new_task)])
    result = merge_step(store, "evolution-02", log=quiet)
    assert (result.kept, result.rejected, result.next) == (2, {}, "followups")


# ---------------------------------------------------------------- follow-ups


def conversation(record: Example, user: str, answer: str) -> Example:
    """``record`` with one follow-up exchange added."""
    added = (Message("user", user), Message("assistant", answer))
    return Example(
        id=record.id,
        instruction=record.instruction,
        output=record.output,
        provenance=record.provenance,
        messages=(*record.conversation(), *added),
    )


def test_followups_are_judged_on_their_added_turns(tmp_path: Path) -> None:
    config = load_config("tiny", [*BARE, "evolution.generations=0"])
    store, first = new_run(tmp_path, config)
    ice, seasons, lunch = task("ice", ICE), task("seasons", SEASONS), task("lunch", LUNCH)
    cycling = task("cycling", CYCLING)
    merge_by_hand(store, "generation-01", [ice, seasons, lunch, cycling])
    followups = plan_next(store, config, first)
    assert followups == StepPlan("followups", "followups", 0, shards=1, inputs=4)
    inputs = {r.id for r in store.read_inputs("followups", 0)}
    assert inputs == {ice.id, seasons.id, lunch.id, cycling.id}
    danish = conversation(
        ice,
        "Kan du forklare det lidt mere udførligt for et barn på ti år?",
        "Ja. Forestil dig, at vandets små dele holder hinanden i hånden i en stor rundkreds, når "
        "det fryser. Så fylder de mere, og derfor bliver isen lettere end vandet omkring den.",
    )
    english = conversation(
        seasons,
        "Can you explain that in a bit more detail for a ten year old child?",
        "Sure. The Earth is tilted, so for half of the year our part of the planet leans towards "
        "the sun and gets long and warm days, and for the other half it leans away from it.",
    )
    # Every added turn is judged, not only the first and the last: here the middle answer
    # of three is English.
    middle = conversation(
        conversation(
            conversation(cycling, "Hvad med om vinteren, når det er glat?", WINTER_CYCLING),
            "Og hvis jeg hellere vil tage bussen et par dage om ugen?",
            "That is a good compromise: on bus days you can read or rest, and on the other "
            "days you still get your exercise. Many people cycle in good weather and take the "
            "bus when it rains, which keeps the habit going all year round.",
        ),
        "Tak! Hvilken cykel er bedst til lange ture?",
        WINTER_CYCLING,
    )
    run_shard(store, "followups", 0, [danish, english, middle, lunch])  # lunch: no follow-up
    result = merge_step(store, "followups", log=quiet)
    kept = list(store.read_merged("followups"))
    assert [record.id for record in kept] == [ice.id, lunch.id]
    assert kept[0].messages == danish.messages
    assert kept[0].scores[LANGUAGE_SCORE] >= 0.25
    assert LANGUAGE_SCORE not in kept[1].scores  # nothing added, nothing judged
    rejections = {r.source_id: r for r in store.read_merge_rejects("followups")}
    assert {r.reason for r in rejections.values()} == {"not_danish"}
    assert rejections[seasons.id].detail.startswith("turn 2 user: English words")
    assert rejections[cycling.id].detail.startswith("turn 3 answer (end): ENGLISH")
    assert (result.records_in, result.kept, result.rejected) == (4, 2, {"not_danish": 2})
    assert result.next is None


# ---------------------------------------------------------------- resumption


@pytest.mark.parametrize("step", ["annotate", "code_check"])
def test_judging_steps_are_merged_without_screening_or_dedup_again(
    tmp_path: Path, step: str
) -> None:
    config = load_config("tiny", [*BARE, "evolution.generations=0", f"{step}.enabled=true"])
    store, first = new_run(tmp_path, config)
    ice, seasons = task("ice", ICE), task("seasons", SEASONS)
    merge_by_hand(store, "generation-01", [ice, seasons])
    followups = plan_next(store, config, first)
    assert followups is not None
    # An English turn and a copied instruction got past earlier merges (say, by a changed
    # filter): a judging step changes no text, so its merge keeps what the follow-ups kept.
    english = msgspec.structs.replace(
        conversation(ice, "Can you say more?", "Sure, ice floats because it is lighter."),
        output="Ice floats on water because it is lighter than the water around it.",
    )
    copy = msgspec.structs.replace(seasons, instruction=ice.instruction)
    merge_by_hand(store, "followups", [english, copy])
    judging = plan_next(store, config, followups)
    assert judging == StepPlan(step, step, 0, shards=1, inputs=2)
    run_shard(store, step, 0, [english, copy])
    result = merge_step(store, step, log=quiet)
    assert (result.records_in, result.kept, result.rejected, result.next) == (2, 2, {}, None)
    assert list(store.read_merged(step)) == [english, copy]


def test_a_second_merge_returns_the_same_result_and_writes_nothing(tmp_path: Path) -> None:
    store = generation_run(tmp_path)
    result = merge_step(store, "generation-01", log=quiet)
    before = snapshot(store.root)
    assert merge_step(store, "generation-01", log=quiet) == result
    assert snapshot(store.root) == before


def test_a_merge_killed_before_its_result_finishes_without_screening_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = generation_run(tmp_path)
    result = merge_step(store, "generation-01", log=quiet)
    following = read_plan(store, "generation-02")
    # Killed after the merged set, while planning the next step: no plan, no merge result.
    (store.root / plan_file("generation-02")).unlink()
    (store.root / merge_file("generation-01")).unlink()
    merged = snapshot(store.merged_paths("generation-01").directory)

    def screened_again(*_: object) -> None:
        raise AssertionError("the merged set was screened again")

    monkeypatch.setattr(merge, "screen", screened_again)
    monkeypatch.setattr(merge, "write_merged", screened_again)
    again = merge_step(store, "generation-01", log=quiet)
    assert msgspec.structs.replace(again, seconds=0.0) == msgspec.structs.replace(
        result, seconds=0.0
    )
    assert read_merge(store, "generation-01") == again
    assert read_plan(store, "generation-02") == following
    assert snapshot(store.merged_paths("generation-01").directory) == merged


def test_a_merge_killed_while_writing_the_merged_set_finishes_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = generation_run(tmp_path)

    class KilledError(Exception):
        """The job's end (a time limit, preemption) after a committed chunk."""

    def killed(self: ShardWriter) -> None:
        raise KilledError

    with monkeypatch.context() as patch:
        patch.setattr(ShardWriter, "finish", killed)
        with pytest.raises(KilledError):
            merge_step(store, "generation-01", log=quiet)
    assert store.merged_manifest("generation-01") is None
    assert store.merged_paths("generation-01").journal.stat().st_size > 0  # a committed chunk
    result = merge_step(store, "generation-01", log=quiet)
    assert (result.records_in, result.kept) == (8, 4)
