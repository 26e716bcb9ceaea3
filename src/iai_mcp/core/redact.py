"""Secret redaction: what must never be stored is removed before capture.

``redact(text)`` replaces each secret span with ``[REDACTED:<kind>]`` and
leaves every other character exactly as it was, so storage stays verbatim
apart from the secrets. Kinds:

===================  ==========================================================
aws-access-key       ``AKIA``/``ASIA``/``ABIA``/``ACCA`` + 16 upper-case/digits
aws-secret-key       the value of an assignment whose key names AWS and secret
github-token         ``ghp_ gho_ ghu_ ghs_ ghr_`` tokens, ``github_pat_`` tokens
gitlab-token         ``glpat-`` + 20 or more characters
huggingface-token    ``hf_`` + 30 or more letters and digits
anthropic-key        ``sk-ant-...``
openai-key           ``sk-...`` (``sk-proj-`` too) with 20+ chars incl. a digit
slack-token          ``xoxa- xoxb- xoxp- xoxo- xoxr- xoxs-``
google-api-key       ``AIza`` + 35 chars
stripe-key           ``sk_live_ rk_live_ sk_test_ rk_test_`` (not ``pk_``: public)
jwt                  three base64url segments, the first starting ``eyJ``
private-key          a PEM ``-----BEGIN ... PRIVATE KEY-----`` block through its
                     END line (a block with no END: its base64 lines)
bearer-token,        the credential after ``Bearer`` / ``Authorization: Basic``
basic-auth,          / ``Authorization: Token|Digest``; the scheme word stays
auth-token
connection-string    the password in ``scheme://user:password@host``, up to
                     the last ``@`` (a password may hold ``@ / #``); the
                     scheme, user and host stay; ``host:8080/path/@x`` is a port
password (tools)     ``mysql``/``mysqldump``/``mariadb ... -pPASSWORD`` and
                     ``sshpass -p PASSWORD`` (a bare ``-p`` prompts: kept)
password (prose)     "my password is hunter2": the word after
                     password/passphrase/passwd/passcode + is/was, when it
                     holds a letter and a digit or symbol ("is weak" stays)
password, secret,    the value of ``key = value`` / ``key: value`` /
api-key, token       ``"key": "value"`` / ``--key=value`` where the key names a
                     password (password, passwd, passphrase, *_pwd, *_pass),
                     a secret (secret, credentials, private_key, ...), an API key
                     (api_key, apiKey, x-api-key) or a token (a key *ending* in
                     ``token``: token, access_token, GITHUB_TOKEN); the key and
                     any quotes stay, only the value is replaced
===================  ==========================================================

Decisions about prose (false positives cost recall of ordinary memories):

* Only a *value* is redacted, never a word: "my password is weak" and "token
  ring network" have no ``key=value`` shape and stay. UUIDs, git SHAs and
  hex digests match no pattern and stay.
* Keys such as ``max_tokens``, ``budget_tokens``, ``tokenizer``,
  ``token_count`` and ``password_min_length`` are not secrets (``token`` must
  end the key; a few descriptive suffixes such as ``_length``/``_policy``/
  ``_file`` opt a password key out).
* With ``=`` (or ``==``, ``:=``, ``=>``), or a quoted value, any value is
  redacted. With a bare ``:`` (prose, YAML, headers) the value is kept when it
  is a common English function word ("Password: the one on the card"), since
  a secret is never "the". ``password: hunter2`` is redacted.
* Code is not a secret, but only in clear code context (``redact_code``):
  a call or subscript (``tokenizer.encode(text)``, ``os.environ["K"]``), a
  variable named like its key (``api_key=api_key``, ``confirm_password``),
  a path from a known object or to a like-named field (``self.api_key``,
  ``creds.password``), a name used as one elsewhere in the text, or, after
  ``:``, a type (``password: str``, ``password: SecretStr``) stays. The
  shape alone never exempts: ``db_password=open_sesame``, ``secret=myDogMax``
  and ``password=hunter.two`` are redacted, and so are ``secret=SuperSecret``
  and ``password: MasterKey`` (a name must start lower-case to be a variable,
  a type name needs code after it). An upper-case key with ``=`` is a
  shell or env assignment, whose value is a literal:
  ``GITHUB_TOKEN=some_value`` is redacted.
* Placeholders are not secrets and stay: ``$VAR``, ``${VAR}``, ``%VAR%``,
  ``<your key>``, ``${{ secrets.X }}``, ``***``, ``xxx``, ``...``, true/false/null/none, and
  markers this module already wrote, so ``redact`` is idempotent.

Every pattern is linear in the length of the text: no nested unbounded
quantifiers; runs are possessive (``*+``, ``++``) or bounded, and patterns
whose runs include ``-`` start with a look-behind so that a long run is tried
from its start only. PEM blocks are found with two searches, not one lazy
``.*?`` (which is quadratic when BEGIN lines repeat without an END).
"""
from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from iai_mcp.core.redact_code import is_code

