"""The training worker: PS client (routing, deadlines, retries, async push window), train/eval loop, Ray actor."""
