"""Data: readers (Criteo, general CSV/TSV/Parquet), feature transforms, the synthetic Criteo-like generator."""
