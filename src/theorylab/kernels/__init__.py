"""theorylab.kernels."""
