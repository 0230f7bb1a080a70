"""theorylab.simulations."""
