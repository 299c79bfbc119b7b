"""Configuration: URIs of sources and sinks, and the run options."""
