"""Distributed GNN training on ``torch.distributed`` (Lin et al., Proc. IEEE 2023): graphs,
partitioning, full-graph training with halo exchange, and the study that measures them."""
