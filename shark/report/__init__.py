"""Run reports: PNG plots (matplotlib, Agg backend) next to the JSON summaries. One module per plot family."""
