"""The systems `benchmarks/bench.py` compares, each run as its own process on the same broker and events.

- `python_passthrough`: confluent-kafka consume -> produce, no processing (the Python limit);
- `flink_passthrough`: a PyFlink job with the real job's Kafka SQL tables and an identity Python function;
- `naive_pyflink`: the risk pipeline as a newcomer writes it from PyFlink's docs (process mode, value-only
  `KafkaSource`, `json.loads`, pickled `ValueState`, onnxruntime per event);
- `quix_app`: the risk pipeline as a Quix Streams application (its own venv: `quix_venv`);
- `offline`: the project's operator chain in a plain Python loop (µs per event);
- `risk_app`: the scoring step the peers share (the project's features, rules, policy and model);
- `systems`: the table of systems (command lines, sizes) the benchmark runs.

The streamscore jobs themselves run through the `streamscore run` command line.
"""
