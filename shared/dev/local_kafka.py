"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) for
development and integration tests, run from the jars Maven Central publishes.

No Docker is needed: the broker's jars are gathered once with Maven into a cache
outside the work tree, keyed by version, and the broker runs as a detached JVM on
127.0.0.1.

    python -m shared.dev.local_kafka up [--port 9092]      # or: cityscore dev kafka up
    python -m shared.dev.local_kafka status
    python -m shared.dev.local_kafka down

With ``--sasl-user NAME:PASSWORD`` (any number of times) the broker's client listener is
SASL_PLAINTEXT instead of PLAINTEXT: it takes PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512,
each user with the same password in all three, and refuses anyone else.

Layout (``CITYSCORE_CACHE`` defaults to ``~/.cache/cityscore``)::

    $CITYSCORE_CACHE/kafka-<version>/libs/       the broker's jars
    $CITYSCORE_CACHE/kafka-run-<port>/           pid file, state, and by default:
        server.properties  data/  logs/server.log  kafka.out

From Python: ``start(port)`` returns a :class:`Broker` once metadata lists a broker and
an acks=all write succeeds (it just returns when one already runs there), ``stop(port)``,
``status(port)``, ``ensure_jars()``; ``start(port, sasl_users={name: password})`` for the
SASL listener.

Environment: ``CITYSCORE_KAFKA_VERSION`` (default 4.3.1; 3.9.1 is the known-good
fallback), ``CITYSCORE_KAFKA_JAVA_OPTS`` (extra JVM options), ``CITYSCORE_REPO``
(where deploy/kafka/ is, when not run from the source tree).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import click

KAFKA_VERSION = os.environ.get("CITYSCORE_KAFKA_VERSION", "4.3.1")
DEFAULT_PORT = 9092
DEFAULT_CONTROLLER_PORT = 9093
HOST = "127.0.0.1"
PROBE_TOPIC = "cityscore-dev-probe"
JVM_OPTS = ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC"]
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
# The broker's own user on its SASL listener (PLAIN, for the inter-broker connection and the
# launcher's readiness probe); its password is made anew at each start and kept in state.json.
BROKER_USER = "cityscore-broker"

_REPO_ROOT = Path(__file__).resolve().parents[1]


class DevKafkaError(RuntimeError):
    """The local broker could not be provided; the message says why and what to look at."""


@dataclass
class Broker:
    """A broker reachable on 127.0.0.1:port; ``started`` is True when this call launched it."""

    port: int
    controller_port: int | None
    pid: int | None
    run_dir: str | None
    log_file: str | None
    version: str | None
    started: bool = False
    sasl: bool = False  # the client listener is SASL_PLAINTEXT

    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.port}"


# ---------------------------------------------------------------- paths


def cache_root() -> Path:
    """The cache for jars and broker runs, outside the work tree."""
    root = os.environ.get("CITYSCORE_CACHE") or str(Path.home() / ".cache" / "cityscore")
    return Path(root).expanduser()


def state_dir(port: int) -> Path:
    """Where the pid file and state of the broker on ``port`` live."""
    return cache_root() / f"kafka-run-{port}"


def _deploy_file(name: str) -> Path:
    """deploy/kafka/<name> from the source tree (or $CITYSCORE_REPO, or the cwd)."""
    candidates = [_REPO_ROOT]
    if os.environ.get("CITYSCORE_REPO"):
        candidates.insert(0, Path(os.environ["CITYSCORE_REPO"]))
    candidates.append(Path.cwd())
    for root in candidates:
        path = root / "deploy" / "kafka" / name
        if path.is_file():
            return path
    raise DevKafkaError(
        f"deploy/kafka/{name} not found (looked under {', '.join(map(str, candidates))}); "
        "run from the cityscore source tree or set CITYSCORE_REPO"
    )


