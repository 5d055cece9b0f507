"""The particle search: repulsion while the particles explore, loss-guided resampling, pruning; one stage each."""
