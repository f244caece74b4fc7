"""``cifarkit ARGS`` run inside the calling process, as a finished process would report it.

conftest.cli runs commands in the test process (Keras on TensorFlow); ``python
tests/inprocess.py FILE`` runs a list of commands in one new process, so a test can
drive several commands on another Keras backend (JAX) with one interpreter and one
backend start. FILE holds JSON: ``[{"args": [...], "env": {...}}, ...]``; an argument
``{only:FOLDER}`` stands for the one entry of FOLDER when its command starts. The
results go to FILE.out as JSON: ``[{"returncode": N, "stdout": ..., "stderr": ...}, ...]``.
"""

import json
import re
import subprocess
import sys
from pathlib import Path


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Exit status, stdout and stderr of ``cifarkit ARGS`` run here
    (:func:`cifarkit.testing.run_cli`)."""
    from cifarkit.testing import run_cli

    return run_cli(*args, env=env)


def _only(match) -> str:
    (entry,) = Path(match.group(1)).iterdir()
    return str(entry)


def _resolve(arg: str) -> str:
    """``arg`` with each ``{only:FOLDER}`` replaced by FOLDER's one entry."""
    return re.sub(r"\{only:([^}]*)\}", _only, arg)


def main(path: str) -> None:
    results = []
    for command in json.loads(Path(path).read_text()):
        done = cli(*[_resolve(a) for a in command["args"]], env=command.get("env"))
        results.append({"returncode": done.returncode, "stdout": done.stdout,
                        "stderr": done.stderr})
        Path(path + ".out").write_text(json.dumps(results))  # each as it finishes


if __name__ == "__main__":
    main(sys.argv[1])
