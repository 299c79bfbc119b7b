"""The manager: window clock and the loop that drives scrape → process → sinks."""
