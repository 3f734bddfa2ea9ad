"""What a run publishes and reports: the exported dataset, stats, plots, the card, status and
verification."""
