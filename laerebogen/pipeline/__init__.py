"""A run's steps: their on-disk plans, the shard runner, the merge job, the jobs of a step and the
driver."""
