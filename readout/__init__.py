"""What parse_metrics.py prints and draws from the metric.json files of any set of runs: load.py reads and groups
them into experiments, tables.py makes the tables, plots.py the plots."""
