"""Errors a user can fix; the CLI prints them as one line instead of a traceback."""

# The exit status of a command (or a local job) stopped by one of these errors.
USER_ERROR_STATUS = 2


class LaerebogenError(Exception):
    """Base class for errors caused by input, configuration or the state of a run."""


class ConfigError(LaerebogenError):
    """A configuration file or override is invalid."""


class StoreError(LaerebogenError):
    """A run directory is in a state that cannot be read or written as asked."""


class CorruptShardError(StoreError):
    """A shard on disk does not match its manifest (truncated, altered or half-written)."""


class InvariantError(LaerebogenError):
    """Records were lost or duplicated between steps; the run stops rather than go on."""


class RunFailedError(LaerebogenError):
    """Jobs of a step failed more often than the retry budget allows."""


class UsageError(LaerebogenError):
    """A command line that does not fit the command it names (or names none)."""


class SeedError(LaerebogenError):
    """A seed file is malformed; the message names file and line."""


class ModelError(LaerebogenError):
    """A model directory is missing or cannot be loaded."""


class SourceError(LaerebogenError):
    """A corpus or an imported dataset cannot be read at all (a bad row is only rejected)."""
