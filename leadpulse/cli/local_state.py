"""A worker's local state folder (LEADPULSE_DATA_DIR: the RocksDB tables) belongs to one
Kafka cluster. The tables remember changelog offsets of the cluster that wrote them; opened
against another cluster (the demo's broker, then the standalone one, say) Faust stops with
"ConsistencyError: The persisted offset ... is higher than the last offset". So the folder
holds a marker file with the cluster id, written on first use and compared at every start.

Filesystem only, no Kafka: the CLI reads the cluster id and passes it in."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from leadpulse.cli.preflight import CommandError
from leadpulse.streams.settings import env_name

MARKER_NAME = "cluster-id"


def marker_path(data_dir: Path) -> Path:
    return data_dir / MARKER_NAME


def read_marker(data_dir: Path) -> str | None:
    """The cluster id the folder belongs to; None for a new folder (or an empty marker)."""
    try:
        text = marker_path(data_dir).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as error:
        raise CommandError(f"{marker_path(data_dir)}: {error.strerror}") from None
    return text or None


def write_marker(data_dir: Path, cluster_id: str) -> None:
    """Written whole or not at all (temporary file, then rename): a half-written marker
    would refuse the folder's own cluster at the next start."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        partial = marker_path(data_dir).with_suffix(".tmp")
        partial.write_text(cluster_id + "\n", encoding="utf-8")
        os.replace(partial, marker_path(data_dir))
    except OSError as error:
        raise CommandError(f"cannot write {marker_path(data_dir)}: {error.strerror}") from None


def claim(data_dir: Path, cluster_id: str, broker: str) -> None:
    """Make sure `data_dir` belongs to `cluster_id`: adopt a new folder, refuse another
    cluster's with one line that says how to get going again."""
    owner = read_marker(data_dir)
    if owner is None:
        write_marker(data_dir, cluster_id)
    elif owner != cluster_id:
        raise CommandError(mismatch_message(data_dir, owner, cluster_id, broker))


def mismatch_message(data_dir: Path, owner: str, cluster_id: str, broker: str) -> str:
    return (
        f"the state folder {data_dir} belongs to Kafka cluster {owner}, but the broker at {broker} is cluster "
        f"{cluster_id}: remove the folder (rm -rf {shlex.quote(str(data_dir.resolve()))}) or set "
        f"{env_name('data_dir')} to another folder"
    )


def reset(data_dir: Path) -> None:
    """Empty a folder whose state is disposable (the demo's own)."""
    import shutil

    shutil.rmtree(data_dir, ignore_errors=True)
