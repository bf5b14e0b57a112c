"""The study stage: models × training variants, each trained (train) and evaluated (evaluate), then reported."""
