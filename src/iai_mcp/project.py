"""Which project a working directory belongs to: its git root, else itself.

Memories carry the project they were said in (``MemoryRow.project``) so a
session in one project can prefer its memories. The project is a path, so it
is sealed with the rest of the record and never leaves the store in clear.
Found by walking up to a ``.git`` entry (a directory, or a file in a worktree
or submodule) rather than by running git: a hook must not depend on git being
installed, and the walk costs microseconds.
"""
from __future__ import annotations

import os
from pathlib import Path


def project_of(cwd: str | os.PathLike[str]) -> str:
    """The git root holding ``cwd``, else ``cwd`` itself (made absolute)."""
    start = Path(os.path.abspath(os.path.expanduser(cwd)))
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return str(folder)
    return str(start)


def as_given(value: str) -> str:
    """A project as a person names it on a command line: a path (``.``,
    ``..``, ``~``, absolute, ``./x``, ``../x``, or an existing directory) is
    the project holding it (``project_of``), so ``--project .`` or a
    subdirectory matches the git root memories were stored with; anything
    else, ``acme/web`` included when no such directory exists here, is a name
    a host chose and is kept as it is (a separator alone does not make a
    path: the walk up from a missing one would land on this directory's root)."""
    path_like = (value in (".", "..") or value.startswith(("~", os.sep, "." + os.sep, ".." + os.sep))
                 or os.path.isdir(value))
    return project_of(value) if path_like else value
