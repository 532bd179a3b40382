"""The runtimes that run a pipeline's operator: Flink (the streaming job) and offline (a file, one process)."""
