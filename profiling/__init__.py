"""Measuring what the exported models cost: FLOPs conventions, latency statistics, power.

Imports neither torch nor fvcore: this package goes onto the Jetson."""
