"""Creativity homogenization (Anderson, Shah & Kreminski, C&C 2024): embeddings, diversity
metrics, reproduction from reported summaries, simulation and the analysis study."""
