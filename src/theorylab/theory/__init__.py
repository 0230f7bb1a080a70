"""theorylab.theory."""
