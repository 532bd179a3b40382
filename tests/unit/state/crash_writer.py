"""Child process of the crash test: writes one atomic batch per round number to N keys, forever.

Usage: python crash_writer.py STATE_DIR N_KEYS. Batch n puts {"batch": n} (event time n) on every key
in one write batch, with the runtime entry `applied` = n (`put_meta`), and prints n after the commit
returns. It resumes from the batch found on disk.
A tiny memtable forces frequent flushes and compactions while the parent kills this process.
"""

from __future__ import annotations

import sys

from state import RetentionPolicy, RocksVersionedStore


def main() -> None:
    path, n_keys = sys.argv[1], int(sys.argv[2])
    keys = [f"k{i:03d}" for i in range(n_keys)]
    store = RocksVersionedStore(path, retention=RetentionPolicy(max_versions=4), write_buffer_bytes=1 << 17)
    latest = store.key(keys[0]).get()
    batch = 1 if latest is None else latest.value["batch"] + 1
    print(f"start {batch}", flush=True)
    pad = "x" * 100
    while True:
        with store.write_batch():
            for key in keys:
                store.key(key).put({"batch": batch, "pad": pad}, event_time=batch)
            store.put_meta("applied", str(batch).encode())  # as a runtime stores its input offset
        print(batch, flush=True)
        batch += 1


if __name__ == "__main__":
    main()
