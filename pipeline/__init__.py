"""Glue between the command line, the config and the sampler: flag parsing, validation, the per-image run."""
