"""The regression suite quantlab's pytest plugin ships and collects itself once a model is named.

gates.py (size, accuracy, parity, speed) and benchmarks.py (pytest-benchmark latency with the
gate metrics in extra_info). Their names do not match pytest's test_*.py, so nothing else collects them.
"""