MARKER_PREFIX = "[REDACTED:"

#: Matches a marker this module writes; a marker is never redacted again.
MARKER_RE = re.compile(r"\[REDACTED:[a-z0-9-]{1,40}\]")


def marker(kind: str) -> str:
    return f"{MARKER_PREFIX}{kind}]"


@dataclass(frozen=True)
class Redaction:
    """The redacted text and, in text order, the kind of each secret removed."""

    text: str
    kinds: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.kinds)


@dataclass(frozen=True)
class _Span:
    start: int
    end: int
    kind: str
    #: Lower wins when spans overlap: a specific pattern names the merged span.
    rank: int


# ------------------------------------------------------------------ patterns

# Validators return the kind to record, or None to keep the match as it is.
_Validator = Callable[[re.Match[str]], str | None]


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    group: int | str = 0
    rank: int = 1
    validate: _Validator | None = None


def _openai(match: re.Match[str]) -> str | None:
    body = match.group(0)[3:]
    has_digit = any(c.isdigit() for c in body)
    has_alpha = any(c.isalpha() for c in body)
    return "openai-key" if has_digit and has_alpha else None


def _auth_scheme(match: re.Match[str]) -> str | None:
    scheme = match.group("scheme").lower()
    return {"bearer": "bearer-token", "basic": "basic-auth"}.get(scheme, "auth-token")


_B64URL = r"[A-Za-z0-9_-]"
# A run that may contain '-' is tried only where the run starts.
_RUN_START = r"(?<![A-Za-z0-9_-])"

_SPECIFIC_RULES: tuple[_Rule, ...] = (
    _Rule("aws-access-key", re.compile(r"\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}\b")),
    _Rule("github-token", re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}+|github_pat_[A-Za-z0-9_]{30,}+)")),
    _Rule("gitlab-token", re.compile(_RUN_START + r"glpat-[A-Za-z0-9_-]{20,}+")),
    _Rule("huggingface-token", re.compile(r"\bhf_[A-Za-z0-9]{30,}+\b")),
    _Rule("anthropic-key", re.compile(_RUN_START + r"sk-ant-" + _B64URL + r"{20,}+"), rank=0),
    _Rule("openai-key", re.compile(_RUN_START + r"sk-" + _B64URL + r"{20,}+"), validate=_openai),
    _Rule("slack-token", re.compile(_RUN_START + r"xox[abposr]-[A-Za-z0-9-]{10,}+")),
    _Rule("google-api-key", re.compile(_RUN_START + r"AIza" + _B64URL + r"{35}(?!" + _B64URL + ")")),
    _Rule("stripe-key", re.compile(r"\b[rs]k_(?:live|test)_[0-9A-Za-z]{16,}+")),
    _Rule(
        "jwt",
        re.compile(
            _RUN_START + r"eyJ" + _B64URL + r"{6,}+\." + _B64URL + r"{6,}+\." + _B64URL + r"*+"
        ),
    ),
    _Rule(
        "bearer-token",
        re.compile(
            r"(?i)\b(?:proxy-)?authorization[\"']?[ \t]*+[:=][ \t]*+[\"']?"
            r"(?P<scheme>bearer|basic|token|digest)[ \t]++(?P<cred>[A-Za-z0-9._~+/=:-]++)"
        ),
        group="cred",
        rank=2,
        validate=_auth_scheme,
    ),
    _Rule(
        "bearer-token",
        re.compile(r"(?i)\bbearer[ \t]++(?P<cred>[A-Za-z0-9._~+/-]{16,}+=*+)"),
        group="cred",
        rank=2,
    ),
)

