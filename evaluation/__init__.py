"""Image-quality metrics and phase-retrieval mode labels."""
