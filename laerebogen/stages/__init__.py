"""The recipe's generation stages: pure logic from records to engine requests and back.

:func:`build_stage` makes a stage from a configuration; stage modules are imported on
demand, so importing this package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from laerebogen.errors import LaerebogenError

if TYPE_CHECKING:
    from pathlib import Path

    from laerebogen.config.schema import Config
    from laerebogen.stages.core import CpuStage, Stage

STAGE_NAMES = (
    "generation", "magpie", "grounded", "grammar", "quality", "evolution", "followups",
    "code_check", "annotate",
)  # fmt: skip
# Stages that run no model: their shards need CPUs only.
CPU_STAGES = ("code_check",)


def build_stage(name: str, config: Config, run_dir: Path | None = None) -> Stage | CpuStage:
    """The stage ``name`` with its settings from ``config``; ``run_dir`` is what the
    code_check stage hides from the code it runs."""
    if name == "generation":
        from laerebogen.seeds import load_seeds, seed_examples
        from laerebogen.stages.generation import GenerationStage

        seeds = list(seed_examples(load_seeds(config.seed_path())))
        return GenerationStage(config.generation, seeds)
    if name == "magpie":
        from laerebogen.stages.magpie import MagpieStage

        return MagpieStage(config.sources.magpie)
    if name == "grounded":
        from laerebogen.stages.grounded import GroundedStage

        return GroundedStage(config.sources.grounded)
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
    if name == "code_check":
        from laerebogen.codecheck.sandbox import Sandbox
        from laerebogen.stages.code_check import CodeCheckStage

        hide = [run_dir] if run_dir is not None else []
        return CodeCheckStage(Sandbox(config.code_check, hide), config.code_check.workers)
    raise LaerebogenError(f"unknown stage {name!r}: choose one of {', '.join(STAGE_NAMES)}")
