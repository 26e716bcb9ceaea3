"""The documented limits of every method, as plain numbers.

``core.contract`` builds its checks from these; the CLI reads them without
importing the contract (pydantic costs ~90 ms of start-up, paid by every
hook run otherwise). A value past a maximum is a ``LimitExceeded``.
"""

MAX_TEXT_CHARS = 100_000
MAX_CUE_CHARS = 10_000
MAX_K = 200
MAX_BUDGET_TOKENS = 100_000
MAX_TAGS = 64
MAX_TAG_CHARS = 128
MAX_ID_CHARS = 256
MAX_RECORD_ID_CHARS = 64
MAX_TIME_CHARS = 64
MAX_LANGUAGE_CHARS = 32
#: Records per export page or import call.
MAX_PAGE = 1000
MAX_OFFSET = 2**62
#: Provenance entries (and history items) one imported record may carry. A
#: memory gains an entry each time it is recalled, with no cap in the store,
#: so an export of a much-recalled memory must import back whole (issue 11):
#: 100,000 entries of a typical ~150 bytes are ~15 MB, within the daemon's
#: 32 MiB a message.
MAX_PROVENANCE_PER_RECORD = 100_000
#: The session pack's default token budget.
SESSION_PACK_TOKENS = 3000
#: Memories one memory_forget may match; past it the call changes nothing
#: and asks for narrower selectors (its answer lists every id it forgot).
MAX_FORGET = 10_000
#: Bytes of JSON one export page holds by default, and at most: a page stops
#: before the record that would pass it (a page always holds one record), so
#: an export of any size crosses the daemon's wire (32 MiB a message) in pages.
EXPORT_PAGE_BYTES = 4 * 1024 * 1024
MAX_EXPORT_PAGE_BYTES = 16 * 1024 * 1024
