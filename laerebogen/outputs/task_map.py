"""A 2-D map of a dataset's instructions, where similar instructions land near each other.

The map shows at a glance what a dataset covers and where it repeats itself: a dense island
is many variations of one task, an empty region a kind of task it lacks. Each instruction
becomes TF-IDF weights of its words and word pairs (what it is about) and of character n-grams
within words (Danish compounds and inflections: *opskrift*, *opskrifter*, *kageopskrift*),
reduced by a truncated SVD, then laid out by t-SNE. At most :data:`MAX_POINTS` are laid out,
a uniform sample beyond that, so a map of 200,000 instructions costs what one of 20,000 does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from laerebogen.outputs import figures as drawing

if TYPE_CHECKING:  # matplotlib is imported only to draw
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

MAX_POINTS = 20_000
SVD_COMPONENTS = 50
# t-SNE looks at about 3 x perplexity neighbours of each point (perplexity 30, fewer for small
# maps); below 16 points (perplexity 5) it has too few to find structure, and the SVD's own 2-D
# view is the better map.
PERPLEXITY = 30.0
MIN_TSNE_POINTS = 16
# scikit-learn's defaults are 1000 iterations (250 of them exaggerated) and angle 0.5; these
# take its t-SNE of 20,000 points from 164 s to 50 s on one core (benchmarks/task_map.py's
# texts), ending at a KL divergence of 2.37 instead of 2.05: the same clusters, less spread out.
# At 500 iterations, angle 0.8 (a coarser Barnes-Hut approximation) ends at the same KL
# divergence as 0.5, in two thirds of the time.
TSNE_ITERATIONS = 500
TSNE_ANGLE = 0.8
# tab10 without its grey, then three light tints of tab20: 12 colours told apart from each
# other and from the grey of "other".
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22",
    "#17becf", "#aec7e8", "#ffbb78", "#98df8a",
)  # fmt: skip
LEGEND_LABELS = len(PALETTE)
# How a map is made, in the card's words.
METHOD = (
    "TF-IDF of its words, word pairs and character 3-4-grams within words, reduced to "
    f"{SVD_COMPONENTS} dimensions by a truncated SVD and laid out in 2-D by t-SNE (for fewer "
    f"than {MIN_TSNE_POINTS} instructions: the SVD's first two dimensions)"
)
OTHER = "other"
OTHER_COLOUR = "#bbbbbb"


class TaskMap(NamedTuple):
    """Points of a map: ``rows`` are the indices of the laid-out texts (ascending), ``xy``
    their coordinates, ``total`` how many texts there were."""

    rows: np.ndarray
    xy: np.ndarray
    total: int

    @property
    def sampled(self) -> bool:
        """Whether only a sample of the texts is drawn."""
        return self.total > len(self.rows)


def layout(texts: Sequence[str], seed: int, max_points: int = MAX_POINTS) -> TaskMap:
    """Lay out ``texts`` (a uniform sample of ``max_points`` when there are more) in 2-D.

    Maps of :data:`MIN_TSNE_POINTS` or more texts come from t-SNE; smaller ones, and those
    whose texts all look the same to TF-IDF (identical texts, texts without letters), are the
    first two SVD coordinates, where identical texts share a point. The same texts and seed
    give bitwise the same coordinates with the same CPU instruction set and library versions,
    whatever the number of cores: everything runs on one thread, since t-SNE's gradient sums
    over its OpenMP threads and so would change with their number.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    rng = np.random.default_rng(seed)
    state = int(rng.integers(2**32))  # scikit-learn takes seeds below 2**32 only
    rows = np.arange(len(texts))
    if len(texts) > max_points:
        rows = np.sort(rng.choice(len(texts), size=max_points, replace=False))
    xy = np.zeros((len(rows), 2))
    with threadpool_limits(limits=1):
        reduced = _reduce([texts[row] for row in rows], state)
        # t-SNE's PCA start would divide by zero when all points are the same
        if len(rows) < MIN_TSNE_POINTS or not np.ptp(reduced, axis=0).any():
            columns = min(2, reduced.shape[1])
            xy[:, :columns] = reduced[:, :columns]
        else:
            perplexity = min(PERPLEXITY, (len(rows) - 1) / 3)
            tsne = TSNE(
                perplexity=perplexity, max_iter=TSNE_ITERATIONS, init="pca",
                random_state=state, angle=TSNE_ANGLE,
            )  # fmt: skip
            xy[:] = tsne.fit_transform(reduced)
    return TaskMap(rows, xy, len(texts))


