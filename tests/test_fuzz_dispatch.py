"""Bad input through core.dispatch: a typed error or a correct result, never a crash.

Every method in ``core.METHODS`` (including ones added after this file was
written) gets random, huge, empty, wrongly typed and unicode-heavy params,
ids that do not exist and injection strings. Each call must either return a
JSON-ready dict or raise an ``IaiError`` subclass; after an error the store
must be exactly as it was (rows, provenance log, LanceDB versions).
"""
from __future__ import annotations

import dataclasses
import json
import math
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, assume, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from iai_mcp import core
from iai_mcp.core import dispatch
from iai_mcp.core.limits import (
    MAX_BUDGET_TOKENS,
    MAX_CUE_CHARS,
    MAX_ID_CHARS,
    MAX_K,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TEXT_CHARS,
)
from iai_mcp.errors import IaiError, InvalidInput, LimitExceeded, NotFound, UnknownMethod
from iai_mcp.core.redact import redact
from iai_mcp.types import EMBED_DIM, ROLES, TIERS

FUZZ = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one seeded store per test, shared by its examples
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)

INJECTIONS = [
    "' OR 1=1 --",
    "id = 'x'",
    "'); DROP TABLE records; --",
    "\" OR \"\"=\"",
    "1; DELETE FROM entries",
    "records WHERE true",
    "id != '' OR seq > -1",
    "id IN (SELECT id FROM records)",
    "\x00",
    "a\x00b",
    "../../etc/passwd",
    "..\\..\\windows\\system32\\config",
    "%00../../../etc/shadow",
    "$where: 1",
    '{"$gt": ""}',
    "*",
    "%",
    "_",
    "\u202eevil\u202c",
    "\ufeffbom",
    "\ud800",
    "lone \udfff surrogate",
    "🧠" * 30,
    "Z\u0351\u0352\u0357\u035b" * 20,
    "NULL",
    "None",
    "",
    "   ",
    "\n\t\r",
]

#: Stands for "an id of a record in the store"; swapped in before the call.
EXISTING_ID = "<existing-id>"

huge_texts = st.sampled_from([
    MAX_ID_CHARS, MAX_ID_CHARS + 1, MAX_CUE_CHARS, MAX_CUE_CHARS + 1, MAX_TEXT_CHARS, MAX_TEXT_CHARS + 1,
]).map(lambda n: ("word " * (n // 5 + 1))[:n])
texts = st.one_of(
    st.text(max_size=80),
    st.text(st.characters(codec="utf-8"), max_size=40),
    st.sampled_from(INJECTIONS),
    st.text("abc ", min_size=1, max_size=20),
    huge_texts,
)
ints = st.one_of(
    st.integers(min_value=-3, max_value=MAX_K + 2),
    st.sampled_from([0, 1, MAX_K, MAX_K + 1, MAX_BUDGET_TOKENS, MAX_BUDGET_TOKENS + 1, 2**63, -(2**63), 10**400]),
    st.integers(),
)
floats = st.floats(allow_nan=True, allow_infinity=True)
scalars = st.one_of(st.none(), st.booleans(), ints, floats, texts, st.binary(max_size=16))
any_value = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=5),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=8), inner, max_size=4),
    ),
    max_leaves=12,
)
id_values = st.one_of(
    st.just(EXISTING_ID),
    st.uuids().map(str),
    st.sampled_from(["00000000-0000-0000-0000-000000000000", str(UUID(int=2**128 - 1))]),
    st.uuids().map(lambda u: u.hex.upper()),
    st.uuids().map(lambda u: "{" + str(u) + "}"),
    texts,
)
times = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.sampled_from(["2024-01-01T00:00:00Z", "yesterday", "2024-13-01", "0001-01-01T00:00:00+14:00",
                     "9999-12-31T23:59:59-12:00", "2024-02-30T00:00:00"]),
    texts,
)
vectors = st.one_of(
    st.lists(st.floats(-10, 10, width=32), min_size=EMBED_DIM, max_size=EMBED_DIM),
    st.lists(floats, min_size=EMBED_DIM, max_size=EMBED_DIM),
    st.sampled_from([[1e39] * EMBED_DIM, [10**400] * EMBED_DIM, [True] * EMBED_DIM, [0] * EMBED_DIM]),
    st.lists(st.floats(-1, 1), max_size=8),
)
tag_lists = st.one_of(
    st.lists(st.sampled_from(["work", "home", "' OR 1=1 --", "../../etc/passwd"]), max_size=3),
    st.lists(texts, max_size=4),
    st.just(["t"] * MAX_TAGS), st.just(["t"] * (MAX_TAGS + 1)),
    st.just(["x" * MAX_TAG_CHARS]), st.just(["x" * (MAX_TAG_CHARS + 1)]),
)

