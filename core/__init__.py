"""The ground floor: the project's error type and small tensor helpers; imports nothing of the project."""