def _reduce(texts: list[str], state: int) -> np.ndarray:
    """The texts' TF-IDF features reduced to at most :data:`SVD_COMPONENTS` by a truncated SVD,
    as rows of unit length, so that distances compare topics rather than lengths (zero rows for
    texts without a shared term, no columns when no text has one)."""
    import scipy.sparse
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    # min_df=2: a term of one text cannot bring two texts together, it only adds columns.
    # The caps bound the vocabulary's memory and the SVD's work; they keep the frequent terms,
    # which are the ones shared by many texts. Character n-grams of 3-4 within words catch
    # shared stems without the many more columns (and tokenising time) of longer ones.
    vectorizers = (
        TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=30_000, sublinear_tf=True),
        TfidfVectorizer(
            analyzer="char_wb", ngram_range=(3, 4), min_df=2, max_features=30_000,
            sublinear_tf=True,
        ),
    )  # fmt: skip
    blocks = []
    for vectorizer in vectorizers:
        try:
            blocks.append(vectorizer.fit_transform(texts))
        except ValueError:  # no term of this kind in two texts (or in any)
            continue
    if not blocks:
        return np.zeros((len(texts), 0))
    features = scipy.sparse.hstack(blocks, format="csr", dtype=np.float32)
    svd = TruncatedSVD(min(SVD_COMPONENTS, features.shape[1]), random_state=state)
    with np.errstate(divide="ignore", invalid="ignore"):  # its unused explained variance
        reduced = svd.fit_transform(features)  # ratio is 0/0 when all texts are identical
    return normalize(reduced)


def plot_map(task_map: TaskMap, labels: Sequence[str], title: str) -> Figure:
    """The map, a point per text coloured by its label (``labels[i]`` is that of
    ``task_map.rows[i]``). Only the :data:`LEGEND_LABELS` most frequent labels get a colour
    and a legend entry, as more colours cannot be told apart; the rest are grey, "other"."""
    figure, (axes,) = drawing.figure(width=8.0, height=6.5)
    counts = Counter(labels)
    named = counts.most_common(LEGEND_LABELS)
    groups = np.array(labels, dtype=object)
    for (label, count), colour in zip(named, PALETTE, strict=False):
        _scatter(axes, task_map.xy[groups == label], colour, f"{label} ({count:,})")
    others = ~np.isin(groups, [label for label, _ in named])
    if others.any():  # below the named labels' points, last in the legend
        legend = f"{OTHER}: {len(counts) - len(named)} more labels ({others.sum():,})"
        _scatter(axes, task_map.xy[others], OTHER_COLOUR, legend, zorder=0.5)
    axes.set_xticks([])  # t-SNE's axes have no unit; only nearness means something
    axes.set_yticks([])
    axes.set_title(title)
    caption = f"{len(task_map.rows):,} instructions"
    if task_map.sampled:
        caption = f"{len(task_map.rows):,} of {task_map.total:,} instructions, a uniform sample"
    axes.set_xlabel(caption)
    if counts:
        axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), markerscale=3, frameon=False)
    return figure


def draw_map(task_map: TaskMap, labels: Sequence[str], title: str) -> bytes:
    """:func:`plot_map` as PNG bytes, the same for the same map."""
    return drawing.png(plot_map(task_map, labels, title))


def _scatter(axes: Axes, xy: np.ndarray, colour: str, legend: str, zorder: float = 1.0) -> None:
    axes.scatter(xy[:, 0], xy[:, 1], s=3, color=colour, linewidths=0, label=legend, zorder=zorder)
