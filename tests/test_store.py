"""MemoryStore: round trips, reopen, keys, encryption at rest, provenance log."""
from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iai_mcp.errors import EmbedderMismatch, InvalidInput, KeyUnavailable, StoreError, WrongKey
from iai_mcp.store import MemoryStore
from iai_mcp.types import EMBED_DIM, MemoryRecord, ProvenancePair


def _make(
    tier: str = "episodic",
    text: str = "hello world",
    vec: list[float] | None = None,
    detail: int = 2,
    pinned: bool = False,
    never_merge: bool = False,
    language: str = "en",
) -> MemoryRecord:
    now = datetime.now(timezone.utc)
    return MemoryRecord(
        id=uuid4(),
        tier=tier,
        literal_surface=text,
        aaak_index="",
        embedding=list(vec) if vec is not None else [0.1] * EMBED_DIM,
        community_id=None,
        centrality=0.0,
        detail_level=detail,
        pinned=pinned,
        stability=0.0,
        difficulty=0.0,
        last_reviewed=None,
        never_decay=False,
        never_merge=never_merge,
        provenance=[],
        created_at=now,
        updated_at=now,
        language=language,
    )


def _all_bytes_under(root) -> bytes:
    blobs = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(dirpath, name), "rb") as fh:
                blobs.append(fh.read())
    return b"\n".join(blobs)


# ------------------------------------------------------------------ model


def test_record_validation():
    with pytest.raises(ValueError):
        _make(tier="nonsense")
    with pytest.raises(ValueError):
        _make(language="")
    with pytest.raises(ValueError):
        _make(vec=[0.1] * 3)


# ------------------------------------------------------------- round trip


def test_insert_get_round_trip(tmp_path):
    store = MemoryStore(path=tmp_path)
    r = _make(text="Ünïcödé ✓ 日本語のテキスト 🧠 — \"quotes\" and\nnewlines")
    store.insert(r)
    got = store.get(r.id)
    assert got is not None
    assert got.literal_surface == r.literal_surface
    assert got.tier == r.tier and got.language == r.language
    assert got.created_at == r.created_at
    assert got.embedding == pytest.approx(r.embedding, rel=1e-6)
    assert got.provenance == []
    assert store.get(uuid4()) is None
    assert store.get("not-a-uuid") is None


def test_reopen_after_restart(tmp_path):
    store = MemoryStore(path=tmp_path)
    records = [_make(text=f"memory number {i}") for i in range(5)]
    for r in records:
        store.insert(r)
    store.append_provenance_batch([(records[2].id, {"ts": "t1", "cue": "c1", "session_id": "s"})])
    store.close()

    reopened = MemoryStore(path=tmp_path)
    assert len(reopened) == 5
    got = reopened.get(records[2].id)
    assert got is not None and got.literal_surface == "memory number 2"
    assert got.provenance == [{"ts": "t1", "cue": "c1", "session_id": "s"}]
    assert [row.literal_surface for row in reopened.rows()] == [r.literal_surface for r in records]


def test_duplicate_id_rejected_and_nothing_written(tmp_path):
    store = MemoryStore(path=tmp_path)
    r = _make()
    store.insert(r)
    with pytest.raises(InvalidInput):
        store.insert_many([_make(text="new one"), r])
    assert len(store) == 1
    store.close()
    with MemoryStore(path=tmp_path) as reopened:
        assert len(reopened) == 1


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(min_size=1, max_size=300), tags=st.lists(st.text(max_size=20), max_size=4))
def test_text_round_trip_property(tmp_path_factory, text, tags):
    root = tmp_path_factory.mktemp("prop")
    store = MemoryStore(path=root)
    r = _make(text=text)
    r.tags = tags
    store.insert(r)
    store.close()
    got = MemoryStore(path=root).get(r.id)
    assert got is not None and got.literal_surface == text and got.tags == tags


# ------------------------------------------------------------- provenance


def test_provenance_append_order_and_exact_entries(tmp_path):
    store = MemoryStore(path=tmp_path)
    r = _make()
    store.insert(r)
    entries = [{"ts": f"t{i}", "cue": f"ćue {i}", "session_id": "s", "extra": [i, {"n": None}]} for i in range(20)]
    store.append_provenance_batch([(r.id, e) for e in entries[:10]])
    for e in entries[10:]:
        store.append_provenance_batch([(r.id, e)])
    assert store.get(r.id).provenance == entries


