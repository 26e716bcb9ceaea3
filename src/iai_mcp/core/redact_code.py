"""Is the value of ``password = ...`` code or a literal? (``redact``'s code rule.)

Memories are verbatim, and much of what an assistant is told is code, where
``token = tokenizer.encode(text)``, ``OpenAI(api_key=api_key)`` and
``def login(user: str, password: str)`` name secrets without holding one.
Before this rule, 12 of 15 such lines were mangled (issue 13). A quoted
value is always a literal and is redacted; this module looks only at an
unquoted value, the one shape where code and a secret meet, and says
"code" when it is a call or subscript, a dotted path, a variable named like
its key or in snake/camel case, a variable after a quoted key, or a type
after ``:``. What it still redacts: ``password=hunter2``, ``secret:
opensesame``, ``token=abc``, and any value of an upper-case (shell or
environment) key that is not a call, subscript or path.

The measured effect is in ``python -m bench.redaction``.
"""
from __future__ import annotations

import re

_IDENT = r"[A-Za-z_$][\w$]*+"
_IDENTIFIER = re.compile(_IDENT)
#: ``self.api_key``, ``os.environ``, ``env::var``, ``obj->token``.
_PATH = re.compile(rf"{_IDENT}(?:(?:\.|::|->){_IDENT})++")
_SNAKE = re.compile(r"_*+[a-z]++(?:_[a-z]++)++")
_CAMEL = re.compile(r"[a-z]++(?:[A-Z][a-z]++)++")
#: After ``:``: ``SecretStr``, ``RSAPrivateKey``, ``HttpUrl`` (two humps at least).
_TYPE_NAME = re.compile(r"[A-Z][a-z]++(?:[A-Z][A-Za-z]*+)++|[A-Z]{2,}+[a-z][A-Za-z]*+")
_TYPES = frozenset(
    "str bytes bytearray int float bool dict list tuple set frozenset object any string number "
    "boolean char void uuid path none Any Optional Union Literal Final ClassVar Callable Sequence "
    "Mapping Iterable String Integer Boolean Secret".split()
)
_KEYWORDS = frozenset("await new yield typeof lambda function async not".split())
#: Short names a variable holding a secret goes by; never a password anyone uses.
_VARIABLE_NAMES = frozenset(
    "key value val pw pwd tok data result res args kwargs config conf cfg settings env opts "
    "options params creds cred raw text".split()
)


def is_code(text: str, key: re.Match[str], start: int, end: int) -> bool:
    """True when ``text[start:end]``, the unquoted value of the assignment
    ``key`` matched (groups ``key``, ``q``, ``sep``), is code, not a secret."""
    value, following = text[start:end], text[end:end + 1]
    if "[" in value:  # os.environ["K"]: the value's run stops at the quote
        value, following = value[:value.index("[")], "["
    value = value.rstrip(":")  # if password == confirm_password:
    if following in ("(", "[") and _IDENTIFIER.fullmatch(value) or _PATH.fullmatch(value):
        return True  # a call, a subscript, an attribute or module path
    if value in _KEYWORDS and following in (" ", "\t"):
        return True  # token = await get_token(), secret = new Secret()
    name = key.group("key").lstrip("-")
    if key.group("sep") == "=" and name.isupper():
        return False  # API_TOKEN=value: a shell or env file, where a value is a literal
    if key.group("q") and _IDENTIFIER.fullmatch(value):
        return True  # {"token": token}: JSON would have quoted a literal
    if value.lower() == name.rsplit(".", 1)[-1].lower() or value in _VARIABLE_NAMES:
        return True
    if _SNAKE.fullmatch(value) or _CAMEL.fullmatch(value):
        return True
    return key.group("sep") == ":" and (value in _TYPES or bool(_TYPE_NAME.fullmatch(value)))
