"""Is the value of ``password = ...`` code or a literal? (``redact``'s code rule.)

Memories are verbatim, and much of what an assistant is told is code, where
``token = tokenizer.encode(text)``, ``OpenAI(api_key=api_key)`` and
``def login(user: str, password: str)`` name secrets without holding one.
Before a code rule, 12 of 15 such lines were mangled (issue 13). A quoted
value is always a literal and is redacted; this module looks only at an
unquoted value, the one shape where code and a secret meet.

The *shape* of a value says nothing: ``open_sesame``, ``myDogMax`` and
``hunter.two`` are snake case, camel case and a dotted path, and all are
passwords people use (a first version exempted those shapes and leaked all
three; issue 13 review). So a value is code only in clear code context:

* a call or subscript: the value is followed by ``(`` or ``[``
  (``tokenizer.encode(text)``, ``os.environ["K"]``, ``Optional[str]``);
* a reference: it equals its key (``api_key=api_key``, ``this.token =
  token``), is a short variable name (``pw``, ``key``), names the key's own
  word (``confirm_password``, ``newToken``), or is a path from a known
  object (``self.x``, ``args.password``, ``config.api_key``) or to a field
  named like the key (``creds.password``, ``settings.SECRET_KEY``);
* a name the same text uses as a name elsewhere (``def f(new_pw): ...
  password = new_pw``);
* after ``:``, a known type (``password: str``, ``password: SecretStr``,
  ``private_key: rsa.RSAPrivateKey``), a generic (``Option<String>``), a
  statement (``if a != confirm_password: raise ...``), or a name ending like
  a type (``SecretKey``) only when code follows it (``=``, ``|``, ``;``, or
  ``,`` ``)`` or the end of the line inside a parameter list or class body):
  ``password: MasterKey`` alone is a passphrase (issue 13 item 6 review);
* a lower-case snake case name holding a word code names data with
  (``input``, ``json``, ``response``) on a line that is only an assignment
  with spaces around ``=`` (``password = user_input``); a shell or prose
  ``password=open_sesame`` has no such spaces, and
  ``passphrase = purple_monkey_dishwasher`` no such word.

A value naming the key's own word must start lower-case
(``newPassword``, ``confirm_password``): ``AdminPassword``, ``SuperSecret``
and ``MyDbPassword`` are passwords people pick.

Everything else is redacted. An upper-case key with ``=`` (a shell or env
file, where values are literals) keeps only calls, subscripts, paths from a
known object or to a like-named field, and its own name.
The measured effect is in ``python -m bench.redaction``.
"""
from __future__ import annotations

import re

