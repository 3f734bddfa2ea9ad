"""The task map: similar instructions land together, reproducibly, on any input, as a PNG."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from laerebogen.outputs.task_map import LEGEND_LABELS, TaskMap, draw_map, layout, plot_map

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def filled(templates: tuple[str, ...], words: str) -> list[str]:
    """Every template with every word of ``words``."""
    return [template.format(word) for template in templates for word in words.split()]


BAKING = filled(
    (
        "Skriv en opskrift på {}.",
        "Hvor længe skal {} bages i ovnen?",
        "Hvilke ingredienser skal jeg bruge til {}?",
        "Giv mig gode råd til at bage {} med smør og sukker.",
    ),
    "boller rugbrød kanelsnegle chokoladekage æblekage franskbrød småkager lagkage",
)
TAXES = filled(
    (
        "Hvordan beregner kommunen min skat af {}?",
        "Forklar reglerne for fradrag for {} på årsopgørelsen.",
        "Hvornår skal jeg indberette {} til Skattestyrelsen?",
        "Hvad betyder {} for min forskudsopgørelse?",
    ),
    "renteudgifter befordring aktieindkomst pension feriepenge udlejning gaver arv",
)
TEXTS = [text for pair in zip(BAKING, TAXES, strict=True) for text in pair]  # interleaved


def mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2).mean())


def test_instructions_on_the_same_topic_land_together() -> None:
    task_map = layout(TEXTS, seed=1)
    baking, taxes = task_map.xy[0::2], task_map.xy[1::2]
    within = (mean_distance(baking, baking) + mean_distance(taxes, taxes)) / 2
    assert within < mean_distance(baking, taxes)
    distances = np.linalg.norm(task_map.xy[:, None, :] - task_map.xy[None, :, :], axis=2)
    np.fill_diagonal(distances, np.inf)
    topics = np.arange(len(TEXTS)) % 2
    assert (topics[distances.argmin(axis=1)] == topics).all()  # nearest: same topic
    assert list(task_map.rows) == list(range(len(TEXTS))) and task_map.total == len(TEXTS)
    assert task_map.xy.shape == (len(TEXTS), 2) and not task_map.sampled


def test_the_same_seed_gives_the_same_bits_in_another_process() -> None:
    """Even with another hash seed, which reorders sets and dicts of strings. (Whether the
    thread count matters shows only from about 2,000 points: benchmarks/task_map.py checks.)"""
    script = (
        "import json, sys; from laerebogen.outputs.task_map import layout; "
        "sys.stdout.buffer.write(layout(json.load(sys.stdin), seed=7).xy.tobytes())"
    )
    child = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(TEXTS).encode(),
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        check=True,
    )
    xy = layout(TEXTS, seed=7).xy
    assert xy.dtype == np.float64 and child.stdout == xy.tobytes()


def test_another_seed_gives_another_layout() -> None:
    assert not np.allclose(layout(TEXTS, seed=1).xy, layout(TEXTS, seed=2).xy)


def test_beyond_max_points_a_uniform_sample_is_laid_out() -> None:
    texts = [f"{text} ({number})" for number, text in enumerate(TEXTS * 4)]  # 256 texts
    task_map = layout(texts, seed=3, max_points=50)
    rows = task_map.rows
    assert len(rows) == 50 and task_map.total == 256 and task_map.sampled
    assert task_map.xy.shape == (50, 2)
    assert list(rows) == sorted(set(rows)) and rows[0] >= 0 and rows[-1] < 256
    assert 15 <= (rows < 128).sum() <= 35  # not the first 50: about half from each half
    assert not np.array_equal(rows, layout(texts, seed=4, max_points=50).rows)
    assert not layout(texts[:50], seed=3, max_points=50).sampled


def test_no_texts_give_an_empty_map() -> None:
    task_map = layout([], seed=1)
    assert task_map.rows.shape == (0,) and task_map.xy.shape == (0, 2)
    assert task_map.total == 0 and not task_map.sampled


@pytest.mark.parametrize(
    "texts",
    [
        ["Skriv et digt om havet."],
        ["Skriv et digt om havet.", "Skriv et digt om skoven."],
        TEXTS[:3],
        ["Skriv et digt om havet."] * 3,
        ["?!", "...", "", "-- --"],
        ["alfa", "bravo", "charlie"],  # no word or character n-gram in two texts
        BAKING[:15],  # one too few for t-SNE
    ],
    ids=["one", "two", "three", "three-identical", "no-words", "nothing-shared", "fifteen"],
)
def test_small_inputs_get_their_svd_coordinates(texts: list[str]) -> None:
    task_map = layout(texts, seed=1)
    assert task_map.xy.shape == (len(texts), 2) and np.isfinite(task_map.xy).all()
    assert task_map.total == len(texts) and list(task_map.rows) == list(range(len(texts)))
    assert np.array_equal(task_map.xy, layout(texts, seed=1).xy)


def test_small_inputs_keep_similar_texts_together() -> None:
    xy = layout([BAKING[0], TAXES[0], BAKING[1], TAXES[1]], seed=1).xy
    within = np.linalg.norm(xy[0] - xy[2]) + np.linalg.norm(xy[1] - xy[3])
    assert within < np.linalg.norm(xy[0] - xy[1]) + np.linalg.norm(xy[2] - xy[3])


@pytest.mark.parametrize(
    "texts",
    [
        ["Skriv et digt om havet."] * 40,
        ["?!", "...", "", "-- --"] * 10,
        [f"{word}{number}" for number, word in enumerate(("alfa", "bravo") * 20)],
        [*TEXTS[:30], "?!", "", "xyzzy"],  # a few texts without shared terms among many
    ],
    ids=["identical", "no-words", "nothing-shared", "some-featureless"],
)
def test_degenerate_inputs_give_finite_points(texts: list[str]) -> None:
    task_map = layout(texts, seed=1)
    assert task_map.xy.shape == (len(texts), 2) and np.isfinite(task_map.xy).all()


def test_identical_texts_share_a_point() -> None:
    xy = layout(["Skriv et digt om havet."] * 40, seed=1).xy
    assert (xy == xy[0]).all()


def small_map(count: int, total: int | None = None) -> TaskMap:
    rng = np.random.default_rng(0)
    return TaskMap(np.arange(count), rng.normal(size=(count, 2)), total or count)


def test_the_map_is_a_png_image() -> None:
    task_map = small_map(40)
    labels = ["madlavning", "skat"] * 20
    png = draw_map(task_map, labels, "Instruktioner")
    assert png.startswith(PNG_SIGNATURE)
    assert imread(io.BytesIO(png)).shape[2] in (3, 4)
    assert png == draw_map(task_map, labels, "Instruktioner")
    assert draw_map(TaskMap(np.arange(0), np.zeros((0, 2)), 0), [], "Tom").startswith(PNG_SIGNATURE)


def test_the_legend_names_the_most_frequent_labels_and_groups_the_rest() -> None:
    labels = [f"domæne {index:02}" for index in range(20) for _ in range(20 - index)]
    figure = plot_map(small_map(len(labels)), labels, "Instruktioner")
    (axes,) = figure.axes
    entries = [text.get_text() for text in axes.get_legend().get_texts()]
    others = sum(20 - index for index in range(LEGEND_LABELS, 20))
    assert entries[:-1] == [f"domæne {index:02} ({20 - index})" for index in range(LEGEND_LABELS)]
    assert entries[-1] == f"other: {20 - LEGEND_LABELS} more labels ({others})"
    assert sum(len(collection.get_offsets()) for collection in axes.collections) == len(labels)
    assert axes.get_xticks().size == 0 and axes.get_yticks().size == 0


def test_the_caption_says_when_the_map_is_a_sample() -> None:
    labels = ["skat"] * 50
    sampled = plot_map(small_map(50, total=1_234), labels, "Instruktioner").axes[0]
    assert sampled.get_xlabel() == "50 of 1,234 instructions, a uniform sample"
    whole = plot_map(small_map(50), labels, "Instruktioner").axes[0]
    assert whole.get_xlabel() == "50 instructions"
    assert whole.get_legend().get_texts()[0].get_text() == "skat (50)"
