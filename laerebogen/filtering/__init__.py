"""What a merge keeps: the heuristic filters, Danish detection, screening, ROUGE-L dedup and
readability."""
