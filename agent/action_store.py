"""actions.db in the state directory: what technicians did that the agent must remember.

- acknowledgements: the latest one per (device, fault type), for the status page
  ("acknowledged by X at T: note");
- pending lamp switch-backs: a lamp test's "back to schedule" write that is still due, so a
  restart of the agent does not leave a lamp burning at 100 %.

The actions themselves go to central through the uplink's outbox; this file is only the gateway's
own memory of them. Blocking calls: GatewayActions runs them on its own worker thread.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import AwareDatetime, BaseModel, ConfigDict

from agent.sqlite_files import open_sqlite

FILE_NAME = "actions.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS ack (
    device_id TEXT NOT NULL,
    fault_type TEXT NOT NULL,
    ack TEXT NOT NULL,
    PRIMARY KEY (device_id, fault_type)
);
CREATE TABLE IF NOT EXISTS lamp_restore (
    device_id TEXT PRIMARY KEY,
    restore TEXT NOT NULL
);
"""


class Acknowledgement(BaseModel):
    model_config = ConfigDict(frozen=True)

    device_id: str
    fault_type: str
    by: str
    at: AwareDatetime
    note: str = ""


class PendingRestore(BaseModel):
    """A lamp test's switch-back: write `value` to `write` at `due`."""

    model_config = ConfigDict(frozen=True)

    device_id: str
    write: str
    value: float
    due: AwareDatetime
    by: str


class ActionStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = open_sqlite(path, SCHEMA, synchronous="FULL")

    def close(self) -> None:
        self._conn.close()

    def acks(self) -> list[Acknowledgement]:
        rows = self._conn.execute("SELECT ack FROM ack ORDER BY device_id, fault_type")
        return [Acknowledgement.model_validate_json(text) for (text,) in rows]

    def put_ack(self, ack: Acknowledgement) -> None:
        self._conn.execute(
            "INSERT INTO ack VALUES (?, ?, ?) ON CONFLICT(device_id, fault_type)"
            " DO UPDATE SET ack=excluded.ack",
            (ack.device_id, ack.fault_type, ack.model_dump_json()),
        )

    def restores(self) -> list[PendingRestore]:
        rows = self._conn.execute("SELECT restore FROM lamp_restore ORDER BY device_id")
        return [PendingRestore.model_validate_json(text) for (text,) in rows]

    def put_restore(self, restore: PendingRestore) -> None:
        self._conn.execute(
            "INSERT INTO lamp_restore VALUES (?, ?) ON CONFLICT(device_id)"
            " DO UPDATE SET restore=excluded.restore",
            (restore.device_id, restore.model_dump_json()),
        )

    def delete_restore(self, device_id: str) -> None:
        self._conn.execute("DELETE FROM lamp_restore WHERE device_id = ?", (device_id,))