_IDENT = r"[A-Za-z_$][\w$]*+"
_IDENTIFIER = re.compile(_IDENT)
#: ``self.api_key``, ``os.environ``, ``env::var``, ``obj->token``.
_PATH = re.compile(rf"{_IDENT}(?:(?:\.|::|->){_IDENT})++")
_PATH_SEPARATOR = re.compile(r"\.|::|->")
#: Words of a snake, kebab or camel case name: ``newToken`` -> new, token.
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")
#: A type name after ``:`` ends in what types are called; ``CorrectHorse`` does not.
_TYPE_NAME = re.compile(
    r"[A-Z][A-Za-z0-9]*?(?:Str|String|Bytes|Key|Url|Uri|Token|Secret|Password|"
    r"Type|Credentials?|Config|Settings|Int|Dict|List|Field|Value|Data|Info|Model|Handle|Provider)"
)
_TYPES = frozenset(
    "str bytes bytearray int float bool dict list tuple set frozenset object any string number "
    "boolean char void uuid path none Any Optional Union Literal Final ClassVar Callable Sequence "
    "Mapping Iterable String Integer Boolean Secret SecretStr SecretBytes".split()
)
#: Statements after ``if ...:`` on the same line: code, not a value.
_STATEMENTS = frozenset("raise return pass continue break".split())
#: After a type name, what only code puts there (``,`` and ``)`` need a parameter list).
_AFTER_A_TYPE = frozenset("=|;")
_IN_A_LIST = frozenset(",)")
#: ``password = user_input`` alone on its line, spaces around ``=``.
_SNAKE_NAME = re.compile(r"[a-z][a-z0-9]*+(?:_[a-z0-9]++)++")
#: Words that name data in code; ``purple_monkey_dishwasher`` holds none.
_CODE_WORDS = frozenset(
    "input output json xml yaml response resp request req data result res value val text str "
    "string bytes body payload field arg args param params var buf buffer line row entry obj "
    "dict list hash hashed encoded decoded raw plain stored cached default given provided "
    "form env header headers cookie query user new old current tmp temp".split()
)
_LINE_HEAD = re.compile(r"[ \t]*+(?:(?:let|var|const|val|final|local|my|auto)[ \t]++)?")
_LINE_TAIL = re.compile(r"[ \t]*+(?:;|#|//|\r?$)", re.MULTILINE)
_CLASS_LINE = re.compile(r"^[ \t]*+class[ \t]++\w[\w.,()\[\] \t=]*+:[ \t]*+$", re.MULTILINE)
#: How far back a parameter list or class header is looked for.
_CONTEXT_WINDOW = 500
_KEYWORDS = frozenset("await new yield typeof lambda function async not".split())
#: Short names a variable holding a secret goes by; never a password anyone uses.
_VARIABLE_NAMES = frozenset(
    "key value val pw pwd tok data result res args kwargs config conf cfg settings env opts "
    "options params creds cred raw text".split()
)
#: Objects a secret is read from: ``self.password``, ``args.token``, ``process.env.API_KEY``.
_OBJECTS = frozenset(
    "self this cls os sys env environ process args argv opts options config conf cfg settings "
    "params kwargs ctx context request req form app creds credentials vault props state "
    "window document secrets".split()
)
#: The word of a key that makes it secret: a value naming it is a variable.
#: Not ``key``: ``secret_key=unsafe_dev_key`` is a literal that happens to end in it.
_SECRET_WORDS = frozenset("password passwd passphrase pwd secret token credentials".split())


#: How far from the value a use as a name counts (a function body, roughly).
_NAME_WINDOW = 2000


def _words(name: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(name)]


def _names_the_key(value: str, key: str) -> bool:
    """``confirm_password`` for ``password``, ``creds.password`` for
    ``db_password``, ``settings.SECRET_KEY`` for ``secret_key``."""
    value_words, key_words = _words(value), _words(key)
    if not value_words or not key_words:
        return False
    if value == key:
        return True
    # AdminPassword, SuperSecret, MyDbPassword: a variable's first word is
    # lower-case (newPassword, confirm_password) or it is a CONSTANT_NAME.
    if not (value[0].islower() or value[0] == "_" or (value.isupper() and "_" in value)):
        return False
    if "".join(value_words) == "".join(key_words):
        return True
    shorter, longer = sorted((value_words, key_words), key=len)
    if len(value_words) > 1 and key_words[-1] in _SECRET_WORDS and value_words[-1] == key_words[-1]:
        return True  # new_password, newToken, jwt_secret
    return len(shorter) < len(longer) and longer[-len(shorter):] == shorter


def _used_as_a_name(text: str, value: str, start: int) -> bool:
    """Does ``value`` stand elsewhere in ``text`` where only a name can:
    after ``(``, ``,`` or ``.``, or before ``(``, ``[``, ``.attr`` or ``=``?"""
    pattern = re.compile(
        rf"(?:(?<=[(,.])|(?<=[(,][ \t])){re.escape(value)}(?![\w$])"
        rf"|(?<![\w$.]){re.escape(value)}(?=[ \t]*+(?:[(\[]|\.\w|=(?!=)))"
    )
    # A window, not the whole text: a text of n assignments stays linear.
    lo, hi = max(0, start - _NAME_WINDOW), min(len(text), start + len(value) + _NAME_WINDOW)
    return any(m.start() != start for m in pattern.finditer(text, lo, hi))


