from dynaprune_edge.cli import main

main()
