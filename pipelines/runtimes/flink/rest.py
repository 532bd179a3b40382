"""A small client for Flink's REST API (urllib only): job listing, savepoints and stop-with-savepoint.

It talks to the REST endpoint of the mini-cluster a `streamscore run` process serves on localhost, or to a
real Flink cluster's JobManager. Failures become `FlinkRestError`s whose message names the request and
Flink's reason (the first line of its error, without the Java stack trace).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from pipelines.exceptions import PipelineError


class FlinkRestError(PipelineError):
    """Flink's REST API answered with an error."""


class RestUnreachableError(FlinkRestError):
    """Nothing answers at the REST URL (the job's process ended, or the URL is wrong)."""


@dataclass(frozen=True)
class SavepointStatus:
    """The state of a savepoint (or stop-with-savepoint) operation: in progress, completed or failed."""

    completed: bool
    location: str | None = None
    failure: str | None = None


@dataclass(frozen=True)
class JobSummary:
    """One job as `/jobs/overview` lists it."""

    job_id: str
    name: str
    state: str


def flink_reason(text: str) -> str:
    """The readable part of a Java error text: its first line and its innermost `Caused by:` line, with the
    exception class names dropped when a message follows them."""

    def message(line: str) -> str:
        line = line.strip().removeprefix("Caused by: ")
        head, sep, rest = line.partition(": ")
        return rest if sep and "." in head and " " not in head else line

    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "(no reason given)"
    first = message(lines[0])
    causes = [message(line) for line in lines if line.lstrip().startswith("Caused by:")]
    if causes and causes[-1] not in first:
        return f"{first} (caused by: {causes[-1]})"
    return first


class FlinkRestClient:
    """Calls to one Flink REST endpoint, e.g. `http://127.0.0.1:8081`."""

    def __init__(self, base_url: str, *, timeout_s: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{self.base_url}{path}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", errors="replace")
            try:
                errors = json.loads(raw).get("errors") or [raw]
            except ValueError:
                errors = [raw or exc.reason]
            raise FlinkRestError(
                f"Flink REST {method} {url} answered {exc.code}: {flink_reason(str(errors[0]))}"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise RestUnreachableError(
                f"cannot reach Flink's REST API at {self.base_url} ({reason}): the job's process may have "
                "ended, or the URL is wrong"
            ) from None
        try:
            decoded = json.loads(payload) if payload else {}
        except ValueError:
            raise FlinkRestError(f"Flink REST {method} {url} answered with non-JSON: {payload[:200]!r}") from None
        if not isinstance(decoded, dict):
            raise FlinkRestError(f"Flink REST {method} {url} answered with an unexpected {type(decoded).__name__}")
        return decoded

    def jobs(self) -> list[JobSummary]:
        """All jobs the endpoint knows, running or not."""
        overview = self._call("GET", "/jobs/overview")
        return [JobSummary(str(j["jid"]), str(j.get("name", "")), str(j.get("state", ""))) for j in overview["jobs"]]

    def trigger_savepoint(self, job_id: str, target: str | None) -> str:
        """Start a canonical savepoint of a job that keeps running; returns the trigger id to poll.

        Without `target`, the cluster's `execution.checkpointing.savepoint-dir` is used.
        """
        body: dict[str, Any] = {"cancel-job": False, "formatType": "CANONICAL"}
        if target is not None:
            body["target-directory"] = target
        return str(self._call("POST", f"/jobs/{job_id}/savepoints", body)["request-id"])

    def stop_with_savepoint(self, job_id: str, target: str | None, *, drain: bool = False) -> str:
        """Stop a job with a final savepoint (the job then finishes); returns the trigger id to poll."""
        body: dict[str, Any] = {"drain": drain, "formatType": "CANONICAL"}
        if target is not None:
            body["targetDirectory"] = target
        return str(self._call("POST", f"/jobs/{job_id}/stop", body)["request-id"])

    def savepoint_status(self, job_id: str, trigger_id: str) -> SavepointStatus:
        """Where a triggered savepoint (or stop-with-savepoint) stands."""
        answer = self._call("GET", f"/jobs/{job_id}/savepoints/{trigger_id}")
        if answer.get("status", {}).get("id") != "COMPLETED":
            return SavepointStatus(completed=False)
        operation = answer.get("operation") or {}
        if "failure-cause" in operation:
            cause = operation["failure-cause"] or {}
            text = str(cause.get("stack-trace") or cause.get("class") or "unknown failure")
            return SavepointStatus(completed=True, failure=flink_reason(text))
        return SavepointStatus(completed=True, location=str(operation.get("location")))