# -- key = value assignments

# Keys and values are matched separately: a key that names no secret must not
# consume its value, which may hold a key that does (``https://h/?token=...``).
_ASSIGNMENT_KEY = re.compile(
    r"(?<![\w.-])(?P<q>[\"']?)(?P<key>-{0,2}[A-Za-z_][\w.-]*+)(?P=q)[ \t]*+"
    r"(?P<sep>=>|==|:=|=|:)[ \t]*+"
)
_ASSIGNMENT_VALUE = re.compile(
    # Backslash escapes inside quotes belong to the value: JSON's \" must not end it early.
    r"\"(?P<dq>(?:[^\"\\\r\n]|\\.){1,512}+)\"|'(?P<sq>(?:[^'\\\r\n]|\\.){1,512}+)'"
    r"|[\"']?(?P<bare>[^\s\"'`,;&|<>()}\]]++)"
)

# Applied to the lower-cased key with leading dashes removed.
_PASSWORD_KEY = re.compile(r"pass(?:word|wd|phrase)|[_.-](?:pwd|pass)$|^pass$")
_SECRET_KEY = re.compile(
    r"secret(?!ar)|credentials?$|(?:access|auth|private|signing|encryption|master|client)[_.-]?key$"
)
_API_KEY = re.compile(r"api[_.-]?key")
_TOKEN_KEY = re.compile(r"token$")
# Descriptive keys about a secret rather than holding one.
_NOT_A_SECRET_KEY = re.compile(
    r"[_.-]?(?:length|len|min|max|policy|hint|file|path|dir|prompt|field|label|type|count|"
    r"expiry|expires|expiration|ttl|age|rotation|strength|reset|enabled|required|url|uri|"
    r"endpoint|name|id|format|header|env|var|mode|limit|regex|pattern)$"
)

_PLACEHOLDER = re.compile(
    r"\$?\{\{.*+|\$\{?[A-Z_][A-Z0-9_]*+\}?|%[A-Z_][A-Z0-9_]*+%|\{\{[^{}]*+\}\}|<[^<>]*+>?|\*++|\.\.\.|…"
    r"|(?i:x++|true|false|null|none|nil|undefined)|\[REDACTED:[a-z0-9-]{1,40}\]?"
)
_FUNCTION_WORDS = frozenset(
    "a an the is are was were be been it its it's this that these those and or not no yes "
    "to of in on for with as at by from my your our their his her i we you they he she "
    "same see use set here there below above required optional empty unknown changed "
    "reset forgotten please must should will can what which".split()
)


def _assignment_kind(key: str) -> str | None:
    key = key.lstrip("-").lower()
    if _NOT_A_SECRET_KEY.search(key) and not key.endswith(("token", "password", "secret", "key")):
        return None
    if _API_KEY.search(key):
        return "api-key"
    if _PASSWORD_KEY.search(key):
        return "password"
    if _SECRET_KEY.search(key):
        return "aws-secret-key" if "aws" in key else "secret"
    if _TOKEN_KEY.search(key):
        return "token"
    return None


