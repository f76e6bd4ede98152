"""Start, stop and inspect mmkg's local Neo4j 5.26 Community server (``mmkg neo4j ...``).

The server is ``neo4j_server/launcher/`` (a small Maven project around Neo4j's embedded
``DatabaseManagementService``), built once with ``mvn`` from Maven Central and run with a Java 17
(or 21) JVM. It listens on 127.0.0.1 only: Bolt on ``Neo4jSettings.bolt_port``, HTTP + Neo4j
Browser on ``Neo4jSettings.http_port``. Authentication is on. The password is
``Neo4jSettings.password`` when it is set (``MMKG_NEO4J_PASSWORD``, or a caller's settings), else a
random one generated at the first start into ``<home>/password`` (mode 0600, created with that
mode), which ``Neo4jSettings.from_env`` reads from then on. The launcher makes it the initial
password of a new store only (handed over in the environment, never on the command line): a
password changed later with ``ALTER CURRENT USER SET PASSWORD`` or in the Browser is kept across
restarts, and a start whose password the server refuses fails at once, saying so. Everything else
lives under ``Neo4jSettings.home`` (created mode 0700)::

    <home>/password           the generated password (absent when MMKG_NEO4J_PASSWORD set the first one)
    <home>/data/              stores and tx logs (kept across restarts, recovered after a crash)
    <home>/import/            LOAD CSV's import root, empty (``file:`` URLs are refused anyway)
    <home>/logs/launcher.log  the launcher's stdout/stderr (beside Neo4j's debug.log, query.log)
    <home>/neo4j.pid          pid of the running launcher (leader of its own process group)

HTTP answers with ``Access-Control-Allow-Origin: http://127.0.0.1:<http_port>`` (its own
origin), not Neo4j's default ``*``. Bolt has no TLS: it listens on loopback only.

Java: ``MMKG_JAVA_HOME`` if set, else a Java 17 (then 21) under /usr/lib/jvm, else ``JAVA_HOME``
or ``java`` on PATH if it is 17..21. Neo4j 5.26 does not run on newer Javas.

APOC core (``org.neo4j.procedure:apoc-core``, built into ``launcher/target/plugins``) is loaded only
when asked: ``start(settings, apoc=True)`` (the load benchmark, whose peer neo4j-graphrag calls
``apoc.merge.relationship``). mmkg itself never calls a plugin, so its servers run without one.

:func:`admin` runs Neo4j's admin tool (``org.neo4j.cli.AdminTool``: ``database import full`` and
the rest) from the launcher's classpath against a home of its own, e.g. a throw-away store for
the bulk importer.

Python API: :func:`build_launcher`, :func:`start`, :func:`stop`, :func:`status`, :func:`admin`, :func:`cli`.
Only the standard library is imported at module level; the neo4j driver is imported when used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:  # pragma: no cover
    from mmkg.settings import Neo4jSettings

LAUNCHER_DIR = Path(__file__).resolve().parent / "launcher"
TARGET_DIR = LAUNCHER_DIR / "target"
LAUNCHER_JAR = TARGET_DIR / "neo4j-launcher.jar"
#: Procedure jars the build copies (APOC core and its libraries), loaded by ``start(apoc=True)``.
PLUGINS_DIR = TARGET_DIR / "plugins"
BUILD_STAMP = TARGET_DIR / ".mmkg-build-stamp"

HOST = "127.0.0.1"
READY_MARKER = "MMKG_NEO4J_READY"
#: Environment variable through which the initial password reaches the launcher (never argv).
PASSWORD_ENV = "MMKG_NEO4J_LAUNCHER_PASSWORD"
#: Bytes of randomness in a generated password (``secrets.token_urlsafe``: 43 characters).
PASSWORD_BYTES = 32
#: JVM flags for a 2-core / modest-memory machine (page cache: 256 MiB, set in the launcher).
#: A fixed 1 GiB heap (touched at start) with the throughput collector, final fields trusted by
#: the JIT: the load benchmark's batched total went 6.63 s -> 6.12 s against the former
#: ``-Xms512m -Xmx1g -XX:+UseG1GC`` (medians of 4 loads, the servers side by side and loaded in
#: turn by one process, 2 cores); ParallelGC alone gave 6.35 s.
JVM_OPTIONS = [
    "-Xms1g",
    "-Xmx1g",
    "-XX:+UseParallelGC",
    "-XX:+AlwaysPreTouch",
    "-XX:+UnlockExperimentalVMOptions",
    "-XX:+TrustFinalNonStaticFields",
    "-XX:+DisableExplicitGC",
    "-XX:-OmitStackTraceInFastThrow",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djdk.nio.maxCachedBufferSize=1024",
    "-Dio.netty.tryReflectionSetAccessible=true",
    "-Dlog4j2.disable.jmx=true",
    "-Dfile.encoding=UTF-8",
]
SUPPORTED_JAVA = (17, 21)  # preference order; Neo4j 5.26 supports exactly these LTS releases

# Popen objects of servers started by this Python process, so they can be reaped (not left as
# zombies that still look alive to os.kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen] = {}


class Neo4jServerError(RuntimeError):
    """The local Neo4j server could not be built, started or stopped."""


# --------------------------------------------------------------------------------------- Java


def _java_feature_version(java: Path) -> int | None:
    """Major version of a ``java`` executable (17, 21, ...) or None when it does not run."""
    release = java.parent.parent / "release"
    if release.is_file():
        m = re.search(r'^JAVA_VERSION="([^"]+)"', release.read_text(errors="replace"), re.M)
        if m:
            return _parse_java_version(m.group(1))
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    return _parse_java_version(m.group(1)) if m else None


def _parse_java_version(text: str) -> int | None:
    parts = re.findall(r"\d+", text)
    if not parts:
        return None
    major = int(parts[0])
    return int(parts[1]) if major == 1 and len(parts) > 1 else major  # 1.8 -> 8


def find_java_home() -> Path:
    """The Java home used to build and run the launcher (see the module docstring)."""
    explicit = os.environ.get("MMKG_JAVA_HOME")
    if explicit:
        home = Path(explicit).expanduser()
        if not (home / "bin" / "java").is_file():
            raise Neo4jServerError(f"MMKG_JAVA_HOME={explicit} has no bin/java")
        return home

    jvm_root = Path("/usr/lib/jvm")
    candidates: dict[int, list[Path]] = {v: [] for v in SUPPORTED_JAVA}
    if jvm_root.is_dir():
        seen: set[Path] = set()
        for home in sorted(jvm_root.iterdir()):
            java = home / "bin" / "java"
            if not java.is_file() or home.resolve() in seen:
                continue
            seen.add(home.resolve())
            version = _java_feature_version(java)
            if version in candidates:
                candidates[version].append(home)
    for version in SUPPORTED_JAVA:
        if candidates[version]:
            return candidates[version][0]

    fallbacks: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        fallbacks.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    on_path = shutil.which("java")
    if on_path:
        fallbacks.append(Path(on_path).resolve())
    for java in fallbacks:
        version = _java_feature_version(java)
        if version is not None and SUPPORTED_JAVA[0] <= version <= SUPPORTED_JAVA[-1]:
            return java.parent.parent
    raise Neo4jServerError(
        "no Java 17 or 21 found (Neo4j 5.26 needs one): install openjdk-17 or set MMKG_JAVA_HOME"
    )


# -------------------------------------------------------------------------------------- build


def _source_hash() -> str:
    digest = hashlib.sha256()
    files = [LAUNCHER_DIR / "pom.xml", *sorted((LAUNCHER_DIR / "src").rglob("*"))]
    for path in files:
        if path.is_file():
            digest.update(path.relative_to(LAUNCHER_DIR).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock (no-op where fcntl is missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _launcher_is_current(source_hash: str) -> bool:
    return (
        LAUNCHER_JAR.is_file()
        and (TARGET_DIR / "lib").is_dir()
        and BUILD_STAMP.is_file()
        and BUILD_STAMP.read_text().strip() == source_hash
    )


def build_launcher(force: bool = False) -> Path:
    """Build ``launcher/target/neo4j-launcher.jar`` (+ ``target/lib``) with Maven.

    Cached: skipped when the jar exists and pom.xml and the Java sources hash to the stamp of the
    last successful build. The first build downloads Neo4j (~140 MB) into ``~/.m2``.
    """
    source_hash = _source_hash()
    if not force and _launcher_is_current(source_hash):
        return LAUNCHER_JAR
    with _file_lock(TARGET_DIR / ".build.lock"):
        if not force and _launcher_is_current(source_hash):  # built by someone else meanwhile
            return LAUNCHER_JAR
        mvn = shutil.which("mvn")
        if mvn is None:
            raise Neo4jServerError(
                "Maven (mvn) is not on PATH; it is needed once to build neo4j-launcher"
            )
        env = dict(os.environ, JAVA_HOME=str(find_java_home()))
        cmd = [mvn, "-q", "-B", "-Dstyle.color=never", "package"]
        BUILD_STAMP.unlink(missing_ok=True)
        proc = subprocess.run(
            cmd, cwd=LAUNCHER_DIR, env=env, capture_output=True, text=True, check=False
        )
        if proc.returncode != 0 or not LAUNCHER_JAR.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
            raise Neo4jServerError(
                f"building neo4j-launcher failed ({' '.join(cmd)} in {LAUNCHER_DIR}, "
                f"exit {proc.returncode}):\n{tail}"
            )
        BUILD_STAMP.write_text(source_hash + "\n")
    return LAUNCHER_JAR


# ---------------------------------------------------------------------------------- processes


def _settings(settings: Neo4jSettings | None) -> Neo4jSettings:
    if settings is not None:
        return settings
    from mmkg.settings import Neo4jSettings

    return Neo4jSettings.from_env()


def _home(s: Neo4jSettings) -> Path:
    return Path(s.home).expanduser().absolute()


def _pid_file(s: Neo4jSettings) -> Path:
    return _home(s) / "neo4j.pid"


def password_file(s: Neo4jSettings) -> Path:
    from mmkg.settings import neo4j_password_file

    return neo4j_password_file(_home(s))


def _make_home(home: Path) -> None:
    """Create the server's home (mode 0700: stores, logs, the password); an existing one is kept."""
    if not home.is_dir():
        home.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            home.mkdir(mode=0o700)
    (home / "logs").mkdir(exist_ok=True)