SECRET_TEXTS = [
    "deploy with AKIAIOSFODNN7EXAMPLE today",
    "db password=hunter2 on staging",
    "token: ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 for CI",
]


def _clean(value: str) -> bool:
    return "\x00" not in value and bool(value.strip())


clean_texts = st.one_of(
    st.text(min_size=1, max_size=80).filter(_clean),
    st.sampled_from([t for t in INJECTIONS if _clean(t) and t.isprintable()] + SECRET_TEXTS),
    st.text("abc ", min_size=1, max_size=20).filter(_clean),
)
provenance_values = st.one_of(
    st.text(max_size=20), st.integers(-5, 5), st.sampled_from([float("nan"), float("inf"), 0.5, None, True])
)
provenance_lists = st.lists(
    st.dictionaries(st.sampled_from(["ts", "cue", "session_id", "score"]), provenance_values, max_size=3),
    max_size=3,
)
capture_records = st.fixed_dictionaries(
    {"text": clean_texts},
    optional={
        "session_id": texts, "tags": tag_lists, "provenance": provenance_lists | any_value,
        "id": id_values, "ts": times,
    },
)

#: Values a method accepts, per parameter name.
VALID: dict[str, st.SearchStrategy[Any]] = {
    "text": clean_texts,
    "cue": clean_texts,
    "session_id": st.text(max_size=40).filter(lambda s: "\x00" not in s) | st.sampled_from(INJECTIONS[:8]),
    "language": st.sampled_from(["en", "de", "pt-BR", "x" * 32]),
    "role": st.sampled_from(sorted(ROLES)),
    "tier": st.sampled_from(sorted(TIERS)),
    "tags": st.lists(st.sampled_from(["work", "home", "' OR 1=1 --", "../../etc/passwd"]), max_size=3),
    "ts": st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    "pinned": st.booleans(),
    "dry_run": st.booleans(),
    "k": st.integers(1, MAX_K),
    "budget_tokens": st.integers(1, MAX_BUDGET_TOKENS),
    "offset": st.integers(0, 20),
    "limit": st.integers(1, 50),
    "id": st.just(EXISTING_ID) | st.uuids().map(str),
    "cue_embedding": st.lists(st.floats(-10, 10, width=32), min_size=EMBED_DIM, max_size=EMBED_DIM),
    "records": st.lists(capture_records, max_size=3),
}
VALID["since"] = VALID["until"] = VALID["ts"]
# issue 9: correcting and browsing
VALID["supersedes"] = st.lists(st.just(EXISTING_ID) | st.uuids().map(str), max_size=2)
VALID["include_superseded"] = st.booleans()
VALID["state"] = st.sampled_from(["active", "hidden", "superseded", "all"])
VALID["order"] = st.sampled_from(["newest", "oldest", "most_recalled"])
VALID["tags_any"] = VALID["tags"]
VALID["cursor"] = st.none() | st.text(max_size=40)

#: Plausible-but-often-wrong values, so random calls reach deep checks.
LIKELY: dict[str, st.SearchStrategy[Any]] = {
    "text": texts, "cue": texts, "session_id": texts, "language": st.sampled_from(["", " ", "x" * 33]),
    "role": st.sampled_from(["wizard", "USER", ""]), "tier": st.sampled_from(["cosmic", "Semantic"]),
    "tags": tag_lists, "ts": times, "since": times, "until": times,
    "k": ints, "budget_tokens": ints, "offset": ints, "limit": ints,
    "id": id_values, "cue_embedding": vectors,
    "records": st.lists(capture_records | any_value, max_size=4),
}

