"""Continual learning in vision (Qu et al., "Recent Advances of Continual Learning in Computer
Vision: An Overview", arXiv 2109.11369): task streams, the accuracy-matrix metrics, and one
strategy per family of the overview as plugins on one interface (:mod:`.strategies`)."""
