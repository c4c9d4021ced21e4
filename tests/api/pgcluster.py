"""A throwaway PostgreSQL cluster for the tests: ``initdb`` in a temporary folder.

The server binaries come from Debian's ``postgresql`` package (``make test`` installs it
when missing). PostgreSQL refuses to run as root, so under root the cluster is created and
run as the ``postgres`` OS user (``runuser``). The cluster listens on 127.0.0.1 on a free
port with trust authentication, fsync off (it is thrown away), and is stopped at the end
of the session. Each test gets a database of its own (:meth:`Cluster.new_database`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from itertools import count
from pathlib import Path

SEARCH = ("/usr/lib/postgresql", "/usr/local/pgsql")


def find_bin() -> Path | None:
    """The folder holding ``initdb`` and ``pg_ctl`` (newest version first), or ``None``."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    for root in SEARCH:
        base = Path(root)
        if not base.is_dir():
            continue
        versions = sorted(base.glob("*/bin/initdb"), key=lambda p: p.parts[-3], reverse=True)
        versions += sorted(base.glob("bin/initdb"))
        if versions:
            return versions[0].parent
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """A running throwaway cluster.

    Args:
        bin_dir: Folder of the server binaries.
    """

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="landcover-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._names = count()

    def _run(self, *args: str) -> None:
        out = subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, timeout=120, check=False
        )
        if out.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {out.stdout}{out.stderr}\n{log}")

    def start(self) -> Cluster:
        """``initdb`` and start the server; returns ``self``."""
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "--auth=trust", "-E", "UTF8", "--no-sync")  # fmt: skip
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.log), "-w", "-t", "60", "start")  # fmt: skip
        return self

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL of ``database`` (psycopg 3 driver)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """Create an empty database; returns its URL."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`new_database` (closing its connections)."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server (``immediate``: no checkpoint, it is thrown away)."""
        with contextlib.suppress(RuntimeError):
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart_later(self, delay_s: float) -> None:
        """Start the stopped server again after ``delay_s`` (blocking)."""
        time.sleep(delay_s)
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.log), "-w", "-t", "60", "start")  # fmt: skip

    def remove(self) -> None:
        """Stop the server and delete the cluster's folder."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