def _assignment_spans(text: str) -> Iterator[_Span]:
    covered = 0  # end of the last value redacted: keys inside it are not looked at again
    for match in _ASSIGNMENT_KEY.finditer(text):
        if match.start() < covered:
            continue
        kind = _assignment_kind(match.group("key"))
        if kind is None:
            continue
        value_match = _ASSIGNMENT_VALUE.match(text, match.end())
        if value_match is None:
            continue
        group = next(g for g in ("dq", "sq", "bare") if value_match.group(g) is not None)
        value = value_match.group(group).strip()
        if not value or _PLACEHOLDER.fullmatch(value):
            continue
        if group == "bare" and match.group("sep") == ":" and value.lower() in _FUNCTION_WORDS:
            continue
        if group == "bare" and is_code(text, match, value_match.start(group), value_match.end(group)):
            continue
        covered = value_match.end()
        yield _Span(value_match.start(group), value_match.end(group), kind, 3)


# -- PEM private key blocks

_PEM_BEGIN = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END = re.compile(r"-----END (?:[A-Z0-9]{1,20} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
# A block cut off before its END line: the base64 and header lines after BEGIN.
_PEM_BODY = re.compile(
    r"(?:(?:[ \t]*+\r?\n){0,2}+[ \t]*+"
    r"(?:[A-Za-z0-9+/=]{16,}+|[A-Za-z-]{1,20}+: [^\r\n]{1,100}+)"
    r"(?=[ \t]*+(?:\r?\n|\Z)))*+"
)


def _pem_spans(text: str) -> Iterator[_Span]:
    pos = 0
    no_end_from = len(text) + 1  # an END search from here found nothing
    while (begin := _PEM_BEGIN.search(text, pos)) is not None:
        end = _PEM_END.search(text, begin.end()) if begin.end() < no_end_from else None
        if end is not None:
            stop = end.end()
        else:
            no_end_from = min(no_end_from, begin.end())
            stop = _PEM_BODY.match(text, begin.end()).end()  # type: ignore[union-attr]
        yield _Span(begin.start(), stop, "private-key", 0)
        pos = stop


def _rule_spans(text: str, rule: _Rule) -> Iterator[_Span]:
    for match in rule.pattern.finditer(text):
        kind = rule.validate(match) if rule.validate else rule.kind
        if kind is not None and match.end(rule.group) > match.start(rule.group):
            yield _Span(match.start(rule.group), match.end(rule.group), kind, rule.rank)


# -- passwords in URLs, on command lines and in prose

_URL = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,30}+://(?P<rest>[^\s\"'<>`]{1,2048}+)")
_HOST_START = re.compile(r"[A-Za-z0-9\[]")
_PORT_PATH = re.compile(r"\d{1,5}+(?:[/?#]|$)")


def _url_spans(text: str) -> Iterator[_Span]:
    """The password of ``scheme://user:password@host``: everything between
    the first ``:`` of the userinfo and the *last* ``@`` before the host,
    since a password may itself hold ``@``, ``/`` or ``#``."""
    for match in _URL.finditer(text):
        rest, base = match.group("rest"), match.start("rest")
        at = rest.rfind("@")
        colon = rest.find(":", 0, max(at, 0))
        if at < 0 or colon < 0 or any(c in rest[:colon] for c in "/?#"):
            continue
        password = rest[colon + 1:at]
        # host:8080/path/@x is a port and a path, not a user and a password.
        if not password or _PORT_PATH.match(password) or not _HOST_START.match(rest, at + 1):
            continue
        yield _Span(base + colon + 1, base + at, "connection-string", 2)


