"""dpedge (dynaprune-edge): per-sample pruned spatio-temporal forecasters, compiled for the edge."""
