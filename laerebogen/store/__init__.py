"""The run directory on disk: atomic files, the shard format and its journal, the layout of a run,
its saved config."""
