"""Benchmarks of the gateway agent and its uplink (not tests): python -m bench [--quick]."""
