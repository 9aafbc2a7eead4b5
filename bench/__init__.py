"""agentos benchmarks: what the daemon costs per task, at idle and at scale. Run ``python -m bench``."""
