"""Analysis of stored history: open a Parquet store, read daily rollups, answer the standard
questions (usage over time, top consumers, right-sizing, chargeback, node efficiency)."""
