"""Kafka I/O shared by the CLI and the tools: clients, publishing, the state changelog."""
