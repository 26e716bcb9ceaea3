"""``iai-mcp ui``: a local web viewer of the store, for a person.

Search (memory_recall with scores, reasons, budget and anti-hits), Browse
(memory_list, page by page), one memory (verbatim text, metadata, history,
provenance newest first), acting on it (forget, restore, pin, unpin, tag,
supersede, the destructive ones after a question) and an Overview (counts,
activity per day, most recalled, store health). Every read and every action
is a dispatch method sent through the backend, the daemon by default, like
the CLI's: the viewer is safe beside running assistants and hooks.

Modules: ``app`` (routes, server), ``security`` (token, Host, Origin, CSP),
``pages`` / ``actions`` / ``overview`` (the pages), ``forms`` (form fields
to method parameters), ``markup`` (HTML escaped by default), ``static``
(the one stylesheet and script, served from the package: no CDN, no build).
"""
