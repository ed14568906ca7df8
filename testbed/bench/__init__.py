"""Benchmarks of the processor, the simulator and the ingress, with the doubles the in-process one uses."""