def test_provenance_batch_skips_unknown_ids_and_empty_is_noop(tmp_path):
    store = MemoryStore(path=tmp_path)
    r = _make()
    store.insert(r)
    assert store.append_provenance_batch([]) == 0
    applied = store.append_provenance_batch(
        [(uuid4(), {"cue": "ghost"}), (r.id, {"cue": "real"}), ("garbage", {"cue": "x"})]
    )
    assert applied == 1
    assert store.get(r.id).provenance == [{"cue": "real"}]


def test_replayed_entry_id_applied_once(tmp_path):
    store = MemoryStore(path=tmp_path)
    r = _make()
    store.insert(r)
    pair = ProvenancePair(r.id, {"cue": "once"}, "entry-1")
    assert store.append_provenance_batch([pair]) == 1
    assert store.append_provenance_batch([pair, pair]) == 0
    assert store.get(r.id).provenance == [{"cue": "once"}]


def test_append_provenance_batch_skips_bad_entries_and_applies_the_rest(tmp_path, capfd):
    store = MemoryStore(path=tmp_path)
    r = _make()
    store.insert(r)
    added = store.append_provenance_batch(
        [(r.id, {"ts": object()}), (r.id, ["not", "a", "dict"]), ("not-a-uuid", {"cue": "x"}),
         (r.id, {"cue": "good"})]
    )
    assert added == 1
    assert store.get(r.id).provenance == [{"cue": "good"}]
    assert capfd.readouterr().err.count('"event": "provenance_skipped"') == 3


def test_provenance_does_not_add_lance_versions(tmp_path):
    store = MemoryStore(path=tmp_path)
    r = _make()
    store.insert(r)
    before = store.stats()["versions"]
    for i in range(50):
        store.append_provenance_batch([(r.id, {"cue": str(i)})])
    assert store.stats()["versions"] == before


def test_corrupt_provenance_entry_is_skipped_with_a_count_and_history_kept(tmp_path):
    import sqlite3

    store = MemoryStore(path=tmp_path)
    r = _make()
    store.insert(r)
    store.append_provenance_batch([(r.id, {"cue": "a"})])
    store.append_provenance_batch([(r.id, {"cue": "b"})])
    store.close()
    db = sqlite3.connect(tmp_path / "provenance.sqlite3")
    db.execute("UPDATE entries SET sealed = X'00112233445566778899AABBCCDDEEFF0011223344' WHERE seq = 1")
    db.commit()
    db.close()
    reopened = MemoryStore(path=tmp_path)
    # issue 13: the damaged entry is skipped and counted, the rest served (it used to fail the get).
    assert [e["cue"] for e in reopened.get(r.id).provenance] == ["b"]
    assert reopened.read_provenance(r.id) == ([{"cue": "b"}], 1)
    reopened.append_provenance_batch([(r.id, {"cue": "c"})])
    assert reopened._log.count() == 3  # nothing reset or dropped


# -------------------------------------------------------------- encryption


def test_no_plaintext_on_disk(tmp_path):
    secret_text = "the launch code is PELICAN-HARBOUR-4417"
    cue = "ZEBRA-CROSSING-CUE-991"
    store = MemoryStore(path=tmp_path)
    r = _make(text=secret_text)
    r.tags = ["TAG-UNIQUE-7731"]
    store.insert(r)
    store.append_provenance_batch([(r.id, {"ts": "t", "cue": cue, "session_id": "SESSION-XYZ-55"})])
    store.compact()
    store.close()
    data = _all_bytes_under(tmp_path)
    for needle in (secret_text, "PELICAN", cue, "TAG-UNIQUE-7731", "SESSION-XYZ-55"):
        assert needle.encode() not in data
        assert needle.encode("utf-16-le") not in data


def test_key_file_mode_0600(tmp_path):
    MemoryStore(path=tmp_path)
    mode = stat.S_IMODE((tmp_path / "key").stat().st_mode)
    assert mode == 0o600


def test_wrong_key_is_clear_error_and_changes_nothing(tmp_path):
    store = MemoryStore(path=tmp_path)
    store.insert(_make(text="keep me"))
    store.close()
    key_path = tmp_path / "key"
    original = key_path.read_bytes()
    import base64

    key_path.write_text(base64.b64encode(os.urandom(32)).decode())
    snapshot = _all_bytes_under(tmp_path)
    with pytest.raises(WrongKey, match="does not open"):
        MemoryStore(path=tmp_path)
    assert _all_bytes_under(tmp_path) == snapshot
    key_path.write_bytes(original)
    assert len(MemoryStore(path=tmp_path)) == 1


