"""Loaded engines kept between the jobs of one process."""

from __future__ import annotations

import msgspec

from laerebogen.config.schema import Config
from laerebogen.inference.engine import Engine


class EngineCache:
    """Engines kept across the jobs of one process (the debug executor, a local worker), one
    per model, at most ``keep`` of them: a model that does not fit beside another (on a GPU)
    replaces it. Each array task starts its own engine instead.
    """

    def __init__(self, keep: int | None = None) -> None:
        self._engines: dict[tuple[str, object], Engine] = {}
        self.keep = keep

    def get(self, config: Config, name: str) -> Engine:
        """The loaded engine of model ``name`` (``[models.<name>]``), started on first use."""
        model = config.models[name]
        # Models that differ only in how prompts are rendered share one loaded model.
        loaded = msgspec.structs.replace(model, chat_template=None)
        key = (str(config.model_path(name)), loaded)
        if key not in self._engines:
            if self.keep is not None and len(self._engines) >= self.keep:
                self.close()
            engine = Engine.from_config(config, name)
            engine.load()
            self._engines[key] = engine
        engine = self._engines[key]
        return engine if engine.model == model else engine.rendering_for(model)

    def close(self) -> None:
        """Shut every engine down."""
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
