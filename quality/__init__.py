"""The mini LDMs' quality gates, checked when they are trained (scripts/training/train_mini_ldm.py) and by the tests: what
every model shares (gates.py) and each model's own (digits.py, natural.py)."""