def is_code(text: str, key: re.Match[str], start: int, end: int) -> bool:
    """True when ``text[start:end]``, the unquoted value of the assignment
    ``key`` matched (groups ``key``, ``q``, ``sep``), is code, not a secret."""
    value, following = text[start:end], text[end:end + 1]
    if "[" in value:  # os.environ["K"]: the value's run stops at the quote
        value, following = value[:value.index("[")], "["
    value = value.rstrip(":")  # if password == confirm_password:
    is_name, is_path = bool(_IDENTIFIER.fullmatch(value)), bool(_PATH.fullmatch(value))
    if not (is_name or is_path):
        return False
    if following in ("(", "["):
        return True  # a call or a subscript
    if value in _KEYWORDS and following in (" ", "\t"):
        return True  # token = await get_token(), secret = new Secret()
    name = key.group("key").lstrip("-")
    field = _PATH_SEPARATOR.split(name)[-1]
    parts = _PATH_SEPARATOR.split(value)
    if is_path and (parts[0] in _OBJECTS or _names_the_key(parts[-1], field)):
        return True  # self.password, args.token, creds.password
    if key.group("sep") == "=" and name.isupper():
        # API_TOKEN=value: a shell or env file, where a value is a literal.
        return value == name
    if is_name and (value in _VARIABLE_NAMES or _names_the_key(value, field)):
        return True  # api_key=api_key, password = pw, confirm_password
    if is_name and _used_as_a_name(text, value, start):
        return True
    if key.group("sep") == "=":
        return is_name and _alone_on_an_assignment_line(text, key, value, end)
    if key.group("sep") != ":":
        return False
    if value in _STATEMENTS or parts[-1] in _TYPES:
        return True
    if is_path:
        return parts[-1][:1].isupper()  # rsa.RSAPrivateKey, models.Token
    if following == "<" and value[0].isupper() and _IDENTIFIER.match(text, end + 1):
        return True  # Option<String>, Array<Byte>
    return bool(_TYPE_NAME.fullmatch(value)) and _code_follows_a_type(text, key.start(), end)


def _alone_on_an_assignment_line(text: str, key: re.Match[str], value: str, end: int) -> bool:
    """``password = user_input``: a lower-case snake case name holding a
    word code names data with (``input``, ``json``), spaces around ``=``, and
    nothing else on the line but a ``;`` or a comment. The shape alone is not
    enough: ``passphrase = purple_monkey_dishwasher`` is a passphrase."""
    sep_start, sep_end = key.span("sep")
    if not (_SNAKE_NAME.fullmatch(value) and not _CODE_WORDS.isdisjoint(value.split("_"))
            and text[sep_start - 1:sep_start] in (" ", "\t")
            and text[sep_end:sep_end + 1] in (" ", "\t")):
        return False
    line_start = text.rfind("\n", 0, key.start()) + 1
    head = _LINE_HEAD.match(text, line_start)
    return head is not None and head.end() == key.start() and _LINE_TAIL.match(text, end) is not None


def _code_follows_a_type(text: str, key_start: int, end: int) -> bool:
    """After ``password: SecretKey``: ``=``, ``|`` or ``;``; or ``,``, ``)``
    or the end of the line inside ``f(...)`` or, for the end of a line, an
    indented line under ``class X:``. Prose puts none of these there."""
    rest = text[end:end + 80].lstrip(" \t")
    following = rest[:1]
    if following in _AFTER_A_TYPE:
        return True
    at_line_end = following in ("", "\n", "\r")
    if not (following in _IN_A_LIST or at_line_end):
        return False
    if _in_a_parameter_list(text, key_start):
        return True
    line_start = text.rfind("\n", 0, key_start) + 1
    indented = text[line_start:line_start + 1] in (" ", "\t")
    lo = max(0, line_start - _CONTEXT_WINDOW)
    return at_line_end and indented and _CLASS_LINE.search(text, lo, line_start) is not None


def _in_a_parameter_list(text: str, pos: int) -> bool:
    """Is ``pos`` inside ``name(...`` still open? A bounded look back, so
    a text of n annotations stays linear."""
    depth = 0
    for i in range(pos - 1, max(-1, pos - 1 - _CONTEXT_WINDOW), -1):
        c = text[i]
        if c == ")":
            depth += 1
        elif c == "(":
            if depth == 0:
                return i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_")
            depth -= 1
    return False
