"""The HTTP APIs: health, self-metrics, metrics.k8s.io and Heapster's model API."""
