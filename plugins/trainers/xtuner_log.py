"""Reading mmengine/xtuner console logs: metrics, sample outputs, checkpoint saves, errors.

Lines look like (seed 001)::

    06/13 19:40:55 - mmengine - INFO - Iter(train) [100/768]  lr: 1.9491e-04  eta: 0:03:38  time: 0.3184 ...
    06/13 19:41:34 - mmengine - INFO - Sample output:
    <s><|im_start|>user ...
    06/13 19:41:35 - mmengine - INFO - Saving checkpoint at 100 iterations
    06/13 19:41:52 - mmengine - INFO - Validation at iteration 100: val_loss: 1.2345  val_acc: 0.5  val_items: 64  ...

and may carry torchrun's ``[default0]:`` prefix when ranks are teed to the console. The
``Validation at iteration N:`` line is written by vlhub's ``VlhubCheckpointKeeper`` after mmengine's
validation loop (its own ``Iter(val)`` line does not say after which iteration it ran); it becomes a
validation record (:mod:`vlhub.core.train_metrics`).
:class:`LogParser` is fed lines incrementally (the supervisor) or a whole file (``status``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from vlhub.core.train_metrics import VAL

PREFIX = re.compile(r"^\[[a-z]*\d+\]:")
HEADER = re.compile(r"^(?P<ts>\d\d/\d\d \d\d:\d\d:\d\d) - mmengine - (?P<level>[A-Z]+) - (?P<msg>.*)$")
ITER = re.compile(r"(?:Iter|Epoch)\(train\)\s*(?:\[\d+\])?\[\s*(?P<iter>\d+)/(?P<total>\d+)\]\s+(?P<rest>.*)$")
PAIR = re.compile(r"(\w+): (\S+)")
SAVE = re.compile(r"Saving checkpoint at (\d+) iterations")
VALIDATION = re.compile(r"^Validation at iteration (?P<iter>\d+):\s*(?P<rest>.*)$")
EXCEPTION = re.compile(r"^(?:[\w.]+\.)?(\w*(?:Error|Exception|Interrupt)|AssertionError)(?::\s*(.*))?$")


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def strip_prefix(line: str) -> str:
    """A line without torchrun's ``[defaultN]:`` prefix and trailing newline."""
    return PREFIX.sub("", line.rstrip("\n"), count=1)


def parse_iter(line: str) -> dict[str, Any] | None:
    """One ``Iter(train)`` line as a metrics record, or None."""
    head = HEADER.match(strip_prefix(line))
    match = ITER.search(head.group("msg")) if head else None
    if not match:
        return None
    record: dict[str, Any] = {"iter": int(match.group("iter")), "total": int(match.group("total"))}
    record.update((k, _number(v)) for k, v in PAIR.findall(match.group("rest")))
    record["logged"] = head.group("ts")
    return record


def parse_validation(msg: str, logged: str) -> dict[str, Any] | None:
    """One ``Validation at iteration N: key: value ...`` message as a validation record
    (``{"iter", "split": "val", "val_loss", "val_acc", "val_items", "val_mc_items", "logged"}``), or None."""
    match = VALIDATION.match(msg)
    if not match:
        return None
    record: dict[str, Any] = {"iter": int(match.group("iter")), "split": VAL}
    record.update((k, _number(v)) for k, v in PAIR.findall(match.group("rest")))
    record["logged"] = logged
    return record


@dataclass
class LogParser:
    """Incremental state over a log: metrics and samples since the last :meth:`take`, and a summary."""

    iteration: int = 0
    total: int | None = None
    saves: list[int] = field(default_factory=list)
    error: str | None = None
    error_after_save: bool = False
    lines: int = 0
    new_metrics: list[dict[str, Any]] = field(default_factory=list)
    new_samples: list[dict[str, Any]] = field(default_factory=list)
    _sample: list[str] | None = None
    _in_traceback: bool = False

    def feed(self, lines: Iterable[str]) -> None:
        for raw in lines:
            self._line(strip_prefix(raw))

    def _end_sample(self) -> None:
        if self._sample is not None:
            text = "\n".join(self._sample).strip("\n")
            self.new_samples.append({"iter": self.iteration, "text": text})
            self._sample = None

    def _line(self, line: str) -> None:
        self.lines += 1
        head = HEADER.match(line)
        if head:
            self._end_sample()
            self._in_traceback = False
            msg = head.group("msg")
            record = parse_iter(line) or parse_validation(msg, head.group("ts"))
            if record and record.get("split") == VAL:
                self.new_metrics.append(record)
            elif record:
                self.iteration, self.total = record["iter"], record["total"]
                self.new_metrics.append(record)
            elif msg.startswith("Sample output:"):
                self._sample = [msg[len("Sample output:"):].strip()]
            elif SAVE.search(msg):
                step = int(SAVE.search(msg).group(1))
                self.iteration = max(self.iteration, step)
                self.saves.append(step)
                self.error_after_save = False
            return
        if self._sample is not None and not line.startswith("Traceback (most recent call last)"):
            self._sample.append(line)
            return
        self._end_sample()
        if line.startswith("Traceback (most recent call last)"):
            self._in_traceback = True
        exc = EXCEPTION.match(line.strip())
        if exc and (self._in_traceback or exc.group(2)):
            self.error = line.strip()
            self.error_after_save = True
        elif "ChildFailedError" in line or "command error:" in line:
            self.error = self.error or line.strip()
            self.error_after_save = True

    def flush(self) -> None:
        """Close a sample block at the end of the file."""
        self._end_sample()

    def take(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The metrics (validation records first, training records last: a follower that reports the last
        record's loss finds a training one) and samples found since the last call."""
        metrics = sorted(self.new_metrics, key=lambda r: r.get("split") != VAL)
        samples = self.new_samples
        self.new_metrics, self.new_samples = [], []
        return metrics, samples

    def summary(self) -> dict[str, Any]:
        return {"iteration": self.iteration, "total": self.total, "saves": list(self.saves), "error": self.error}

    @property
    def finished(self) -> bool:
        """The final checkpoint was saved and nothing failed after it."""
        return bool(self.total) and self.total in self.saves and not self.error_after_save


def parse_file(path: Path) -> LogParser:
    """A parser fed with a whole log file (empty when the file does not exist)."""
    parser = LogParser()
    if path.is_file():
        with open(path, encoding="utf-8", errors="replace") as handle:
            parser.feed(handle)
    parser.flush()
    return parser


def tail(path: Path, lines: int = 40) -> list[str]:
    """The last ``lines`` lines of a text file."""
    if not path.is_file():
        return []
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - 64 * 1024))
        text = handle.read().decode("utf-8", errors="replace")
    return text.splitlines()[-lines:]
