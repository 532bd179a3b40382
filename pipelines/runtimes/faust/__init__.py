"""The Python-only runtime: the pipelines' operators on faust-streaming, with rocksdict state per partition."""
