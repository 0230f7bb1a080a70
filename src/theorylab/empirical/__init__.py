"""theorylab.empirical."""
