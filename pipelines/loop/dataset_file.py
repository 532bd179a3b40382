"""A dataset's Parquet file: the columns and the `streamscore` metadata that names how it was built."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipelines.exceptions import ConfigError
from pipelines.loop.labels import DatasetReport


def write_dataset(out: Path, columns: dict[str, Any], pipeline: str, sources: dict[str, Any],
                  report: DatasetReport) -> None:
    """Write `columns` to the Parquet file `out`, with the metadata `dataset_metadata` reads back: the
    pipeline, its `sources` (topics, `until_ms`, ...), the time it was built and the build's report."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    metadata = {"pipeline": pipeline, **sources, "built_at_ms": int(time.time() * 1000), "report": asdict(report)}
    table = pa.table(columns).replace_schema_metadata({"streamscore": json.dumps(metadata)})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)


def dataset_metadata(path: Path, pipeline: str | None = None) -> dict[str, Any]:
    """The `streamscore` metadata a dataset file was written with (topics, until, time range, counts);
    `ConfigError` when it has none or (given `pipeline`) is another pipeline's."""
    import pyarrow.parquet as pq

    raw = (pq.read_schema(path).metadata or {}).get(b"streamscore")
    if raw is None:
        raise ConfigError(f"{path} is not a streamscore dataset (no streamscore metadata): build it with "
                          "`streamscore dataset build`")
    metadata = dict(json.loads(raw))
    if pipeline is not None and metadata.get("pipeline") != pipeline:
        raise ConfigError(f"{path} is a {metadata.get('pipeline')} dataset; {pipeline} models train on "
                          f"`streamscore dataset build {pipeline}`")
    return metadata
