"""What every long study records about its own run: timestamped log lines, the command as typed, and one
session entry per invocation (start, wall time, jobs, code commit, torch) in its `<name>-meta.json`.
Shared by the studies that resume over several sessions (analysis/finals.py, analysis/final_fidelity.py)."""

from __future__ import annotations

import datetime as dt
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    print(f"[{dt.datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def command_line(script: str, argv: Sequence[str] | None) -> str:
    return f"python analysis/{script} " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


class Session:
    """One invocation of a study: started now; `record` appends it to the meta file when the work is done."""

    def __init__(self, command: str) -> None:
        self.command, self.t0 = command, time.time()
        self.started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def record(self, meta_path: Path, **extra: Any) -> None:
        import torch

        from analysis.zoo_units import code_commit

        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"sessions": []}
        meta.setdefault("sessions", []).append({"command": self.command, "started": self.started,
                                                "wall_s": round(time.time() - self.t0, 1), **extra,
                                                "commit": code_commit(), "torch": torch.__version__})
        meta_path.write_text(json.dumps(meta, indent=1))