def _read_password(path: Path) -> str:
    """The password in ``path`` ("" when there is none); a file others can read is made 0600."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise Neo4jServerError(f"cannot read the Neo4j password file {path}: {exc}") from exc
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(handle.fileno())
        if not S_ISREG(st.st_mode):
            raise Neo4jServerError(f"the Neo4j password file {path} is not a regular file")
        if st.st_mode & 0o077:
            try:
                os.fchmod(handle.fileno(), 0o600)
            except OSError as exc:
                raise Neo4jServerError(
                    f"the Neo4j password file {path} is readable by others and cannot be made "
                    f"0600: {exc}"
                ) from exc
        password = handle.read().decode("utf-8", errors="strict").strip()
    if not password:
        raise Neo4jServerError(
            f"the Neo4j password file {path} is empty: write the server's password into it, "
            "or delete it and the data directory to start afresh"
        )
    return password


def ensure_password(s: Neo4jSettings) -> str:
    """The generated password of the server under ``s.home``: read from ``<home>/password``, or
    generated (``secrets.token_urlsafe``) and written there when there is none yet.

    The file is created under a temporary name with ``O_CREAT | O_EXCL`` and mode 0600 (never
    readable by others, whatever the umask), synced, then linked into place: a reader sees either
    no file or the whole password, and a file someone else linked first wins.
    """
    path = password_file(s)
    existing = _read_password(path)
    if existing:
        return existing
    _make_home(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # the umask can only take bits away; make it exactly 0600
        os.write(fd, (secrets.token_urlsafe(PASSWORD_BYTES) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic, and never replaces a password file that exists
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return _read_password(path)


def _with_password(s: Neo4jSettings, create: bool) -> Neo4jSettings:
    """``s`` with its password filled in from ``<home>/password`` when it has none of its own
    (generating it first when ``create``)."""
    if s.password:
        return s
    password = ensure_password(s) if create else _read_password(password_file(s))
    return dataclasses.replace(s, password=password)


def log_file(settings: Neo4jSettings | None = None) -> Path:
    return _home(_settings(settings)) / "logs" / "launcher.log"


def local_uri(s: Neo4jSettings) -> str:
    return f"bolt://{HOST}:{s.bolt_port}"


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _alive(pid: int) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        _CHILDREN.pop(pid, None)
        return False
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap if it is our (zombie) child
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie whose parent has not reaped it yet is dead for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_our_launcher(pid: int, home: Path) -> bool:
    """True when pid is a running launcher for this home (guards against pid reuse)."""
    if not _alive(pid):
        return False
    cmd = _cmdline(pid)
    if cmd is None:  # no /proc (not Linux): trust the pid file
        return True
    if not cmd:  # a process that is exiting has no cmdline any more; still a JVM?
        with contextlib.suppress(OSError):
            return Path(f"/proc/{pid}/comm").read_text().strip() == "java"
        return False
    return any("neo4j-launcher" in part for part in cmd) and f"-Dmmkg.neo4j.home={home}" in cmd


def _find_pid(s: Neo4jSettings) -> int | None:
    """Pid of the running launcher for this home: from the pid file, else by scanning /proc."""
    home = _home(s)
    pid_file = _pid_file(s)
    with contextlib.suppress(OSError, ValueError):
        pid = int(pid_file.read_text().strip())
        if _is_our_launcher(pid, home):
            return pid
    proc = Path("/proc")
    if proc.is_dir():
        marker = f"-Dmmkg.neo4j.home={home}"
        for entry in proc.iterdir():
            if entry.name.isdigit():
                cmd = _cmdline(int(entry.name))
                if cmd and marker in cmd and _alive(int(entry.name)):
                    return int(entry.name)
    return None


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((HOST, port)) == 0


class _Refused(str):
    """A :func:`_bolt_check` answer saying the server is up but refuses these credentials."""


def _bolt_check(s: Neo4jSettings, timeout: float = 5.0) -> str | None:
    """None when Bolt answers an authenticated ``RETURN 1``; otherwise why not (a
    :class:`_Refused` when the server refuses the user or password)."""
    from neo4j import GraphDatabase
    from neo4j.exceptions import AuthError

    if not s.password:
        return _Refused(f"no password for user {s.user!r} (none given, no {password_file(s)})")

    try:
        with GraphDatabase.driver(
            local_uri(s),
            auth=(s.user, s.password),
            connection_timeout=timeout,
            connection_acquisition_timeout=timeout,
            max_connection_pool_size=1,
        ) as driver, driver.session() as session:
            record = session.run("RETURN 1 AS ok").single()
            if record is None or record["ok"] != 1:
                return "unexpected answer to RETURN 1"
            return None
    except AuthError as exc:
        return _Refused(f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - any failure means "not answering (yet)"
        return f"{type(exc).__name__}: {exc}"


def _log_tail(path: Path, lines: int = 40, offset: int = 0) -> str:
    """The last lines of the launcher log (from ``offset``), its own error lines first."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read().decode(errors="replace")
    except OSError:
        return "(no launcher log)"
    all_lines = text.splitlines()
    errors = [line for line in all_lines if line.startswith("neo4j-launcher:")]
    tail = "\n".join(all_lines[-lines:])
    return "\n".join(errors) + "\n--- log tail ---\n" + tail if errors else tail


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        try:
            pgid = os.getpgid(pid)
        except ProcessLookupError:
            return
        if pgid == pid:  # started in its own session: take the whole group
            os.killpg(pgid, sig)
        else:
            os.kill(pid, sig)


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.2)
    return not _alive(pid)


