"""Training engines. `local` is the single-process reference every distributed benchmark compares against."""
