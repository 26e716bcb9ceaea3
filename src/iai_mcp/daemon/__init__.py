"""One daemon per store: the only process that opens it; everything else is a client.

Why a daemon, and not every process opening the store
-----------------------------------------------------
``MemoryStore`` loads the whole store at open and then works from memory:
rows, one vector matrix, the keyword index, the dedup map from text to
record, the LanceDB sequence counter. Two processes that each open the
store would each hold their own copy and drift apart: one process's captures
are invisible to the other's recall and dedup (the same text stored twice),
their sequence numbers collide, and the provenance log gets two writers.
That is exactly how peer memory servers lose writes (a JSONL rewritten by
two processes, a single-client SQLite, a vector index with two writers).

The alternatives cost more: re-reading the store on every call makes each
hook pay a full decrypt and load (seconds at 100k records) and still needs a
lock around every write; keeping per-process replicas in step needs a change
feed. One owner process keeps the in-memory design as it is, loads the
embedding model once instead of once per hook, and gives the provenance
queue one writer. The store's ``store.lock`` (an exclusive flock) makes the
rule hard: a second owner is refused with ``StoreLocked``, so even two
daemons racing to start cannot both open it.

Lifecycle
---------
The first client that finds no daemon starts one (``daemon.client``). The
daemon opens the store with its provenance queue, binds the socket (owner
only: mode 0600 and a peer-uid check), writes ``daemon.json``, starts
listening and only then warms the embedding model, so clients connect
while the model loads. Each connection gets a thread; calls into the store
run one at a time (see ``Daemon._call``). With no connection and no request
for ``idle_timeout`` seconds it exits. On SIGTERM or SIGINT it stops
accepting, lets in-flight requests finish, drains the provenance queue
(``store.close()``), removes its socket and ``daemon.json`` and exits 0.
Logs are one JSON object per line on stderr, which the spawner appends to
``<store>/daemon.log``.

Public API (the CLI's ``iai-mcp daemon run|status|stop`` wraps these):
``lifecycle.run(store_path)``, ``lifecycle.status(store_path) -> dict | None``,
``lifecycle.stop(store_path, timeout) -> bool``.

Modules: ``wire`` (socket paths, framing, errors on the wire), ``auth``
(the passphrase handshake of a passphrase store), ``client``
(what adapters talk to; spawns the daemon), ``service`` (the accept loop
and dispatch into the store), ``lifecycle`` (run, status, stop).
"""
