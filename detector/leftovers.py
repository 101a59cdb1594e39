"""Working files named after the process that made them, and the removal of those whose process
has ended (killed, power cut) before it could clean up after itself.

A working file or folder is named `<prefix><pid>-<random>`; one whose process is still running
belongs to work in progress and is left alone.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs (one of another user counts as running)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:
        return True
    return True


def owned_name(prefix: str) -> str:
    """A fresh name `<prefix><this pid>-<random>` for a working file or folder."""
    return f"{prefix}{os.getpid()}-{uuid.uuid4().hex[:12]}"


def remove_left_behind(folder: Path, prefix: str) -> None:
    """Delete the entries of `folder` named `<prefix><pid>-...` whose process has ended (files or
    folders); an entry whose name holds no process id is left by an older version: deleted too."""
    for entry in Path(folder).glob(f"{prefix}*"):
        pid = entry.name[len(prefix):].split("-")[0]
        if pid.isdigit() and process_alive(int(pid)):
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
