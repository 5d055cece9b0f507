"""pytest's shared fixtures for every test folder (tests/, and the tests beside each stage in particle/<name>/ and
resample_opt/), and the order the suite's files go out to the workers in."""
from tests.conftest import one_thread, shared  # noqa: F401

# the files that take longest (--durations=0 summed per file, 2026-12-07: 66 s down to 12 s) go out first: with one
# file per worker at a time (--dist loadfile) a long file handed out last would leave one core idle at the end; the
# SLURM test first: it mostly waits on its cluster's tasks, which then overlap the others' work
FIRST = ("test_slurm.py", "test_gpu_check.py", "test_natural.py", "test_digits.py", "test_study.py", "test_resample.py",
         "test_user_path.py", "test_workflow.py", "test_gpu_study.py", "test_newcomer.py", "test_safety.py",
         "test_ldm_pipeline.py", "test_benchmark.py", "test_stage_plugin.py", "test_trust.py", "test_operators.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))      # stable: the rest keep their order