@contextlib.contextmanager
def _locked(path: Path):
    """Serialise start/stop/gather across processes (pytest workers, two shells)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- tools and jars


def _apt_install(package: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise DevKafkaError(f"{package!r} is missing; install it (apt-get install -y {package})")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = logging.getLogger(__name__)
    log.warning("installing %s with apt-get", package)
    if subprocess.run(["apt-get", "install", "-y", "-q", package], env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", package], env=env, check=True)


def _require(binary: str, apt_package: str) -> str:
    """The path of ``binary``, installing its Debian package when missing and allowed."""
    found = shutil.which(binary)
    if not found:
        _apt_install(apt_package)
        found = shutil.which(binary)
    if not found:
        raise DevKafkaError(f"{binary} not found even after installing {apt_package}")
    return found


def _java() -> str:
    return _require("java", "openjdk-17-jre-headless")


def _libs_digest(pom: Path, version: str) -> str:
    return hashlib.sha256(pom.read_bytes() + version.encode()).hexdigest()


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """The directory holding every jar of Kafka ``version``; gathers them with Maven once."""
    pom = _deploy_file("pom.xml")
    home = cache_root() / f"kafka-{version}"
    libs = home / "libs"
    marker = libs / ".cityscore-complete"
    digest = _libs_digest(pom, version)
    if marker.is_file() and marker.read_text().strip() == digest:
        return libs
    with _locked(home / ".lock"):
        if marker.is_file() and marker.read_text().strip() == digest:
            return libs
        mvn = _require("mvn", "maven")
        _java()
        # Build from a copy of the pom in the cache so Maven writes nothing into the work tree.
        work = home / "build"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        shutil.copy(pom, work / "pom.xml")
        staging = home / f"libs.tmp-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        cmd = [
            mvn, "-B", "-q", "-Dstyle.color=never", "-f", str(work / "pom.xml"), "dependency:copy-dependencies",
            f"-Dkafka.version={version}", f"-Dkafka.libs.dir={staging}",
        ]
        click.echo(f"gathering Kafka {version} jars from Maven Central into {libs} ...", err=True)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0 or not (staging / f"kafka_2.13-{version}.jar").is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise DevKafkaError(
                f"mvn could not gather kafka_2.13:{version} (exit {result.returncode}):\n"
                + (result.stdout + result.stderr)[-4000:]
            )
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        marker.write_text(digest + "\n")
        shutil.rmtree(work, ignore_errors=True)
        return libs


# ---------------------------------------------------------------- processes


def _alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def _cmdline(pid: int) -> str:
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.exists():
        with contextlib.suppress(OSError):
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return ""
    out = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return out.stdout


def _read_state(port: int) -> dict | None:
    """The recorded state of our broker on ``port`` when its process still runs."""
    path = state_dir(port) / "state.json"
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except ValueError:
        return None
    pid = state.get("pid")
    if not pid or not _alive(pid) or "kafka.Kafka" not in _cmdline(pid):
        return None
    return state


def _port_open(port: int, timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=timeout):
        return True
    return False


@contextlib.contextmanager
def _quiet_kafka_logs():
    """kafka-python logs every refused connection while a broker boots; hush it meanwhile."""
    logger = logging.getLogger("kafka")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(previous)


def probe(bootstrap_servers: str, timeout: float = 10.0, security: dict | None = None) -> dict:
    """Check a broker is usable: metadata lists a broker and an acks=all write succeeds.

    `security`: kafka-python's SASL/TLS arguments (see shared.platform.kafka.kafka_security); none by default.
    Returns the cluster description; raises on failure.
    """
    security = security or {}
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import TopicAlreadyExistsError

    timeout_ms = max(int(timeout * 1000), 1000)
    with _quiet_kafka_logs():
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="cityscore-devkafka-probe",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
            **security,
        )
        try:
            cluster = admin.describe_cluster()
            if not cluster.get("brokers"):
                raise DevKafkaError(f"{bootstrap_servers}: metadata lists no broker")
            try:
                admin.create_topics(
                    {PROBE_TOPIC: {"num_partitions": 1, "replication_factor": 1}},
                    timeout_ms=timeout_ms,
                    wait_for_metadata=True,
                )
            except TopicAlreadyExistsError:
                pass
        finally:
            admin.close()
        producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id="cityscore-devkafka-probe",
            acks="all",
            request_timeout_ms=timeout_ms,
            max_block_ms=timeout_ms,
            **security,
        )
        try:
            producer.send(PROBE_TOPIC, key=b"probe", value=str(time.time()).encode()).get(timeout=timeout)
        finally:
            producer.close(timeout=5)
    return cluster


def _is_ready(port: int, timeout: float = 5.0, security: dict | None = None) -> bool:
    if not _port_open(port):
        return False
    try:
        probe(f"{HOST}:{port}", timeout=timeout, security=security)
    except Exception:
        return False
    return True


def _cluster_id() -> str:
    """A Kafka Uuid (base64url of 16 random bytes, no padding; never starts with '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _jaas_quote(value: str) -> str:
    """A JAAS string (the values are checked by _check_sasl_users: no quote or backslash)."""
    return f'"{value}"'


def _sasl_properties(listener: str, users: dict[str, str], broker_password: str) -> dict[str, str]:
    """The SASL settings of `listener`: PLAIN users in its JAAS line, SCRAM users in the metadata
    (written by `kafka-storage format --add-scram`, see _scram_arguments)."""
    prefix = f"listener.name.{listener.lower()}"
    plain_users = " ".join(f"user_{name}={_jaas_quote(password)}"
                           for name, password in {**users, BROKER_USER: broker_password}.items())
    return {
        "sasl.enabled.mechanisms": ",".join(SASL_MECHANISMS),
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        f"{prefix}.plain.sasl.jaas.config": (
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            f"username={_jaas_quote(BROKER_USER)} password={_jaas_quote(broker_password)} {plain_users};"),
        f"{prefix}.scram-sha-256.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        f"{prefix}.scram-sha-512.sasl.jaas.config": "org.apache.kafka.common.security.scram.ScramLoginModule required;",
    }


def _scram_arguments(users: dict[str, str]) -> list[str]:
    """`kafka-storage format` arguments that create each SCRAM user (KRaft keeps them in its metadata)."""
    args = []
    for name, password in users.items():
        for mechanism in SASL_MECHANISMS[1:]:
            args += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
    return args


def _server_properties(port: int, controller_port: int, data_dir: Path, sasl_users: dict[str, str] | None = None,
                       broker_password: str = "") -> str:
    listener = "SASL_PLAINTEXT" if sasl_users else "PLAINTEXT"
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"{listener}://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"{listener}://{HOST}:{port}",
        "listener.security.protocol.map": f"{listener}:{listener},CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": listener,
        **(_sasl_properties(listener, sasl_users, broker_password) if sasl_users else {}),
        "log.dirs": str(data_dir),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
    }
    lines = ["# written by shared/dev/local_kafka.py on every start; edits are overwritten"]
    lines += [f"{key}={value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def _tail(path: Path, lines: int = 40) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def _log_file(run_dir: Path) -> Path:
    return run_dir / "logs" / "server.log"


def start(
    port: int = DEFAULT_PORT,
    data_dir: str | os.PathLike | None = None,
    wait: float = 60,
    controller_port: int | None = None,
    version: str = KAFKA_VERSION,
    fresh: bool = False,
    sasl_users: dict[str, str] | None = None,
) -> Broker:
    """Start (or find running) a broker on 127.0.0.1:``port`` and wait until it is usable.

    ``fresh`` wipes the data of a previous run first (only when this call starts it).
    ``sasl_users`` (name -> password): the client listener is SASL_PLAINTEXT and lets in only
    these users, by PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512. Its data is always fresh, so
    the SCRAM users are exactly these.
    """
    users_digest = _users_digest(sasl_users) if sasl_users else None
    if sasl_users:
        _check_sasl_users(sasl_users)
        fresh = True
    if controller_port is None:
        controller_port = DEFAULT_CONTROLLER_PORT if port == DEFAULT_PORT else port + 1
    sdir = state_dir(port)
    with _locked(sdir / ".lock"):
        state = _read_state(port)
        if state:
            if state.get("sasl_users_digest") != users_digest:
                raise DevKafkaError(f"the broker on {HOST}:{port} runs with other SASL users (or none); "
                                    f"stop it first (python -m shared.dev.local_kafka down --port {port})")
            _wait_ready(port, state["pid"], Path(state["log_file"]), wait, security=_state_security(state))
            return Broker(port, state["controller_port"], state["pid"], state["run_dir"],
                          state["log_file"], state["version"], started=False, sasl=bool(users_digest))
        if _port_open(port):
            if sasl_users:
                raise DevKafkaError(f"{HOST}:{port} is taken by a server this launcher did not start")
            if _is_ready(port):
                # Someone else's broker (another launcher, a container): usable as it is.
                return Broker(port, None, None, None, None, None, started=False)
            raise DevKafkaError(f"{HOST}:{port} is taken by something that is not a Kafka broker")
        if _port_open(controller_port):
            raise DevKafkaError(f"controller port {HOST}:{controller_port} is already taken")

        libs = ensure_jars(version)
        java = _java()
        run_dir = Path(data_dir).expanduser().resolve() if data_dir else sdir
        data = run_dir / "data"
        logs = run_dir / "logs"
        if fresh:
            shutil.rmtree(data, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                (run_dir / "cluster.id").unlink()
        data.mkdir(parents=True, exist_ok=True)
        logs.mkdir(parents=True, exist_ok=True)
        props = run_dir / "server.properties"
        broker_password = secrets.token_urlsafe(24) if sasl_users else ""
        props.write_text(_server_properties(port, controller_port, data, sasl_users, broker_password))
        if sasl_users:
            props.chmod(0o600)  # it holds the users' passwords
        log4j = _deploy_file("log4j2.xml")
        classpath = str(libs / "*")
        common = [
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Dkafka.logs.dir={logs}",
            "-Dkafka.console.level=WARN",
            "-Djava.awt.headless=true",
        ]

        if not (data / "meta.properties").is_file():
            cluster_file = run_dir / "cluster.id"
            if not cluster_file.is_file():
                cluster_file.write_text(_cluster_id() + "\n")
            fmt = subprocess.run(
                [java, "-Xmx256m", *common, "-cp", classpath, "kafka.tools.StorageTool",
                 "format", "-t", cluster_file.read_text().strip(), "-c", str(props),
                 "--ignore-formatted", *_scram_arguments(sasl_users or {})],
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise DevKafkaError(f"kafka-storage format failed:\n{fmt.stdout}{fmt.stderr}")

        out = run_dir / "kafka.out"
        extra = os.environ.get("CITYSCORE_KAFKA_JAVA_OPTS", "").split()
        with open(out, "ab") as sink:
            proc = subprocess.Popen(
                [java, *JVM_OPTS, *extra, *common, "-cp", classpath, "kafka.Kafka", str(props)],
                cwd=run_dir, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )
        log_file = _log_file(run_dir)
        state = {
            "pid": proc.pid, "port": port, "controller_port": controller_port,
            "run_dir": str(run_dir), "log_file": str(log_file), "out_file": str(out),
            "version": version, "started_at": time.time(),
            "sasl_users_digest": users_digest, "broker_password": broker_password or None,
        }
        state_file = sdir / "state.json"
        state_file.touch(mode=0o600)
        state_file.write_text(json.dumps(state, indent=2) + "\n")
        (sdir / "kafka.pid").write_text(f"{proc.pid}\n")
        try:
            _wait_ready(port, proc.pid, log_file, wait, out, security=_state_security(state))
        except BaseException:
            _terminate(proc.pid)
            _clear_state(port)
            raise
        return Broker(port, controller_port, proc.pid, str(run_dir), str(log_file), version,
                      started=True, sasl=bool(sasl_users))


def _users_digest(users: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(users, sort_keys=True).encode()).hexdigest()


def _check_sasl_users(users: dict[str, str]) -> None:
    """Names and passwords that fit the JAAS line and --add-scram's NAME=[name=…,password=…]."""
    for name, password in users.items():
        if not name or not all(c.isalnum() or c in "-_." for c in name) or name == BROKER_USER:
            raise DevKafkaError(f"SASL user name {name!r}: letters, digits, '-', '_' and '.' only, "
                                f"and not {BROKER_USER}")
        if not password or any(c in password for c in '"\\,[]=') or password != password.strip():
            raise DevKafkaError(f"SASL password of {name!r}: must be non-empty, without spaces at its ends "
                                "or any of \" \\ , [ ] =")


def _state_security(state: dict) -> dict | None:
    """How the launcher itself logs in to the broker it started (its own PLAIN user), if SASL."""
    if not state.get("broker_password"):
        return None
    return {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
            "sasl_plain_username": BROKER_USER, "sasl_plain_password": state["broker_password"]}


def _wait_ready(port: int, pid: int, log_file: Path, wait: float, out: Path | None = None,
                security: dict | None = None) -> None:
    deadline = time.monotonic() + wait
    while True:
        if not _alive(pid):
            raise DevKafkaError(
                f"Kafka (pid {pid}) exited while starting on {HOST}:{port}.\n"
                f"--- {log_file}\n{_tail(log_file)}"
                + (f"\n--- {out}\n{_tail(out)}" if out else "")
            )
        remaining = deadline - time.monotonic()
        if _is_ready(port, timeout=max(1.0, min(5.0, remaining)), security=security):
            return
        if time.monotonic() >= deadline:
            raise DevKafkaError(
                f"Kafka on {HOST}:{port} not ready after {wait:.0f}s.\n--- {log_file}\n{_tail(log_file)}"
            )
        time.sleep(0.25)


def _terminate(pid: int, timeout: float = 30) -> None:
    """SIGTERM (Kafka shuts down cleanly), then SIGKILL after ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)


def _clear_state(port: int) -> None:
    for name in ("state.json", "kafka.pid"):
        with contextlib.suppress(FileNotFoundError):
            (state_dir(port) / name).unlink()


def stop(port: int = DEFAULT_PORT, timeout: float = 30) -> bool:
    """Stop our broker on ``port``; False when none of ours was running there."""
    with _locked(state_dir(port) / ".lock"):
        state = _read_state(port)
        if not state:
            _clear_state(port)
            return False
        _terminate(state["pid"], timeout)
        _clear_state(port)
        return True


def status(port: int = DEFAULT_PORT) -> dict:
    """What runs on ``port``: our process (pid, dirs) and whether a broker answers there."""
    state = _read_state(port) or {}
    answering = _port_open(port)
    info = {
        "port": port,
        "bootstrap_servers": f"{HOST}:{port}",
        "running": bool(state),
        "pid": state.get("pid"),
        "ready": _is_ready(port, security=_state_security(state)) if answering else False,
        "sasl": bool(state.get("sasl_users_digest")),
        "version": state.get("version"),
        "controller_port": state.get("controller_port"),
        "run_dir": state.get("run_dir"),
        "log_file": state.get("log_file"),
    }
    if answering and not state:
        info["note"] = "the port answers but the process is not one this launcher started"
    return info


# ---------------------------------------------------------------- CLI


@click.group("kafka")
def kafka_group() -> None:
    """A local single-node Apache Kafka broker (KRaft) on 127.0.0.1, no Docker needed."""


_port_option = click.option("--port", default=DEFAULT_PORT, show_default=True, type=int,
                            help="PLAINTEXT port on 127.0.0.1")


@kafka_group.command("up")
@_port_option
@click.option("--controller-port", type=int, default=None,
              help="KRaft controller port [default: 9093 for 9092, else port+1]")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="directory for data and logs [default: $CITYSCORE_CACHE/kafka-run-PORT]")
@click.option("--wait", default=60.0, show_default=True, help="seconds to wait for readiness")
@click.option("--sasl-user", "sasl_users", multiple=True, metavar="NAME:PASSWORD",
              help="make the listener SASL_PLAINTEXT (PLAIN, SCRAM-SHA-256/512) for this user; repeatable")
def up_command(port: int, controller_port: int | None, data_dir: str | None, wait: float,
               sasl_users: tuple[str, ...]) -> None:
    """Start the broker (or find it running) and wait until it accepts writes."""
    began = time.monotonic()
    users = {}
    for item in sasl_users:
        name, sep, password = item.partition(":")
        if not sep:
            raise click.BadParameter(f"{name!r}: write NAME:PASSWORD", param_hint="--sasl-user")
        users[name] = password
    try:
        broker = start(port=port, data_dir=data_dir, wait=wait, controller_port=controller_port,
                       sasl_users=users or None)
    except DevKafkaError as exc:
        raise click.ClickException(str(exc)) from exc
    what = f"Kafka {broker.version}" if broker.version else "Kafka"
    verb = "started" if broker.started else "already running"
    click.echo(f"{what} {verb} on {broker.bootstrap_servers} "
               f"(pid {broker.pid}, {time.monotonic() - began:.1f}s)", err=True)
    if broker.log_file:
        click.echo(f"log: {broker.log_file}", err=True)
    click.echo(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
    if broker.sasl:
        click.echo("KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT")


@kafka_group.command("down")
@_port_option
def down_command(port: int) -> None:
    """Stop the broker this launcher started on --port."""
    if stop(port):
        click.echo(f"Kafka on {HOST}:{port} stopped", err=True)
    else:
        click.echo(f"no Kafka of ours running on {HOST}:{port}", err=True)


@kafka_group.command("status")
@_port_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def status_command(port: int, as_json: bool) -> None:
    """Show whether the broker runs and answers; exit 1 when it is not ready."""
    info = status(port)
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            click.echo(f"{key}: {value}")
    sys.exit(0 if info["ready"] else 1)


if __name__ == "__main__":
    kafka_group(prog_name="python -m shared.dev.local_kafka")
