"""The benchmarks behind `dpedge demo` and `dpedge bench`: accuracy and latency, dense vs pruned."""
