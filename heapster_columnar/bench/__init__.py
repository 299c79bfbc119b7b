"""The benchmark harness behind ``heapster-columnar bench``: the real collector against a simulated
cluster in its own process, measured per window."""
