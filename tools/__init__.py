"""Scripts that work on the repository (not part of the explorer package)."""
