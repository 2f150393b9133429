"""Linux scheduler traces: perf.data, tracefs recordings, perf script and ftrace text."""
