"""Power systems on pandapower's grids: admittance matrix and AC mismatch, solved samples, DC
power flow, GNN and MLP power-flow surrogates, and the study that measures them."""
