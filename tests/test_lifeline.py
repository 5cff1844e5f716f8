"""sim.lifeline: a child dies with its parent, even when the parent died before the child could arm.

Real processes: a parent starts a child named in `DIE_WITH_ENV` and exits at once; the child arms
its lifeline a second later, when it has already been re-parented (its parent a zombie until the
test reaps it: dead all the same). It must not live on (that was
Locust under a `kill -9` of `smsload load` on a loaded machine: killed before its locustfile ran).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

CHILD = """
import sys, time
time.sleep(1.0)  # the parent is gone by now
from sim.lifeline import die_with_parent
die_with_parent()
open(sys.argv[1], "w").write("survived")
"""
PARENT = """
import os, subprocess, sys
from sim.lifeline import lifeline_env
child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=lifeline_env(dict(os.environ)))
print(child.pid, flush=True)
"""


def test_a_child_orphaned_before_it_armed_dies_at_once(tmp_path: Path) -> None:
    witness = tmp_path / "witness"
    done = subprocess.run(
        [sys.executable, "-c", PARENT, CHILD, str(witness)], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip().isdigit()
    time.sleep(3.0)  # the child's second, and time to write
    assert not witness.exists()


def test_a_grandchild_is_left_to_its_own_parent(tmp_path: Path) -> None:
    """The variable is inherited; a process whose parent is alive but not the one named does not die."""
    witness = tmp_path / "witness"
    code = CHILD.replace("time.sleep(1.0)  # the parent is gone by now", "")
    env_parent = "import os, subprocess, sys\nfrom sim.lifeline import lifeline_env\n"
    outer = env_parent + (
        "env = lifeline_env(dict(os.environ))\n"
        "mid = subprocess.run([sys.executable, '-c', 'import subprocess, sys; "
        'subprocess.run([sys.executable, "-c", sys.argv[1], sys.argv[2]], check=True)\', sys.argv[1], sys.argv[2]], '
        "env=env, check=True)\n"
    )
    subprocess.run([sys.executable, "-c", outer, code, str(witness)], timeout=60, check=True)
    assert witness.read_text() == "survived"
