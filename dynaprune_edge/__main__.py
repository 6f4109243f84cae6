"""`python -m dynaprune_edge`: the `dpedge` command line."""

from dynaprune_edge.cli import main

main()
