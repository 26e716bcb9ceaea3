"""Spill files: provenance batches the queue had no room for in memory.

One sealed file per batch in the overflow directory (by default
``~/.iai-mcp/.provenance-overflow/``, shared by every store of the user)::

    prov-<store id>-<time ns>-<counter>.jsonl

Line 1 is a JSON header naming the store, line 2 ``{"sealed": base64}`` of
the JSON list ``[[record_id, entry, entry_id], ...]``. A file is written
under a temp name and renamed, so no reader sees half of one.

Spill files belong to one store. A file named for another store is left
alone; a file that cannot be parsed, or claims our name but not our store,
is quarantined as ``*.failed-<ns>.jsonl`` and never read again.
"""
from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from iai_mcp import config
from iai_mcp.types import ProvenancePair

SPILL_FORMAT = 1
SPILL_NAME = re.compile(r"^prov-(?P<store>[0-9a-f]{32})-(?P<order>\d{20}-\d{8})\.jsonl$")


class SealedFiles:
    """Files of one store in one directory whose lines the store seals
    (spill files here, journal segments in ``journal``)."""

    def __init__(
        self,
        directory: Path,
        store_id: str,
        seal: Callable[[bytes], bytes],
        open_blob: Callable[[bytes], bytes],
        log: Callable[..., None],
    ) -> None:
        self.directory = directory
        self.store_id = store_id
        self._seal = seal
        self._open_blob = open_blob
        self._log = log


class SpillDir(SealedFiles):
    """The spill files of one store in one directory."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counter = 0

    def write(self, batch: Sequence[ProvenancePair]) -> None:
        """Write one batch to its own file; raises OSError if the disk refuses."""
        self.directory.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            [[str(p.record_id), p.entry, p.entry_id] for p in batch], ensure_ascii=False
        ).encode("utf-8")
        sealed = base64.b64encode(self._seal(body)).decode("ascii")
        header = {"iai_mcp_spill": SPILL_FORMAT, "store_id": self.store_id}
        self._counter += 1
        name = f"prov-{self.store_id}-{time.time_ns():020d}-{self._counter:08d}"
        tmp = self.directory / f".{name}.tmp"
        try:
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(json.dumps(header) + "\n" + json.dumps({"sealed": sealed}) + "\n")
            # Rename last: a reader never sees half a file under a *.jsonl name.
            os.replace(tmp, self.directory / f"{name}.jsonl")
        except BaseException:
            tmp.unlink(missing_ok=True)  # a full disk must not collect half-written temps
            raise

    def read(self, path: Path) -> list[ProvenancePair]:
        """Pairs of one of our spill files; ValueError if it is not one."""
        lines = path.read_text("ascii").splitlines()
        header = json.loads(lines[0])
        if not isinstance(header, dict) or header.get("iai_mcp_spill") != SPILL_FORMAT:
            raise ValueError("not an iai-mcp spill file")
        if header.get("store_id") != self.store_id:
            # Named for us (or for nobody) but written for another store.
            raise ValueError("spill file name and header disagree about its store")
        pairs: list[ProvenancePair] = []
        for line in lines[1:]:
            blob = base64.b64decode(json.loads(line)["sealed"], validate=True)
            for record_id, entry, entry_id in json.loads(self._open_blob(blob)):
                if not isinstance(entry, dict):
                    raise ValueError("spilled entry is not an object")
                pairs.append(ProvenancePair(record_id, entry, str(entry_id)))
        return pairs

    def quarantine(self, path: Path, reason: str) -> None:
        target = path.with_name(f"{path.stem}.failed-{time.time_ns()}.jsonl")
        try:
            os.replace(path, target)
            self._log("spill_file_quarantined", file=path.name, moved_to=target.name, reason=reason)
        except FileNotFoundError:
            pass  # another queue got there first
        except OSError as exc:
            self._log("spill_file_unreadable", file=path.name, reason=reason, error=str(exc))

    def ours(self) -> list[Path]:
        """Spill files this store may read, oldest first (unknown names first,
        so that malformed strays are quarantined early)."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob("*.jsonl"):
            if ".failed-" in path.name:
                continue  # quarantined: never read again
            match = SPILL_NAME.match(path.name)
            if match and match["store"] != self.store_id:
                continue  # another store's: not ours to read or remove
            found.append((match["order"] if match else "", path.name, path))
        return [path for *_, path in sorted(found)]


def spill_state(store_id: str, spill_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What the spill directory holds: ``pending`` batches of ``store_id``
    still to replay, and ``quarantined`` files (of any store: a stray's
    owner cannot be known)."""
    directory = Path(spill_dir) if spill_dir is not None else config.overflow_dir()
    pending = quarantined = 0
    if directory.is_dir():
        for path in directory.glob("*.jsonl"):
            if ".failed-" in path.name:
                quarantined += 1
            elif (match := SPILL_NAME.match(path.name)) and match["store"] == store_id:
                pending += 1
    return {"dir": str(directory), "pending": pending, "quarantined": quarantined}
