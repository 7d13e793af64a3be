"""Where inline verdicts go besides the store: the audit log, ``scores.csv``, a webhook, MQTT.

* ``audit.jsonl``: append-only, one JSON line per file decided or refused (time, request id,
  file, sha256, class, variant, score, threshold, decision or error). Each line is one
  ``write`` on a file opened ``O_APPEND`` and is flushed to disk before the client is answered,
  so a killed process leaves whole lines (a reader skips a torn last line: ``read_audit``).
* ``scores.csv``: the one schema of ``zsad.flows.scores_csv`` (``zsad predict``'s), appended.
* a webhook: the POST of ``{"results": [...]}`` (the service's JSON); MQTT: the same JSON
  published to ``host:port/topic``. Both are best effort: a sink that is down is logged and
  counted, and never stops the scoring.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zsad.flows.scores_csv import write_rows

if TYPE_CHECKING:
    from .inline_requests import InlineRequest
    from .verdicts import Verdict

log = logging.getLogger("zsad.sinks")


def audit_record(v: "Verdict") -> dict[str, Any]:
    """The audit line of one verdict."""
    when = dt.datetime.fromtimestamp(v.time, dt.timezone.utc).isoformat(timespec="milliseconds")
    rec = {"time": when, "request_id": v.request_id, "source": v.source, "file": v.file, "sha256": v.sha256,
           "class": v.class_name, "variant": v.variant, "variant_hash": v.variant_hash, "score": v.score,
           "threshold": v.threshold, "threshold_source": v.threshold_source,
           "decision": v.decision if v.error is None else "error"}
    if v.error is not None:
        rec.update(status=v.status, error=v.error)
    return rec


def read_audit(path: str | Path) -> list[dict[str, Any]]:
    """The audit log's records (a torn last line, from a process killed mid-write, is skipped)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@dataclass
class Sinks:
    """The sinks of one inline process (``of``: from its request)."""

    audit: Path
    scores_csv: Path
    webhook: str | None = None
    mqtt: str | None = None
    failures: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._mqtt_client = None

    @classmethod
    def of(cls, r: "InlineRequest") -> "Sinks":
        out = Path(r.out).resolve()
        return cls(out / "audit.jsonl", out / "scores.csv", r.webhook, r.mqtt)

    def emit(self, verdicts: list["Verdict"]) -> None:
        """Append ``verdicts`` to the audit log and ``scores.csv``, then post them to the webhook and MQTT."""
        if not verdicts:
            return
        with self._lock:
            self._append_audit(verdicts)
            self._append_csv(verdicts)
        payload = json.dumps({"results": [v.as_json() for v in verdicts]}).encode()
        if self.webhook:
            self._best_effort("webhook", self._post, payload)
        if self.mqtt:
            self._best_effort("mqtt", self._publish, payload)

    def _append_audit(self, verdicts: list["Verdict"]) -> None:
        self.audit.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.audit, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            for v in verdicts:
                os.write(fd, (json.dumps(audit_record(v)) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def _append_csv(self, verdicts: list["Verdict"]) -> None:
        write_rows(self.scores_csv, [{**audit_record(v), "path": v.path or v.file, "pixel_threshold": v.pixel_threshold,
                                      "status": "scored" if v.error is None else "error", "sample_score": v.score}
                                     for v in verdicts], append=True)

    def _best_effort(self, name: str, send, payload: bytes) -> None:
        try:
            send(payload)
        except Exception as exc:  # noqa: BLE001 - a sink that is down never stops the scoring
            self.failures += 1
            log.warning("%s sink failed (%s): %s", name, type(exc).__name__, exc)

    def _post(self, payload: bytes) -> None:
        req = urllib.request.Request(self.webhook, data=payload, headers={"Content-Type": "application/json"},
                                     method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            resp.read()

    def _publish(self, payload: bytes) -> None:
        host_port, _, topic = self.mqtt.partition("/")
        host, _, port = host_port.partition(":")
        if self._mqtt_client is None:
            import paho.mqtt.client as mqtt
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
            client.connect(host, int(port or 1883))
            client.loop_start()
            self._mqtt_client = client
        self._mqtt_client.publish(topic or "zsad/decisions", payload, qos=1).wait_for_publish(5)
