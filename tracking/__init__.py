"""Wall time, memory and per-step records of a run, and the atomically rewritten metric.json."""
