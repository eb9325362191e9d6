"""A real PostgreSQL server for the board's tests: Debian's package (initdb and postgres under
/usr/lib/postgresql/*/bin), a cluster in a temporary folder listening on 127.0.0.1 only,
stopped by its pid. Run as the `postgres` user when the tests run as root (initdb refuses
root); `PostgresServer.start` raises Unavailable with one line when it cannot start."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from leadpulse.cli.processes import free_port


class Unavailable(RuntimeError):
    """No PostgreSQL here (no package, no user to run it as, or it did not start)."""


class PostgresServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.user = "postgres"

    @staticmethod
    def binaries() -> Path:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise Unavailable(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb; apt-get install postgresql)"
            )
        return Path(found[-1]).parent

    def _as_user(self) -> list[str]:
        """setpriv execs the command itself: the pid started is the server's own."""
        if os.geteuid() != 0:
            return []
        try:
            pwd.getpwnam(self.user)
        except KeyError:
            raise Unavailable("running as root and no 'postgres' user to run PostgreSQL as") from None
        return ["setpriv", f"--reuid={self.user}", f"--regid={self.user}", "--init-groups", "--"]

    def start(self, timeout_s: float = 30) -> None:
        binaries = self.binaries()
        data = self.folder / "pgdata"
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, self.user, self.user)
        init = subprocess.run(
            [
                *self._as_user(),
                str(binaries / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            capture_output=True,
            check=False,
        )
        if init.returncode != 0:
            raise Unavailable(f"initdb failed: {init.stderr.decode(errors='replace').strip().splitlines()[-1:]}")
        log = (self.folder / "postgres.log").open("ab")
        self.process = subprocess.Popen(
            [
                *self._as_user(),
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.folder),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise Unavailable(f"postgres exited with {self.process.returncode}; see {self.folder / 'postgres.log'}")
            if self._answers():
                return
            time.sleep(0.1)
        self.stop()
        raise Unavailable(f"postgres did not answer within {timeout_s:.0f} s")

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url("postgres"), connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """SIGQUIT: PostgreSQL's immediate shutdown (no checkpoint: the cluster is thrown away)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