def test_missing_key_never_creates_new_one(tmp_path):
    store = MemoryStore(path=tmp_path)
    store.insert(_make())
    store.close()
    (tmp_path / "key").unlink()
    with pytest.raises(KeyUnavailable, match="missing"):
        MemoryStore(path=tmp_path)
    assert not (tmp_path / "key").exists()


def test_missing_meta_refuses_to_reinitialise(tmp_path):
    store = MemoryStore(path=tmp_path)
    store.insert(_make())
    store.close()
    (tmp_path / "meta.json").unlink()
    with pytest.raises(StoreError, match="refusing"):
        MemoryStore(path=tmp_path)


def test_passphrase_store(tmp_path, monkeypatch):
    monkeypatch.setenv("IAI_MCP_CRYPTO_PASSPHRASE", "correct horse battery staple")
    store = MemoryStore(path=tmp_path)
    store.insert(_make(text="by passphrase"))
    store.close()
    assert not (tmp_path / "key").exists()
    with MemoryStore(path=tmp_path) as reopened:
        assert len(reopened) == 1
    monkeypatch.setenv("IAI_MCP_CRYPTO_PASSPHRASE", "wrong")
    with pytest.raises(WrongKey):
        MemoryStore(path=tmp_path)
    monkeypatch.delenv("IAI_MCP_CRYPTO_PASSPHRASE")
    with pytest.raises(KeyUnavailable, match="IAI_MCP_CRYPTO_PASSPHRASE"):
        MemoryStore(path=tmp_path)


def test_the_store_gets_the_passphrase_as_key_settings_not_the_environment(tmp_path, monkeypatch):
    """config reads IAI_MCP_CRYPTO_PASSPHRASE once; the store's key code sees
    only KeySettings, whose repr never shows the secret."""
    from iai_mcp import config
    from iai_mcp.store import meta

    settings = config.KeySettings(passphrase="hunter2 but longer")
    assert "hunter2" not in repr(settings)
    created, _ = meta.open_meta(tmp_path, settings)  # no environment variable set
    assert created["key_source"]["kind"] == "passphrase"
    assert not (tmp_path / "key").exists()
    with pytest.raises(KeyUnavailable, match="IAI_MCP_CRYPTO_PASSPHRASE"):
        meta.open_meta(tmp_path, config.KeySettings())
    monkeypatch.setenv("IAI_MCP_CRYPTO_PASSPHRASE", "hunter2 but longer")
    assert config.key_settings() == settings
    with MemoryStore(path=tmp_path) as reopened:  # MemoryStore(path=...) still reads it
        assert reopened.store_id == created["store_id"]
    monkeypatch.setenv("IAI_MCP_CRYPTO_PASSPHRASE", "")
    assert config.key_settings().passphrase is None


def test_meta_is_written_atomically_and_a_killed_writers_temp_is_repaired(tmp_path):
    """meta.json goes through fs.write_atomic (owner-only, no temp left); a
    temp a killed writer left under fs's name is what repair moves aside."""
    from iai_mcp import fs
    from iai_mcp.core.repair import repair

    root = tmp_path / "s"
    MemoryStore(path=root).close()
    assert stat.S_IMODE((root / "meta.json").stat().st_mode) == 0o600
    assert list(fs.stray_temps(root)) == []
    stray = fs.temp_path(root / "meta.json")
    stray.write_text("{half a meta")
    assert any("would move stray temp file" in line and stray.name in line
               for line in repair(root, apply=False))
    repair(root, apply=True)
    assert not stray.exists() and list(fs.stray_temps(root)) == []


def test_a_second_opener_is_told_who_holds_the_store(tmp_path):
    from iai_mcp.errors import StoreLocked

    with MemoryStore(path=tmp_path):
        with pytest.raises(StoreLocked, match=f"process {os.getpid()}") as refused:
            MemoryStore(path=tmp_path)
        assert refused.value.holder_pid == os.getpid()
    MemoryStore(path=tmp_path).close()  # closing released it


