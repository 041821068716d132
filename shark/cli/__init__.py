"""The `shark` command line."""
