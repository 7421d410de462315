"""Tune's experiment state: restoring a round, and repairing what a kill left behind.

Where the state lives is decided by the run folder (`hebbnas.runfolder.RunFolder.storage`): by default
``RUN/tune``, recorded relative to the run so a moved or copied run folder resumes where it is.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hebbnas.errors import HebbnasError


def restore_tuner(path: str, trainable: Any) -> Any | None:
    """The round's Tuner restored from `path`, or None when no experiment was saved there.

    Unfinished trials continue from their last checkpoint; errored ones (their infrastructure retries
    spent) stay failed.
    """
    from ray import tune

    if not tune.Tuner.can_restore(path):
        return None
    drop_cut_off_state(path)
    return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False, restart_errored=False)


def drop_cut_off_state(path: str) -> None:
    """Set aside the newest session's experiment state when a kill cut its upload off.

    Ray Tune copies its state files (experiment_state-<session>.json, search_gen_state-<session>.json,
    searcher-state-<session>.pkl) to storage without an atomic rename, so a SIGKILL during the copy can
    leave them empty, and Tuner.restore would then start the round over. An older session's complete
    state (a search killed, resumed and killed again) is the next best; with none, resuming is refused.
    """
    import pyarrow.fs

    if "://" in path:
        fs, root = pyarrow.fs.FileSystem.from_uri(path)
    else:
        fs, root = pyarrow.fs.LocalFileSystem(), path
    infos = fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=False))
    present = {Path(i.path).name for i in infos}
    sessions = sorted({n[len("experiment_state-"):-len(".json")] for n in present
                       if n.startswith("experiment_state-") and n.endswith(".json")}, reverse=True)
    for n, session in enumerate(sessions):
        names = [f"experiment_state-{session}.json", f"search_gen_state-{session}.json",
                 f"searcher-state-{session}.pkl"]
        if state_files_complete(fs, root, [m for m in names if m in present or m.startswith("experiment")]):
            return
        if n + 1 == len(sessions):
            raise HebbnasError(f"the experiment state in {root} was cut off when the search was killed; this "
                               "round cannot be resumed (trained checkpoints are in trials/<id>/checkpoint.pt)")
        for name in names:
            if name in present:
                with contextlib.suppress(OSError):
                    fs.move(f"{root}/{name}", f"{root}/.cut-off-{name}")


def state_files_complete(fs: Any, root: str, names: Sequence[str]) -> bool:
    for name in names:
        try:
            with fs.open_input_stream(f"{root}/{name}") as f:
                data = f.read()
            if not data:
                return False
            if name.startswith("experiment_state-"):  # JSON; the other two are pickles
                json.loads(data)
        except (OSError, ValueError):
            return False
    return True


