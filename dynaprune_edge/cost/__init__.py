"""What a sample costs on a named target: the `CostModel` the training budget, the export
planner and the latency predictions read (torch-free, so the runtime side can use it).

- `flops`: the layers' own FLOPs formulas (dynaprune_edge.flops), what the training ledger
  has always counted.
- `ort-cpu`: a table of milliseconds measured on this machine with onnxruntime for the very
  sub-networks the exporter emits (dynaprune_edge.export.cost_table measures it;
  `dpedge calibrate`).
- `orin-emu`: the same table, its milliseconds emulated for a Jetson AGX Orin
  (dynaprune_edge.cost.roofline; dynaprune_edge.cost.calibration scales per-layer TensorRT
  profiles measured on another GPU to it instead).
"""

from dynaprune_edge.cost.base import COST_TARGETS, CostModel, FlopsCost, cost_model
from dynaprune_edge.cost.table import CostTable, LayerTimes, MeasuredCost, machine_fingerprint

__all__ = [
    "COST_TARGETS",
    "CostModel",
    "CostTable",
    "FlopsCost",
    "LayerTimes",
    "MeasuredCost",
    "cost_model",
    "machine_fingerprint",
]