def _terminate(pid: int, timeout: float) -> None:
    _signal_group(pid, signal.SIGTERM)
    if not _wait_dead(pid, timeout):
        _signal_group(pid, signal.SIGKILL)
        _wait_dead(pid, 15)
    _CHILDREN.pop(pid, None)


# -------------------------------------------------------------------------------- public API


def _refused_message(s: Neo4jSettings, why: str) -> str:
    return (
        f"Neo4j (home {_home(s)}) refuses user {s.user!r} with the password from "
        f"MMKG_NEO4J_PASSWORD or {password_file(s)} ({why}). The server sets only the initial "
        "password of a new store and keeps one changed later (ALTER CURRENT USER SET PASSWORD, "
        "the Browser): set MMKG_NEO4J_PASSWORD to the current one, or write it into that file"
    )


def start(settings: Neo4jSettings | None = None, timeout: float = 120, *, apoc: bool = False) -> int:
    """Start the local server (building the launcher if needed) and return its pid.

    Idempotent: when a launcher for this home is already running, waits until it answers and
    returns its pid. Returns only once Bolt answers an authenticated ``RETURN 1``; raises
    :class:`Neo4jServerError` with the tail of ``launcher.log`` when the process dies or
    ``timeout`` seconds pass (a server that did not come up in time is stopped again), and at once
    when the server refuses the password (a server this call started is then stopped again).
    Settings without a password use (and at the first start generate) ``<home>/password``.
    ``apoc=True`` loads APOC core (``PLUGINS_DIR``) into a server this call starts; a server that
    is already running is returned as it is.
    """
    s = _settings(settings)
    home = _home(s)
    log = log_file(s)
    _make_home(home)
    deadline = time.monotonic() + timeout

    with _file_lock(home / ".launcher.lock"):
        s = _with_password(s, create=True)
        pid = _find_pid(s)
        if pid is not None:  # already running (or still starting, or dying): wait for it
            last = None
            while _alive(pid):
                last = _bolt_check(s)
                if last is None:
                    _pid_file(s).write_text(f"{pid}\n")
                    return pid
                if isinstance(last, _Refused):
                    raise Neo4jServerError(f"{_refused_message(s, last)}; see {log}")
                if time.monotonic() >= deadline:
                    raise Neo4jServerError(
                        f"Neo4j (pid {pid}, home {home}) is running but does not answer on "
                        f"{local_uri(s)} ({last}); see {log}:\n{_log_tail(log)}"
                    )
                time.sleep(1.0)
            # it exited meanwhile: start a fresh one below
        _pid_file(s).unlink(missing_ok=True)

        for port in (s.bolt_port, s.http_port):
            grace = time.monotonic() + 5  # a process that was just killed may still hold it
            while _port_open(port) and time.monotonic() < grace:
                time.sleep(0.25)
            if _port_open(port):
                raise Neo4jServerError(
                    f"port {HOST}:{port} is already in use by another process "
                    f"(not the mmkg Neo4j for {home}); "
                    "stop it or set MMKG_NEO4J_BOLT_PORT / MMKG_NEO4J_HTTP_PORT"
                )

        jar = build_launcher()
        java = find_java_home() / "bin" / "java"
        cmd = [
            str(java),
            *JVM_OPTIONS,
            f"-Dmmkg.neo4j.home={home}",
            "-jar",
            str(jar),
            "--home", str(home),
            "--bolt-port", str(s.bolt_port),
            "--http-port", str(s.http_port),
            "--user", s.user,
            "--initial-password-env", PASSWORD_ENV,
        ]  # fmt: skip
        if apoc:
            cmd = _with_plugins(cmd, jar)
        env = dict(os.environ)
        env[PASSWORD_ENV] = s.password
        with open(log, "ab") as out:
            offset = out.tell()
            out.write(
                f"--- mmkg neo4j start {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd)}\n"
                .encode()
            )
            out.flush()
            proc = subprocess.Popen(
                cmd,
                cwd=home,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        _CHILDREN[proc.pid] = proc
        _pid_file(s).write_text(f"{proc.pid}\n")

        last = "launcher not ready yet"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _CHILDREN.pop(proc.pid, None)
                _pid_file(s).unlink(missing_ok=True)
                raise Neo4jServerError(
                    f"Neo4j launcher exited with code {proc.returncode} during startup; "
                    f"{log}:\n{_log_tail(log, offset=offset)}"
                )
            # Try Bolt only after the launcher has set the password: failed logins before that
            # would trip Neo4j's login rate limit.
            if _ready_line_since(log, offset):
                last = _bolt_check(s)
                if last is None:
                    return proc.pid
                if isinstance(last, _Refused):
                    _terminate(proc.pid, 30)
                    _pid_file(s).unlink(missing_ok=True)
                    raise Neo4jServerError(f"{_refused_message(s, last)}; stopped it. See {log}")
            time.sleep(0.5)

        _terminate(proc.pid, 30)
        _pid_file(s).unlink(missing_ok=True)
        raise Neo4jServerError(
            f"Neo4j did not answer on {local_uri(s)} within {timeout:.0f}s ({last}); "
            f"stopped it. {log}:\n{_log_tail(log, offset=offset)}"
        )


def _with_plugins(cmd: list[str], jar: Path) -> list[str]:
    """The launcher command that loads APOC core: its jars go on the JVM's classpath too (APOC's
    kernel extension, which its procedures are injected with, is found there only, as the ``neo4j``
    script puts ``plugins/*`` on the classpath), and ``--plugins`` registers their procedures. With
    ``-cp`` instead of ``-jar`` the jar manifest's ``Add-Opens`` are passed as flags."""
    if not any(PLUGINS_DIR.glob("apoc-core-*.jar")):
        raise Neo4jServerError(f"APOC core is not in {PLUGINS_DIR}: rebuild with `mmkg neo4j build`")
    import zipfile

    with zipfile.ZipFile(jar) as archive:
        manifest = archive.read("META-INF/MANIFEST.MF").decode().replace("\r\n ", "").replace("\n ", "")
    opens = next((line.split(":", 1)[1].split() for line in manifest.splitlines() if line.startswith("Add-Opens:")), [])
    main = next(line.split(":", 1)[1].strip() for line in manifest.splitlines() if line.startswith("Main-Class:"))
    i = cmd.index("-jar")
    classpath = os.pathsep.join([str(jar), f"{TARGET_DIR / 'lib'}/*", f"{PLUGINS_DIR}/*"])
    return [*cmd[:i], *(f"--add-opens={m}=ALL-UNNAMED" for m in opens), "-cp", classpath, main,
            *cmd[i + 2 :], "--plugins", str(PLUGINS_DIR)]


def _ready_line_since(log: Path, offset: int) -> bool:
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            return READY_MARKER.encode() in handle.read()
    except OSError:
        return False


def stop(settings: Neo4jSettings | None = None, timeout: float = 60) -> bool:
    """Stop the local server: SIGTERM to its process group (clean Neo4j shutdown), SIGKILL after
    ``timeout`` seconds. Returns True when a server was running. Fine if none is."""
    s = _settings(settings)
    pid = _find_pid(s)
    if pid is not None:
        _terminate(pid, timeout)
    _pid_file(s).unlink(missing_ok=True)
    return pid is not None


def status(settings: Neo4jSettings | None = None) -> dict:
    """Where the local server stands: ``running``, ``pid``, ``bolt`` (answers an authenticated
    query), ``error`` (why not), ``uri``, ``http``, ``home``, ``log``."""
    s = _settings(settings)
    pid = _find_pid(s)
    error = _bolt_check(_with_password(s, create=False), timeout=3.0) if pid is not None else "not running"
    return {
        "running": pid is not None,
        "pid": pid,
        "bolt": pid is not None and error is None,
        "error": error,
        "uri": local_uri(s),
        "http": f"http://{HOST}:{s.http_port}/browser/",
        "home": str(_home(s)),
        "log": str(log_file(s)),
    }


def admin(args: list[str], home: Path, timeout: float = 3600) -> subprocess.CompletedProcess:
    """Run Neo4j's admin tool (``neo4j-admin``: ``org.neo4j.cli.AdminTool``, on the launcher's
    classpath) with ``args``, e.g. ``["database", "import", "full", "neo4j", "--nodes=...", ...]``,
    with ``home`` as its NEO4J_HOME (stores under ``<home>/data``; an empty ``<home>/conf/neo4j.conf``
    is created). Never point it at a running server's home. Returns the finished process (stdout and
    stderr together in ``stdout``); raises :class:`Neo4jServerError` when it exits non-zero."""
    home = Path(home).expanduser().absolute()
    _make_home(home)
    conf = home / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "neo4j.conf").touch()
    jar = build_launcher()
    java = find_java_home() / "bin" / "java"
    cmd = [str(java), "-cp", f"{jar}{os.pathsep}{TARGET_DIR / 'lib'}/*", "org.neo4j.cli.AdminTool", *args]
    env = dict(os.environ, NEO4J_HOME=str(home), NEO4J_CONF=str(conf))
    proc = subprocess.run(cmd, cwd=home, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-30:])
        raise Neo4jServerError(f"neo4j-admin {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
    return proc


def cli(action: str) -> int:
    """``mmkg neo4j start|stop|status|build``: prints human-readable lines, returns the exit
    code (0 ok, 1 error, 3 = status of a server that is not running)."""
    try:
        if action == "build":
            fresh = _launcher_is_current(_source_hash())
            started = time.monotonic()
            jar = build_launcher()
            took = time.monotonic() - started
            print(f"neo4j launcher {'up to date' if fresh else f'built in {took:.0f}s'}: {jar}")
            return 0
        s = _settings(None)
        if action == "start":
            started = time.monotonic()
            pid = start(s)
            print(f"Neo4j running (pid {pid}, ready after {time.monotonic() - started:.0f}s)")
            secret = "MMKG_NEO4J_PASSWORD" if os.environ.get("MMKG_NEO4J_PASSWORD") else password_file(s)
            print(f"  bolt:    {local_uri(s)}  (user {s.user}, password in {secret})")
            print(f"  browser: http://{HOST}:{s.http_port}/browser/")
            print(f"  home:    {_home(s)}")
            print(f"  log:     {log_file(s)}")
            return 0
        if action == "stop":
            pid = _find_pid(s)
            if stop(s):
                print(f"Neo4j stopped (pid {pid})")
            else:
                print("Neo4j was not running")
            return 0
        if action == "status":
            st = status(s)
            if not st["running"]:
                print(f"Neo4j is not running (home {st['home']})")
                return 3
            state = "answering" if st["bolt"] else f"NOT answering: {st['error']}"
            print(f"Neo4j running (pid {st['pid']}), {st['uri']} {state}")
            print(f"  browser: {st['http']}")
            print(f"  home:    {st['home']}")
            print(f"  log:     {st['log']}")
            return 0 if st["bolt"] else 1
    except Neo4jServerError as exc:
        print(f"mmkg neo4j {action}: {exc}", file=sys.stderr)
        return 1
    print(f"mmkg neo4j: unknown action {action!r} (start|stop|status|build)", file=sys.stderr)
    return 2