#: Parameters of the methods this file knows; a method added later is
#: fuzzed with every name here (and must still give a typed error or a result).
METHOD_PARAMS: dict[str, tuple[list[str], list[str]]] = {  # method: (required, optional)
    "memory_capture": (["text"], ["session_id", "role", "cue", "tier", "tags", "ts", "pinned", "language",
                                  "supersedes"]),
    "memory_recall": (["cue"], ["session_id", "cue_embedding", "k", "budget_tokens", "tier", "tags",
                                "since", "until", "include_superseded"]),
    "memory_get": (["id"], []),
    "memory_export": ([], ["offset", "limit"]),
    "memory_import": (["records"], ["dry_run"]),
    "session_start": ([], ["session_id", "budget_tokens"]),
    "memory_stats": ([], []),
    "memory_compact": ([], []),
    "warmup": ([], []),
    "memory_list": ([], ["state", "tier", "tags", "tags_any", "session_id", "since", "until", "pinned",
                         "order", "limit", "cursor"]),
    "memory_tags": ([], []),
}
PARAM_NAMES = sorted(VALID) + ["path", "query", "filter", "where", "' OR 1=1 --", ""]


def junk_for(name: str) -> st.SearchStrategy[Any]:
    likely = LIKELY.get(name)
    return any_value if likely is None else st.one_of(likely, any_value)


