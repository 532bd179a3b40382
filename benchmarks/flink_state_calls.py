"""JVM state calls per event of `FlinkVersionedState`, counted inside a real PyFlink job (thread mode, RocksDB).

Each event does what the risk operator does with its state (get, then put of a ~700-byte value) on keys chosen
at random among `--keys`, retention 16 versions; every Flink state object the adapter holds is wrapped so that
each method call (one JVM crossing) is counted. Prints the calls per event after each key's first event (the
steady state) and their breakdown, and the task thread's CPU time spent in the adapter per event (get + put
[+ flush], including the JNI calls into RocksDB, which run on that thread; CPU time, not wall time, so that other
load on the machine disturbs it less). `--repo` points at another checkout to count an older adapter (the one of
5043d14 used `begin_element()`; the current one `set_current_key()` + `flush()`).

Usage: python benchmarks/flink_state_calls.py [--events 3000] [--keys 50] [--repo PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_JOB = r'''
import json, random, sys, time
from pyflink.common import Configuration, Types
from pyflink.datastream import KeyedProcessFunction, StreamExecutionEnvironment
events, keys = int(sys.argv[1]), int(sys.argv[2])


class Counted:
    def __init__(self, state, counts, name):
        self._state, self._counts, self._name = state, counts, name

    def __getattr__(self, method):
        target = getattr(self._state, method)
        if not callable(target):
            return target

        def counted(*args):
            call = self._name + "." + method
            self._counts[call] = self._counts.get(call, 0) + 1
            return target(*args)
        return counted


class Probe(KeyedProcessFunction):
    def open(self, runtime_context):
        from state import MsgpackCodec, RetentionPolicy
        from state.flink_state import FlinkVersionedState
        self.state = FlinkVersionedState(
            runtime_context, "risk", MsgpackCodec(), retention=RetentionPolicy(max_versions=16))
        self.counts = {}
        for attribute, value in list(vars(self.state).items()):
            if ".embedded." in type(value).__module__:
                setattr(self.state, attribute, Counted(value, self.counts, attribute.strip("_")))
        self.new = hasattr(self.state, "set_current_key")

    def process_element(self, value, ctx):
        key, n = value
        self.counts.clear()
        started = time.thread_time_ns()
        if self.new:
            self.state.set_current_key(key)
        else:
            self.state.begin_element()
        latest = self.state.get()
        self.state.put({"n": n, "pad": "x" * 700}, event_time=n, source=None)
        if self.new:
            self.state.flush()
        cpu_ns = time.thread_time_ns() - started
        yield json.dumps({"key": key, "first": latest is None, "calls": self.counts, "cpu_ns": cpu_ns})


config = Configuration()
config.set_string("python.execution-mode", "thread")
config.set_string("state.backend.type", "rocksdb")
config.set_string("python.executable", sys.executable)
env = StreamExecutionEnvironment.get_execution_environment(config)
env.set_parallelism(1)
rng = random.Random(5)
ops = [(f"k{rng.randrange(keys)}", i) for i in range(events)]
stream = env.from_collection(ops, type_info=Types.TUPLE([Types.STRING(), Types.INT()]))
out = stream.key_by(lambda op: op[0], key_type=Types.STRING()).process(Probe(), output_type=Types.STRING())
with out.execute_and_collect() as lines:
    for line in lines:
        print(line)
'''


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--repo", type=Path, default=ROOT)
    args = parser.parse_args()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([sysconfig.get_paths()["purelib"], str(args.repo.resolve())])
    run = subprocess.run([sys.executable, "-c", _JOB, str(args.events), str(args.keys)], env=env, cwd=args.repo,
                         capture_output=True, text=True, check=False)
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode != 0 or not lines:
        sys.exit(f"the probe job failed:\n{run.stderr[-3000:]}")
    steady = [line["calls"] for line in lines if not line["first"]]
    totals: dict[str, int] = {}
    for calls in steady:
        for call, count in calls.items():
            totals[call] = totals.get(call, 0) + count
    per_event = sum(totals.values()) / len(steady)
    # the second half of the run (JIT and RocksDB warm), each key's first event left out
    cpu = sorted(line["cpu_ns"] for line in lines[len(lines) // 2:] if not line["first"])
    print(json.dumps({
        "repo": str(args.repo), "events": len(lines), "steady_events": len(steady),
        "state_calls_per_event": round(per_event, 3),
        "max_calls_in_one_event": max(sum(calls.values()) for calls in steady),
        "state_cpu_us_per_event_median": round(cpu[len(cpu) // 2] / 1000, 1),
        "state_cpu_us_per_event_mean": round(sum(cpu) / len(cpu) / 1000, 1),
        "breakdown_per_event": {call: round(count / len(steady), 3) for call, count in sorted(totals.items())},
    }, indent=2))


if __name__ == "__main__":
    main()
