"""The bodies of the CLI's commands that are more than wiring: dataset, smoke runs, doctor, seeds
check and item files."""