@st.composite
def call_params(draw, method: str) -> Any:
    """Valid params for ``method``, then up to two mutations: a wrong value,
    a dropped parameter or an unknown one. Sometimes not an object at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(any_value)
    if method in METHOD_PARAMS:
        required, optional = METHOD_PARAMS[method]
    else:
        required, optional = [], draw(st.lists(st.sampled_from(PARAM_NAMES), max_size=3, unique=True))
    params = {name: draw(VALID.get(name, any_value), label=name) for name in required}
    for name in optional:
        if draw(st.booleans()):
            params[name] = draw(VALID.get(name, any_value), label=name)
    for _ in range(draw(st.integers(0, 2))):
        how = draw(st.sampled_from(["wrong", "wrong", "drop", "unknown"]))
        names = required + optional
        if how == "wrong" and names:
            name = draw(st.sampled_from(names))
            params[name] = draw(junk_for(name), label=f"wrong {name}")
        elif how == "drop" and params:
            del params[draw(st.sampled_from(sorted(params)))]
        elif how == "unknown":
            params[draw(st.sampled_from(["bogus", "' OR 1=1 --", "", "__class__"]))] = draw(any_value)
    return params


# ---------------------------------------------------------------- harness


def snapshot(store) -> tuple[Any, ...]:
    return (
        len(store),
        store._log.count(),
        store.stats()["versions"],
        [dataclasses.astuple(row) for row in store.rows()],
    )


def resolve(value: Any, ids: list[str], pick: int) -> Any:
    if isinstance(value, str) and value == EXISTING_ID:
        return ids[pick % len(ids)]
    if isinstance(value, dict):
        return {k: resolve(v, ids, pick) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ids, pick) for v in value]
    return value


def _outcome(method: Any, what: str) -> None:
    # Shown by --hypothesis-show-statistics: how often each method succeeded.
    if currently_in_test_context():
        known = isinstance(method, str) and method in core.METHODS
        event(f"{method if known else '(unknown method)'}: {what}")


def call(store, method: Any, params: Any) -> dict[str, Any] | IaiError:
    """The call's result, or the IaiError it raised after checking nothing changed.
    Any other exception propagates and fails the test."""
    before = snapshot(store)
    try:
        result = dispatch(store, method, params)
    except IaiError as exc:
        _outcome(method, type(exc).__name__)
        assert str(exc), f"{type(exc).__name__} without a message"
        assert snapshot(store) == before, f"{method} raised {exc!r} but changed the store"
        return exc
    _outcome(method, "ok")
    assert isinstance(result, dict)
    json.dumps(result, allow_nan=False)  # JSON-RPC cannot carry NaN or non-JSON types
    return result


def is_clean_text(value: Any, limit: int) -> bool:
    if not isinstance(value, str) or "\x00" in value or not value.strip() or len(value) > limit:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


SEED_TEXTS = [
    "Alice adopted a beagle named Max",
    "The quarterly report is due Friday",
    "id = 'x' is how you would write a filter",
    "../../etc/passwd is a classic traversal",
]


@pytest.fixture
def seeded(store, tmp_path, monkeypatch):
    # Nothing should treat a value as a path; if something did, it lands here.
    deep = tmp_path / "cwd" / "a" / "b" / "c" / "d"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    ids = [
        dispatch(store, "memory_capture", {"text": t, "tags": ["work"], "session_id": "seed"})["record_id"]
        for t in SEED_TEXTS
    ]
    return store, ids


# ------------------------------------------------------------ method tests


@settings(FUZZ, max_examples=120)
@given(params=call_params("memory_capture"), pick=st.integers(0, 10))
def test_fuzz_memory_capture(seeded, params, pick):
    store, ids = seeded
    params = resolve(params, ids, pick)
    before = len(store)
    out = call(store, "memory_capture", params)
    if isinstance(out, IaiError):
        if not isinstance(params, dict) or params.get("text") is None:
            assert isinstance(out, InvalidInput)
        return
    text, cue = params["text"], params.get("cue")
    assert is_clean_text(text, MAX_TEXT_CHARS)
    assert out["status"] in {"inserted", "reinforced", "skipped"}
    assert len(store) == before + (out["status"] == "inserted")
    row = store.row(UUID(out["record_id"]))
    assert row is not None and row.literal_surface == redact(text).text
    expected = redact(text).kinds + (redact(cue).kinds if cue else ())
    assert out["redacted"] == list(expected)
    if out["status"] == "inserted":
        assert row.session_id == params.get("session_id")
        assert row.tags == list(dict.fromkeys(params.get("tags") or []))


@settings(FUZZ, max_examples=120)
@given(
    params=call_params("memory_recall"),
    pick=st.integers(0, 10),
)
def test_fuzz_memory_recall(seeded, params, pick):
    store, ids = seeded
    params = resolve(params, ids, pick)
    log_before = store._log.count()
    out = call(store, "memory_recall", params)
    if isinstance(out, IaiError):
        return
    hits = out["hits"]
    assert out["anti_hits"] == []
    k = params.get("k")
    budget = params.get("budget_tokens")
    assert len(hits) <= (10 if k is None else k)
    budget = 1500 if budget is None else budget
    assert out["budget_used"] <= budget  # issue 10: no exception for the first hit
    scores = [hit["score"] for hit in hits]
    assert scores == sorted(scores, reverse=True) and all(math.isfinite(s) for s in scores)
    for hit in hits:
        row = store.row(UUID(hit["record_id"]))
        span = hit["excerpt"]  # issue 10: an oversized hit is a window of the text
        assert row is not None and hit["literal_surface"] == (
            row.literal_surface if span is None else row.literal_surface[span["start"]:span["end"]]
        )
        if params.get("tier"):
            assert row.tier == params["tier"]
        assert set(params.get("tags") or []) <= set(row.tags)
    # The store has no provenance queue: each hit's entry is written before return.
    assert store._log.count() == log_before + len(hits)


@settings(FUZZ, max_examples=80)
@given(params=call_params("memory_get"), pick=st.integers(0, 10))
def test_fuzz_memory_get(seeded, params, pick):
    store, ids = seeded
    params = resolve(params, ids, pick)
    out = call(store, "memory_get", params)
    if isinstance(out, IaiError):
        if isinstance(params, dict) and set(params) == {"id"} and isinstance(params["id"], str):
            try:
                rid = UUID(params["id"])
            except ValueError:
                return
            if "\x00" not in params["id"] and store.row(rid) is None:
                assert isinstance(out, NotFound)
        return
    row = store.row(UUID(out["record_id"]))
    assert row is not None and out["literal_surface"] == row.literal_surface
    assert str(row.id) in ids


@settings(FUZZ, max_examples=150)
@given(
    method=st.sampled_from(sorted(core.METHODS)),
    data=st.data(),
    pick=st.integers(0, 10),
)
def test_fuzz_every_method(seeded, method, data, pick):
    """Generic checks for every method, including ones added later."""
    store, ids = seeded
    params = data.draw(call_params(method), label="params")
    call(store, method, resolve(params, ids, pick))


@settings(FUZZ, max_examples=60)
@given(method=st.one_of(texts, any_value), params=any_value)
def test_fuzz_unknown_methods(seeded, method, params):
    store, _ = seeded
    assume(not (isinstance(method, str) and method in core.METHODS))
    out = call(store, method, params)
    assert isinstance(out, UnknownMethod)


@settings(FUZZ, max_examples=60)
@given(records=st.lists(
    st.fixed_dictionaries({"text": clean_texts},
                          optional={"provenance": provenance_lists, "session_id": VALID["session_id"]}),
    min_size=1, max_size=3,
))
def test_fuzz_import_then_export_stays_json(seeded, records):
    """What an import accepts must come back out of export as valid JSON."""
    store, _ = seeded
    out = call(store, "memory_import", {"records": records})
    if isinstance(out, IaiError):
        return
    page = call(store, "memory_export", {"offset": 0, "limit": 1000})
    assert not isinstance(page, IaiError) and page["next_offset"] is None
    exported = {r["id"]: r["text"] for r in page["records"]}
    assert [exported[rid] for rid in out["record_ids"]] == [redact(r["text"]).text for r in records]


# Wrong values per parameter; the rest of the call is valid.
WRONG: dict[str, st.SearchStrategy[Any]] = {
    "text": st.one_of(st.integers(), st.lists(st.text()), st.booleans(), st.binary(), st.just(""),
                      st.just("   "), st.just("a\x00b"), st.just("\ud800")),
    "session_id": st.one_of(st.integers(), st.lists(st.text(), min_size=1), st.just("x\x00"),
                            st.just("x" * (MAX_ID_CHARS + 1))),
    "role": st.text(max_size=10).filter(lambda s: s not in ROLES) | st.integers(),
    "tier": st.text(max_size=10).filter(lambda s: s not in TIERS) | st.integers(),
    "tags": st.one_of(st.text(min_size=1), st.lists(st.integers(), min_size=1), st.just([""]), st.just(["\x00"]),
                      st.dictionaries(st.text(), st.text(), min_size=1)),
    "ts": st.text(max_size=20).filter(lambda s: not _iso(s)) | st.integers() | st.floats(),
    "pinned": st.one_of(st.integers(), st.text(), st.just("true")),
    "language": st.one_of(st.just(""), st.just(" "), st.integers(), st.just("x" * 33)),
    "cue": st.one_of(st.integers(), st.lists(st.text()), st.just("x" * (MAX_CUE_CHARS + 1))),
    "k": st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_K + 1), st.booleans(),
                   st.floats(), st.text(), st.just("5")),
    "budget_tokens": st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_BUDGET_TOKENS + 1),
                               st.floats(), st.booleans()),
    "cue_embedding": st.one_of(
        st.lists(st.floats(-1, 1), max_size=EMBED_DIM - 1),
        st.just([float("nan")] * EMBED_DIM), st.just([float("inf")] * EMBED_DIM),
        st.just([10**400] * EMBED_DIM), st.just([1e39] * EMBED_DIM), st.just(["0.1"] * EMBED_DIM),
        st.just([None] * EMBED_DIM), st.text(),
    ),
}


def _iso(value: str) -> bool:
    from datetime import datetime

    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


@settings(FUZZ, max_examples=100)
@given(
    case=st.sampled_from([
        ("memory_capture", {"text": "a valid memory", "session_id": "s"}, name)
        for name in ["text", "session_id", "role", "tier", "tags", "ts", "pinned", "language", "cue"]
    ] + [
        ("memory_recall", {"cue": "beagle"}, name)
        for name in ["cue", "k", "budget_tokens", "tier", "tags", "ts", "cue_embedding", "session_id"]
    ]),
    data=st.data(),
)
def test_one_wrong_parameter_is_a_typed_error_and_changes_nothing(seeded, case, data):
    store, _ = seeded
    method, base, name = case
    if method == "memory_recall" and name == "ts":
        name = "since"
    bad = data.draw(WRONG["ts" if name == "since" else name], label=name)
    out = call(store, method, {**base, name: bad})
    assert isinstance(out, InvalidInput), f"{name}={bad!r:.60} gave {out!r:.200}"


# ------------------------------------------------------ limits and filters


def test_limits_at_the_boundary(seeded):
    store, _ = seeded

    def ok(method, params):
        out = call(store, method, params)
        assert not isinstance(out, IaiError), out
        return out

    def too_big(method, params):
        assert isinstance(call(store, method, params), LimitExceeded)

    ok("memory_capture", {"text": "a" * MAX_TEXT_CHARS})
    too_big("memory_capture", {"text": "b" * (MAX_TEXT_CHARS + 1)})
    ok("memory_capture", {"text": "cue at max", "cue": "c" * MAX_CUE_CHARS})
    too_big("memory_capture", {"text": "cue past max", "cue": "c" * (MAX_CUE_CHARS + 1)})
    ok("memory_capture", {"text": "id at max", "session_id": "s" * MAX_ID_CHARS})
    too_big("memory_capture", {"text": "id past max", "session_id": "s" * (MAX_ID_CHARS + 1)})
    ok("memory_capture", {"text": "tags at max", "tags": [f"t{i}" for i in range(MAX_TAGS)]})
    too_big("memory_capture", {"text": "tags past max", "tags": [f"t{i}" for i in range(MAX_TAGS + 1)]})
    ok("memory_capture", {"text": "tag at max", "tags": ["t" * MAX_TAG_CHARS]})
    out = call(store, "memory_capture", {"text": "tag past max", "tags": ["t" * (MAX_TAG_CHARS + 1)]})
    assert isinstance(out, InvalidInput)
    ok("memory_recall", {"cue": "q" * MAX_CUE_CHARS})
    too_big("memory_recall", {"cue": "q" * (MAX_CUE_CHARS + 1)})
    everything = ok("memory_recall", {"cue": "memory", "k": MAX_K, "budget_tokens": MAX_BUDGET_TOKENS})
    assert len(everything["hits"]) == len(store)
    too_big("memory_recall", {"cue": "memory", "k": MAX_K + 1})
    too_big("memory_recall", {"cue": "memory", "budget_tokens": MAX_BUDGET_TOKENS + 1})


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_strings_are_data_not_filters(seeded, value):
    store, ids = seeded
    n = len(store)
    # As a tag filter: matches only records carrying exactly that tag (none do).
    out = call(store, "memory_recall", {"cue": "beagle report filter", "tags": [value]})
    if not isinstance(out, IaiError):
        assert out["hits"] == []
    # As an id: never a record.
    assert isinstance(call(store, "memory_get", {"id": value}), InvalidInput)
    # As a session id / tag / text: stored verbatim, as data.
    out = call(store, "memory_capture", {"text": f"note {uuid4()}", "session_id": value, "tags": [value]})
    clean = value.strip() and "\x00" not in value and is_clean_text(value, MAX_TAG_CHARS)
    if not clean:
        assert isinstance(out, InvalidInput) and len(store) == n
        return
    got = call(store, "memory_get", {"id": out["record_id"]})
    assert got["session_id"] == value and got["tags"] == [value]
    assert len(store) == n + 1
    assert not any(p.name in {"passwd", "shadow", "system32"} for p in store.root.rglob("*"))


def test_nonexistent_ids(seeded):
    store, _ = seeded
    for rid in ["00000000-0000-0000-0000-000000000000", str(uuid4()), str(uuid4()).upper(), uuid4().hex]:
        assert isinstance(call(store, "memory_get", {"id": rid}), NotFound)


# ------------------------------------------------------- MCP tools in-process


def _json_safe(value: Any) -> Any:
    """What a JSON-RPC client can actually send: the same junk, as JSON."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(_json_safe(k)): _json_safe(v) for k, v in value.items()}
    return value


