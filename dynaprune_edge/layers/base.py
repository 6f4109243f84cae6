"""The contract of a layer type: its masked training forward, its cost and its lowering into
an exported sub-network, in one class.

- `forward(*inputs, masks)`: torch, in training and PyTorch inference; multiplies its
  activations by the masks and records its cost under them in `masks.ledger`.
- `cost(...)`: FLOPs for given kept channels, positions or tokens (layer-specific
  arguments), from `dynaprune_edge.flops`. Training calls it with the masks' fractional
  kept counts, the export with the whole counts a branch computes: one formula, so what
  training counts as saved is what the graph leaves out.
- `lower(net, *inputs)`: emits the layer into `net`, the sub-network being exported
  (`dynaprune_edge.export.subnetwork.SubNetwork`), computing kept work only, and counts
  `cost` of what it emitted with `net.count`.
- `static_equivalent(masks, element, output_size)`: the dense module of the kept work of one
  batch element, with an example input, for fvcore to count (the independent check of
  `cost`; tests only).

Backbones never call these directly: they call `ops.apply(layer, *inputs)` on an
`Interpreter` (see `interpreter.py`), which picks the face.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import nn

from dynaprune_edge.layers.state import GateSpec


class Layer(nn.Module, ABC):
    gate: GateSpec | None = None  # the prunable unit of this layer's output, if any
    skips_regions_when_tiled: bool = True
    """Whether `lower` leaves skipped regions uncomputed where the export's tile policy
    tiles it. False: it computes them and zeroes them, so DynaPruner sets its
    `tile_limit` to 0 and training charges it in full, as the exported graph spends."""
    tile_limit: int | None = None
    """Set by DynaPruner from its cost model (dynaprune_edge.cost): the most kept regions at
    which this layer runs on tiles; a sample keeping more is computed on whole maps and
    charged in full, in training and in the exported graph alike. None: tiles wherever
    regions are skipped (and the export's tile policy allows)."""

    @abstractmethod
    def lower(self, net, *inputs):
        """Emit this layer into the exported sub-network `net`; returns its output feature(s)."""

    def check_exportable(self) -> None:
        """Raise ConfigError if this layer cannot be lowered as configured (checked before
        an export reads any data)."""
