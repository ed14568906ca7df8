"""Benchmarks of the processor, the simulator and the ingress (the load steps they run, the ceiling,
the history), with the doubles the in-process one uses."""