class _StoreBackend:
    def __init__(self, store) -> None:
        self.store = store

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return dispatch(self.store, method, params or {})

    def close(self) -> None:
        pass  # the fixture owns the store


@settings(FUZZ, max_examples=40)
@given(data=st.data())
def test_fuzz_mcp_tools_in_process(seeded, data):
    """Random arguments to every MCP tool: a tool error that names an IaiError
    (never an internal error) and leaves the store as it was, or a result."""
    from datetime import timedelta

    import anyio
    from mcp.shared.memory import create_connected_server_and_client_session

    from iai_mcp import mcp_server as server

    store, ids = seeded
    mcp_server, _ = server.build_server(lambda: _StoreBackend(store))

    def plan(tool_names: list[str]) -> list[tuple[str, dict[str, Any]]]:
        calls = data.draw(st.lists(st.sampled_from(tool_names), min_size=1, max_size=5), label="tools")
        planned = [
            (name, _json_safe(resolve(data.draw(call_params(name), label=name), ids, i)))
            for i, name in enumerate(calls)
        ]
        return [(name, args if isinstance(args, dict) else {"args": args}) for name, args in planned]

    async def scenario() -> None:
        async with create_connected_server_and_client_session(
            mcp_server, read_timeout_seconds=timedelta(seconds=30)
        ) as client:
            planned = plan(sorted(t.name for t in (await client.list_tools()).tools))
            for name, args in planned:
                before = snapshot(store)
                result = await client.call_tool(name, args)
                if result.isError:
                    message = result.content[0].text
                    assert message and "internal error" not in message, f"{name}({args!r:.200}): {message}"
                    assert snapshot(store) == before, f"{name} failed but changed the store"
                    _outcome(name, "tool error")
                else:
                    assert isinstance(result.structuredContent, dict)
                    json.dumps(result.structuredContent, allow_nan=False)
                    _outcome(name, "ok")

    anyio.run(scenario)
