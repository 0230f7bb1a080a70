r"""The power-flow surrogates: a message-passing GNN with edge features and an MLP baseline.

Both read the standardised node features :math:`x \in \mathbb{R}^{B\times n\times F}` of
:mod:`.features` and predict, per bus, a correction to the DC power flow in standardised units:
:math:`\hat V = V^\text{DC} + s_V\,\hat r_V` and :math:`\hat\theta = \theta^\text{DC} +
s_\theta\,\hat r_\theta` (:math:`s` the training residuals' standard deviations); known entries
(V at PV and slack buses, θ at slack buses) are overwritten by their set-points.

**GNN** (an interaction network, Battaglia et al. 2016, as in the power-flow GNNs the review
surveys): :math:`h^0_i = \phi_\text{enc}(x_i)`, then :math:`L` residual layers

.. math:: m_{ij} = \phi_m(h_i, h_j, e_{ij}),\quad h_i \leftarrow h_i + \phi_u\big(h_i,
   \textstyle\sum_{j \in N(i)} w_{ij}\, m_{ij}\big),

:math:`\phi` two-layer SiLU MLPs, :math:`e_{ij}` the edge features, :math:`w_{ij} \in \{0, 1\}`
an optional per-case edge mask (a branch outage), and a linear read-out of :math:`h^L_i`. All
cases of a grid share its topology, so a batch is a dense (B, n, d) tensor and the aggregation is
one ``index_add`` over the edge list: the same sums as PyG's disjoint-union batching
(``torch_geometric.nn.MessagePassing`` with ``aggr="add"``), which the tests check against.
The **MLP** maps the flattened features (n·F) through two hidden layers to the 2n outputs.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["mlp", "InteractionLayer", "PowerGNN", "PowerMLP"]


def mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    """Linear–SiLU–Linear."""
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.SiLU(), nn.Linear(d_hidden, d_out))


class InteractionLayer(nn.Module):
    r"""One residual message-passing step (module docstring), computed without materialising
    :math:`\phi_m` on the edges: its first layer on the concatenation splits into per-node and
    per-edge products, :math:`W[h_i; h_j; e_{ij}] = W_i h_i + W_j h_j + W_e e_{ij}`, and its
    second (linear) layer commutes with the sum over neighbours, :math:`\sum_j w_{ij}(U z_{ij} +
    c) = U \sum_j w_{ij} z_{ij} + c \sum_j w_{ij}`. The result equals ``message`` applied edge
    by edge (:meth:`naive`), at a third of the matrix products and none on the edges."""

    def __init__(self, d: int, d_edge: int):
        super().__init__()
        self.message = mlp(2 * d + d_edge, d, d)
        self.update = mlp(2 * d, d, d)
        self.d = d

    def forward(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor,
                w: torch.Tensor | None = None) -> torch.Tensor:
        src, dst = edge_index
        first, second = self.message[0], self.message[2]
        W = first.weight
        d = self.d
        a_dst = h @ W[:, :d].T                        # (B, n, d): W_i h_i
        a_src = h @ W[:, d:2 * d].T                   # W_j h_j
        a_e = e @ W[:, 2 * d:].T + first.bias         # (1, E, d): W_e e_ij + b
        z = torch.nn.functional.silu(a_dst[:, dst] + a_src[:, src] + a_e)
        ones = torch.ones(h.shape[0], len(dst), 1, dtype=h.dtype, device=h.device)
        if w is not None:
            z = z * w.unsqueeze(-1)
            ones = w.unsqueeze(-1).to(h.dtype)
        zs = torch.zeros_like(h).index_add_(1, dst, z)
        deg = torch.zeros(*h.shape[:2], 1, dtype=h.dtype, device=h.device).index_add_(1, dst, ones)
        agg = zs @ second.weight.T + deg * second.bias
        return h + self.update(torch.cat([h, agg], dim=-1))

    def naive(self, h: torch.Tensor, edge_index: torch.Tensor, e: torch.Tensor,
              w: torch.Tensor | None = None) -> torch.Tensor:
        """The same step with the message MLP applied to every edge's concatenation."""
        src, dst = edge_index
        B = h.shape[0]
        m = self.message(torch.cat([h[:, dst], h[:, src], e.expand(B, -1, -1)], dim=-1))
        if w is not None:
            m = m * w.unsqueeze(-1)
        agg = torch.zeros_like(h).index_add_(1, dst, m)
        return h + self.update(torch.cat([h, agg], dim=-1))


class PowerGNN(nn.Module):
    """Encoder, ``layers`` interaction layers, per-bus read-out of 2 residuals (V, θ)."""

    def __init__(self, d_node: int, d_edge: int, edge_index: torch.Tensor,
                 edge_attr: torch.Tensor, hidden: int = 64, layers: int = 6):
        super().__init__()
        self.register_buffer("edge_index", edge_index.long())
        self.register_buffer("edge_attr", edge_attr.float())
        self.encode = mlp(d_node, hidden, hidden)
        self.edge_encode = mlp(d_edge, hidden, hidden)
        self.layers = nn.ModuleList(InteractionLayer(hidden, hidden) for _ in range(layers))
        self.readout = nn.Linear(hidden, 2)

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        h = self.encode(x)
        e = self.edge_encode(self.edge_attr).unsqueeze(0)
        for layer in self.layers:
            h = layer(h, self.edge_index, e, w)
        return self.readout(h)


class PowerMLP(nn.Module):
    """Flattened features → two hidden SiLU layers → (n, 2) residuals."""

    def __init__(self, n: int, d_node: int, hidden: int = 256):
        super().__init__()
        self.n = n
        self.net = nn.Sequential(nn.Linear(n * d_node, hidden), nn.SiLU(),
                                 nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 2 * n))

    def forward(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x.flatten(1)).view(-1, self.n, 2)
