"""The recipe's generation stages: pure logic from records to engine requests and back.

:func:`build_stage` makes a stage from a configuration; stage modules are imported on
demand, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laerebogen.errors import LaerebogenError

if TYPE_CHECKING:
    from laerebogen.config.schema import Config
    from laerebogen.stages.core import Stage

STAGE_NAMES = ("generation", "grammar", "quality", "evolution", "followups", "annotate")


def build_stage(name: str, config: Config) -> Stage:
    """The stage ``name`` with its settings from ``config``."""
    if name == "generation":
        from laerebogen.seeds import load_seeds, seed_examples
        from laerebogen.stages.generation import GenerationStage

        seeds = list(seed_examples(load_seeds(config.seed_path())))
        return GenerationStage(config.generation, seeds)
    if name == "grammar":
        from laerebogen.stages.grammar import GrammarStage

        return GrammarStage(config.grammar)
    if name == "quality":
        from laerebogen.stages.quality import QualityStage

        return QualityStage(config.quality)
    if name == "evolution":
        from laerebogen.stages.evolution import EvolutionStage

        return EvolutionStage(config.evolution)
    if name == "followups":
        from laerebogen.stages.followups import FollowupStage

        return FollowupStage(config.followups)
    if name == "annotate":
        from laerebogen.stages.annotate import AnnotateStage
        from laerebogen.stages.taxonomy import load_taxonomy

        return AnnotateStage(config.annotate, load_taxonomy(config.annotate.taxonomy_path()))
    raise LaerebogenError(f"unknown stage {name!r}: choose one of {', '.join(STAGE_NAMES)}")
