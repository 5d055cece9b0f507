"""pytest's shared fixtures for every test folder: tests/, and the tests beside each stage in stages/<name>/."""
from tests.conftest import one_thread, shared  # noqa: F401
