"""theorylab.empirical.data."""
