"""Working files of processes that ended are removed; those of running processes are kept."""

import os
import subprocess
import sys

from detector.leftovers import owned_name, remove_left_behind


def test_only_the_leftovers_of_ended_processes_are_removed(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    mine = tmp_path / owned_name(".work-")
    mine.mkdir()
    (tmp_path / f".work-{ended}-abc").mkdir()
    (tmp_path / f".work-{ended}-abc" / "part.parquet").write_bytes(b"x")
    (tmp_path / f".work-{ended}-def.duckdb").write_bytes(b"x")  # a file, not a folder
    (tmp_path / ".work-0a1b2c").mkdir()  # an older name without a process id
    (tmp_path / "other-1").mkdir()  # not a working file
    remove_left_behind(tmp_path, ".work-")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, "other-1"])
    assert mine.name.startswith(f".work-{os.getpid()}-")
