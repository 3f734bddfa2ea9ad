"""A corpus cut into passages: within the size range, at paragraph and sentence ends, with
stable ids; a corpus that cannot be read is one line naming the file (and line)."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from laerebogen.config.schema import Grounded
from laerebogen.errors import SourceError
from laerebogen.sources.corpus import corpus_passages, passages_of

PARAGRAPH = "Vadehavet er et lavvandet hav. " * 10  # 310 characters
SHIPPED = Grounded(corpus="packaged:corpus_da")


def test_short_paragraphs_are_joined_and_long_ones_cut_at_sentence_ends() -> None:
    short = "Kort afsnit om Fanø."
    text = f"{short}\n\n{PARAGRAPH}\n\n{'Lang sætning om Rømø. ' * 40}\n\n"
    passages = passages_of(text, 300, 500)
    assert passages[0] == f"{short}\n\n{PARAGRAPH.strip()}"
    assert all(300 <= len(passage) <= 500 for passage in passages)
    # The long paragraph is cut where a sentence ends, never inside one.
    assert all(passage.endswith("Rømø.") for passage in passages[1:])
    # Lines of a paragraph are joined; a sentence longer than the maximum is cut at a space.
    assert passages_of("en to\ntre " * 100, 10, 40)[0] == "en to tre en to tre en to tre en to tre"


def test_a_last_piece_too_short_joins_the_passage_before_or_is_left_out() -> None:
    assert passages_of(f"{PARAGRAPH}\n\nSlut.", 300, 400) == [f"{PARAGRAPH.strip()}\n\nSlut."]
    assert passages_of(f"{PARAGRAPH}\n\nSlut.", 300, 312) == [PARAGRAPH.strip()]
    assert passages_of("For kort.", 300, 400) == []


def test_the_shipped_corpus_gives_passages_with_their_file_and_id() -> None:
    passages = corpus_passages(SHIPPED)
    assert len(passages) == 15
    assert all(300 <= len(p.input) <= 1500 for p in passages)
    files = {p.provenance.passage.file for p in passages if p.provenance.passage}
    assert files == {
        "cykelkultur.txt", "danske_oeer.txt", "grundloven.txt", "h_c_andersen.txt", "jul.txt",
        "vadehavet.txt",
    }  # fmt: skip
    first = passages[0]
    assert first.provenance.passage is not None
    assert (first.provenance.passage.id, first.provenance.source) == ("cykelkultur#1", "grounded")
    assert first.input.startswith("Cykelkultur i Danmark\n\nCyklen er")
    assert [p.id for p in corpus_passages(SHIPPED)] == [p.id for p in passages]
    assert len({p.id for p in passages}) == len(passages)
    # Other sizes cut the same texts otherwise.
    wide = msgspec.structs.replace(SHIPPED, min_passage_chars=800)
    assert (
        all(len(p.input) >= 800 for p in corpus_passages(wide)) and len(corpus_passages(wide)) < 15
    )


def test_a_jsonl_corpus_names_its_documents_by_id_or_line(tmp_path: Path) -> None:
    path = tmp_path / "korpus.jsonl"
    rows = [{"id": "wiki-1", "text": PARAGRAPH}, {"text": PARAGRAPH, "kilde": "x"}]
    path.write_text("\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n\n")
    passages = corpus_passages(Grounded(corpus=str(path)))
    ids = [p.provenance.passage.id for p in passages if p.provenance.passage]
    assert ids == ["wiki-1#1", "line-2#1"]
    assert {p.provenance.passage.file for p in passages if p.provenance.passage} == {"korpus.jsonl"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text": "ok"}\n{"tekst": "nej"}\n', r"korpus\.jsonl:2: expected an object"),
        ('{"text": "ok"}\nnot json\n', r"korpus\.jsonl:2: not JSON"),
        ('{"text": "for kort"}\n', r"the corpus has no passage"),
    ],
)
def test_a_corpus_that_cannot_be_read_is_one_line(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "korpus.jsonl"
    path.write_text(content)
    with pytest.raises(SourceError, match=message):
        corpus_passages(Grounded(corpus=str(path)))


def test_a_missing_or_empty_corpus_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no corpus there"):
        corpus_passages(Grounded(corpus=str(tmp_path / "ingen")))
    (tmp_path / "tom").mkdir()
    with pytest.raises(SourceError, match=r"no \.txt files"):
        corpus_passages(Grounded(corpus=str(tmp_path / "tom")))
    (tmp_path / "tom" / "latin1.txt").write_bytes("Æbler og pærer".encode("latin-1"))
    with pytest.raises(SourceError, match=r"latin1\.txt: not UTF-8"):
        corpus_passages(Grounded(corpus=str(tmp_path / "tom")))
