"""The PyFlink runtime: environment configuration, Kafka tables, the keyed operator functions and job runner."""
