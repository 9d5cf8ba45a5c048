"""Reads an offline W&B run file (``run-*.wandb``) back: its run record and its final summary.

The file is W&B's transaction log: a 7-byte header (``:W&B``, magic, version), then LevelDB's log format
(32 KiB blocks of records, each with a 7-byte header: checksum, length, type) holding protobuf ``Record``s.
The SDK's own reader moved into its Go core, so the tests read the format themselves.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(data: bytes) -> Iterator[bytes]:
    assert data[:4] == b":W&B", "not a W&B run file"
    position, pending = 7, b""
    while position + 7 <= len(data):
        room = BLOCK - position % BLOCK
        if room < 7:  # the block's tail is padding
            position += room
            continue
        _, length, kind = struct.unpack("<IHB", data[position:position + 7])
        if kind == 0:
            position += room
            continue
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk


def _records(path: Path) -> Iterator[Any]:
    """The protobuf ``Record``s of the offline run in ``path`` (a ``run-*.wandb`` file), in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    for payload in _payloads(Path(path).read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def read_run(path: Path) -> dict[str, Any]:
    """``{"group", "job_type", "tags", "summary"}`` of the offline run in ``path`` (a ``run-*.wandb`` file)."""
    run: dict[str, Any] = {"summary": {}}
    for record in _records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(group=record.run.run_group, job_type=record.run.job_type, tags=list(record.run.tags))
        elif kind == "summary":
            for item in record.summary.update:
                run["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return run


def history_steps(path: Path, key: str) -> list[int]:
    """The steps (``trainer/global_step``) of the history rows of the offline run in ``path`` that hold ``key``."""
    steps = []
    for record in _records(path):
        if record.WhichOneof("record_type") == "history":
            row = {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            if key in row:
                steps.append(int(row["trainer/global_step"]))
    return steps
