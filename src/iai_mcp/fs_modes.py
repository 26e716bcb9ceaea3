"""Owner-only modes for what an earlier release left loose (issue 13 item 5).

Everything iai-mcp creates now is 0700 (directories) or 0600 (files), but
``fs.make_private_dir`` leaves an existing directory as it is, so a store or
spill directory made by an earlier release keeps its 0755 directories and
0644 files. ``doctor`` names them (``loose_paths``) and ``doctor --repair``
narrows them (``make_owner_only``). A path is loose when group or others
have any permission; symlinks are not followed (their target is not ours).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def loose_paths(*tops: Path) -> list[tuple[Path, int]]:
    """``(path, mode)`` of each directory or file under (and including) each
    of ``tops`` that other users may read, write or enter; a missing top is
    skipped."""
    found: list[tuple[Path, int]] = []
    for top in tops:
        if not top.is_dir() or top.is_symlink():
            continue
        found += _loose(top)
        for directory, dirs, files in os.walk(top):
            found += [loose for name in (*dirs, *files) for loose in _loose(Path(directory) / name)]
    return found


def loose_in_store_and_spill(store: Path, spill: Path) -> list[tuple[Path, int]]:
    """What ``doctor`` checks: everything under the store and the spill
    directory, and the spill directory's parent itself (``~/.iai-mcp``, made
    with it), each path once."""
    found = loose_paths(store, spill)
    if spill.parent.is_dir():
        found += [item for item in _loose(spill.parent) if item not in found]
    return found


def _loose(path: Path) -> list[tuple[Path, int]]:
    try:
        info = path.lstat()
    except FileNotFoundError:  # removed while we looked: nothing to narrow
        return []
    mode = stat.S_IMODE(info.st_mode)
    if stat.S_ISLNK(info.st_mode) or not mode & 0o077:
        return []
    return [(path, mode)]


def make_owner_only(paths: list[tuple[Path, int]]) -> list[str]:
    """chmod each of ``paths`` to 0700 (a directory) or 0600; returns one
    line per path that could not be changed (gone, or not ours)."""
    problems = []
    for path, _ in paths:
        try:
            os.chmod(path, DIR_MODE if path.is_dir() else FILE_MODE)
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror or exc}")
    return problems


def describe(paths: list[tuple[Path, int]], shown: int = 5) -> str:
    """``/a/store (755), /a/store/x (644) and 3 more``."""
    names = ", ".join(f"{path} ({mode:o})" for path, mode in paths[:shown])
    return names + (f" and {len(paths) - shown} more" if len(paths) > shown else "")
