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
    recover_deleted_checkpoints(path)
    return tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False, restart_errored=False)


def _storage(path: str) -> tuple[Any, str]:
    import pyarrow.fs

    if "://" in path:
        return pyarrow.fs.FileSystem.from_uri(path)
    return pyarrow.fs.LocalFileSystem(), path


def recover_deleted_checkpoints(path: str) -> list[str]:
    """Give every trial the checkpoint the saved experiment state names, when a kill left it deleted.

    Tune keeps one checkpoint per trial (``num_to_keep=1``): registering epoch e+1's deletes epoch e's
    before the experiment state that names e+1's is saved. A driver killed in between leaves a state that
    names a deleted checkpoint, and the restored trial fails in Tune's own restore ("does not exist on
    storage anymore"), every retry alike. The trial's newest complete checkpoint is then moved to the
    name the state expects: the trial continues from that later epoch (its files record the epoch, which
    is what hebbnas and ASHA count). Returns the repaired checkpoint paths.
    """
    import pyarrow.fs
    from ray.tune.experiment import Trial

    fs, root = _storage(path)
    states = sorted(i.path for i in fs.get_file_info(pyarrow.fs.FileSelector(root, recursive=False))
                    if Path(i.path).name.startswith("experiment_state-") and i.path.endswith(".json"))
    if not states:
        return []
    with fs.open_input_stream(states[-1]) as f:
        trial_data = json.loads(f.read()).get("trial_data", [])
    repaired = []
    for json_state, run_metadata in trial_data:
        trial = Trial.from_json_state(json_state, stub=True)
        trial.restore_run_metadata(run_metadata)
        if trial.checkpoint is None:
            continue
        name = Path(trial.checkpoint.path).name  # recorded under the run's old location; the name is what counts
        trial_dir = f"{root}/{trial.storage.trial_dir_name}"
        wanted = f"{trial_dir}/{name}"
        if fs.get_file_info(wanted).type != pyarrow.fs.FileType.NotFound:
            continue
        found = fs.get_file_info(pyarrow.fs.FileSelector(trial_dir, allow_not_found=True, recursive=False))
        newer = sorted((i.path for i in found if Path(i.path).name.startswith("checkpoint_")
                        and Path(i.path).name > name and _checkpoint_complete(fs, i.path)), reverse=True)
        if not newer:
            continue
        if isinstance(fs, pyarrow.fs.LocalFileSystem):
            fs.move(newer[0], wanted)
        else:
            pyarrow.fs.copy_files(newer[0], wanted, source_filesystem=fs, destination_filesystem=fs)
            fs.delete_dir(newer[0])
        repaired.append(wanted)
    return repaired


def _checkpoint_complete(fs: Any, directory: str) -> bool:
    """Both files a trial checkpoint holds are there and read back whole (torch files are zip archives)."""
    import io
    import zipfile

    from hebbnas.trials import CHECKPOINT_FILE, TRAIN_STATE_FILE

    for name in (CHECKPOINT_FILE, TRAIN_STATE_FILE):
        try:
            with fs.open_input_stream(f"{directory}/{name}") as f:
                data = f.read()
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                if z.testzip() is not None:
                    return False
        except (OSError, zipfile.BadZipFile):
            return False
    return True


def drop_cut_off_state(path: str) -> None:
    """Set aside the newest session's experiment state when a kill cut its upload off.

    Ray Tune copies its state files (experiment_state-<session>.json, search_gen_state-<session>.json,
    searcher-state-<session>.pkl) to storage without an atomic rename, so a SIGKILL during the copy can
    leave them empty, and Tuner.restore would then start the round over. An older session's complete
    state (a search killed, resumed and killed again) is the next best; with none, resuming is refused.
    """
    import pyarrow.fs

    fs, root = _storage(path)
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