_QUOTED_OR_BARE = r"(?:'(?P<sq>[^'\n]{1,256}+)'|\"(?P<dq>[^\"\n]{1,256}+)\"|(?P<bare>[^\s'\"]++))"
_TOOL_PASSWORDS = (
    # mysql -pSECRET (attached; a bare -p prompts). Bounded scan: linear time.
    re.compile(r"\b(?:mysql|mysqldump|mysqladmin|mysqlimport|mariadb)\b[^\n]{0,300}?[ \t]-p" + _QUOTED_OR_BARE),
    re.compile(r"\bsshpass\b[^\n]{0,100}?[ \t]-p[ \t]*+" + _QUOTED_OR_BARE),
)
_PROSE_PASSWORD = re.compile(
    r"(?i)\b(?:password|passphrase|passwd|passcode)[ \t]++(?:is|was)[ \t]++(?P<bare>\S{2,}+)"
)
_TRAILING_PUNCTUATION = ".,;:!?)\"'"


def _value_span(match: re.Match[str]) -> tuple[int, int]:
    group = next(g for g in ("sq", "dq", "bare") if match.group(g) is not None)
    return match.start(group), match.end(group)


def _password_spans(text: str) -> Iterator[_Span]:
    for pattern in _TOOL_PASSWORDS:
        for match in pattern.finditer(text):
            start, end = _value_span(match)
            yield _Span(start, end, "password", 3)
    for match in _PROSE_PASSWORD.finditer(text):
        start, end = match.span("bare")
        while end > start and text[end - 1] in _TRAILING_PUNCTUATION:
            end -= 1
        word = text[start:end]
        # "is hunter2" / "is P@ss" hold a letter and a digit or symbol;
        # "is weak", "is 12 characters long" do not.
        if (any(c.isalpha() for c in word) and any(not c.isalpha() for c in word)
                and not _PLACEHOLDER.fullmatch(word)):
            yield _Span(start, end, "password", 3)


def find_secrets(text: str) -> list[tuple[int, int, str]]:
    """``(start, end, kind)`` of each secret, in text order, non-overlapping.

    Overlapping findings merge into one span (nothing any rule flagged is
    left in the clear) named by the most specific rule that found it.
    """
    spans: list[_Span] = [*_pem_spans(text), *_assignment_spans(text), *_url_spans(text),
                          *_password_spans(text)]
    for rule in _SPECIFIC_RULES:
        spans.extend(_rule_spans(text, rule))
    # Markers already in the text are never touched again.
    protected = [(m.start(), m.end()) for m in MARKER_RE.finditer(text)]
    if protected:
        starts = [a for a, _ in protected]

        def inside_marker(span: _Span) -> bool:
            i = bisect.bisect_right(starts, span.start) - 1
            return i >= 0 and span.end <= protected[i][1]

        spans = [s for s in spans if not inside_marker(s)]
    spans.sort(key=lambda s: (s.start, s.rank))
    merged: list[_Span] = []
    for span in spans:
        if merged and span.start < merged[-1].end:
            last = merged[-1]
            best = last if last.rank <= span.rank else span
            merged[-1] = _Span(last.start, max(last.end, span.end), best.kind, best.rank)
        else:
            merged.append(span)
    return [(s.start, s.end, s.kind) for s in merged]


def redact_label(value: str | None) -> str | None:
    """A tag or session id as it is stored: its secrets replaced like a
    memory's. Filters (``core.filters``) map what they are given the same
    way, so a filter naming the original still finds it."""
    return None if value is None else redact(value).text


def redact_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """A provenance entry with every text field redacted (cue, session id and
    whatever else an import carries); the timestamp is not free text."""
    return {k: redact(v).text if isinstance(v, str) and k != "ts" else v for k, v in entry.items()}


def redact(text: str) -> Redaction:
    """``text`` with each secret replaced by ``[REDACTED:<kind>]``."""
    found = find_secrets(text)
    if not found:
        return Redaction(text, ())
    parts: list[str] = []
    pos = 0
    for start, end, kind in found:
        parts.append(text[pos:start])
        parts.append(marker(kind))
        pos = end
    parts.append(text[pos:])
    return Redaction("".join(parts), tuple(kind for _, _, kind in found))