def test_keyring_used_when_available(tmp_path, monkeypatch):
    import keyring
    from keyring.backend import KeyringBackend

    class MemoryKeyring(KeyringBackend):
        priority = 1
        secrets: dict = {}

        def get_password(self, service, username):
            return self.secrets.get((service, username))

        def set_password(self, service, username, password):
            self.secrets[(service, username)] = password

        def delete_password(self, service, username):
            self.secrets.pop((service, username), None)

    keyring.set_keyring(MemoryKeyring())
    store = MemoryStore(path=tmp_path)
    store.insert(_make(text="kept by keyring"))
    store.close()
    assert not (tmp_path / "key").exists()
    assert json.loads((tmp_path / "meta.json").read_text())["key_source"]["kind"] == "keyring"
    with MemoryStore(path=tmp_path) as reopened:
        assert len(reopened) == 1
    MemoryKeyring.secrets.clear()
    with pytest.raises(KeyUnavailable, match="keyring"):
        MemoryStore(path=tmp_path)


def test_tampered_record_is_reported_not_dropped(tmp_path):
    store = MemoryStore(path=tmp_path)
    good, bad = _make(text="good"), _make(text="bad")
    store.insert(good)
    store.insert(bad)
    # Swap the sealed payloads between rows: each fails its row-bound AAD.
    import lancedb

    table = lancedb.connect(str(tmp_path)).open_table("records")
    rows = table.to_arrow().to_pylist()
    by_id = {r["id"]: r for r in rows}
    forged = dict(by_id[str(bad.id)], payload=by_id[str(good.id)]["payload"])
    table.merge_insert("id").when_matched_update_all().execute([forged])
    store.close()
    reopened = MemoryStore(path=tmp_path)
    assert len(reopened) == 1 and reopened.get(good.id) is not None
    assert len(reopened.load_problems) == 1 and str(bad.id) in reopened.load_problems[0]
    assert table.count_rows() == 2  # the unreadable row is still there


# ----------------------------------------------------------- embedder ID


def test_embedder_identity_recorded_and_mismatch_refused(tmp_path, fake_embedder):
    store = MemoryStore(path=tmp_path, embedder=fake_embedder)
    store.close()

    class Other:
        name = "some-other-model"
        dim = EMBED_DIM

    with pytest.raises(EmbedderMismatch, match="hash-embedder"):
        MemoryStore(path=tmp_path, embedder=Other())
    assert MemoryStore(path=tmp_path, embedder=fake_embedder).embedder_name == fake_embedder.name


# ---------------------------------------------------------------- compaction


def test_compaction_bounds_versions(tmp_path):
    store = MemoryStore(path=tmp_path, compact_every=0)
    records = [_make(text=f"r{i}") for i in range(30)]
    for r in records:
        store.insert(r)
    assert store.stats()["versions"] >= 30
    result = store.compact()
    assert result["versions_after"] <= 2
    assert result["fragments_after"] == 1
    store.close()
    with MemoryStore(path=tmp_path) as reopened:
        assert len(reopened) == 30


def test_update_changes_fields_and_survives_reopen(tmp_path):
    store = MemoryStore(path=tmp_path)
    r = _make()
    store.insert(r)
    store.update(r.id, pinned=True, tags=["x"])
    store.close()
    got = MemoryStore(path=tmp_path).get(r.id)
    assert got.pinned is True and got.tags == ["x"]


def test_key_without_meta_is_a_clear_error_not_a_second_key(tmp_path):
    MemoryStore(path=tmp_path).close()
    (tmp_path / "meta.json").unlink()
    key = (tmp_path / "key").read_bytes()
    with pytest.raises(StoreError, match="key file but no meta.json"):
        MemoryStore(path=tmp_path)
    assert (tmp_path / "key").read_bytes() == key


def test_log_failure_after_records_commit_never_duplicates_ids(tmp_path, monkeypatch, capsys):
    """The log failing after the records committed (a full disk): the insert
    stands and is not reported as failed (issue 13: a retry would reinforce
    it); one line says its provenance was not recorded (no queue here)."""
    store = MemoryStore(path=tmp_path)
    r = _make()
    r.provenance = [{"cue": "at capture"}]

    def broken(rows):
        raise OSError("log disk full")

    monkeypatch.setattr(store._log, "append", broken)
    store.insert(r)
    assert '"event": "provenance_deferred"' in capsys.readouterr().err
    monkeypatch.undo()
    assert store.get(r.id) is not None  # memory shows what was committed
    with pytest.raises(InvalidInput, match="already in the store"):
        store.insert(r)
    store.close()
    assert [row.id for row in MemoryStore(path=tmp_path).rows()] == [r.id]
