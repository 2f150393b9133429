"""Live tracing on this host: tracefs instance management and per-CPU page reading."""
