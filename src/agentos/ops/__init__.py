"""What agentos shows outward and does not steer by: the status page, its Prometheus metrics, the history
figures they and the loops read (:mod:`agentos.ops.metrics`)."""
