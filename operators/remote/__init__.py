"""Remote model backends: registry models served over the Open Inference Protocol v2 (HTTP or gRPC)."""
