"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) for
development and integration tests, run from the jars Maven Central publishes.

No Docker is needed: the broker's jars are gathered once with Maven into a cache
outside the work tree, keyed by version, and the broker runs as a detached JVM on
127.0.0.1.

    python -m shared.devkafka up [--port 9092]      # or: cityscore dev kafka up
    python -m shared.devkafka status
    python -m shared.devkafka down

Layout (``CITYSCORE_CACHE`` defaults to ``~/.cache/cityscore``)::

    $CITYSCORE_CACHE/kafka-<version>/libs/       the broker's jars
    $CITYSCORE_CACHE/kafka-run-<port>/           pid file, state, and by default:
        server.properties  data/  logs/server.log  kafka.out

From Python: ``start(port)`` returns a :class:`Broker` once metadata lists a broker and
an acks=all write succeeds (it just returns when one already runs there), ``stop(port)``,
``status(port)``, ``ensure_jars()``.

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


def probe(bootstrap_servers: str, timeout: float = 10.0) -> dict:
    """Check a broker is usable: metadata lists a broker and an acks=all write succeeds.

    Returns the cluster description; raises on failure.
    """
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.errors import TopicAlreadyExistsError

    timeout_ms = max(int(timeout * 1000), 1000)
    with _quiet_kafka_logs():
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap_servers,
            client_id="cityscore-devkafka-probe",
            bootstrap_timeout_ms=timeout_ms,
            request_timeout_ms=timeout_ms,
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
        )
        try:
            producer.send(PROBE_TOPIC, key=b"probe", value=str(time.time()).encode()).get(timeout=timeout)
        finally:
            producer.close(timeout=5)
    return cluster


def _is_ready(port: int, timeout: float = 5.0) -> bool:
    if not _port_open(port):
        return False
    try:
        probe(f"{HOST}:{port}", timeout=timeout)
    except Exception:
        return False
    return True


def _cluster_id() -> str:
    """A Kafka Uuid (base64url of 16 random bytes, no padding; never starts with '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _server_properties(port: int, controller_port: int, data_dir: Path) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
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
    lines = ["# written by shared/devkafka.py on every start; edits are overwritten"]
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
) -> Broker:
    """Start (or find running) a broker on 127.0.0.1:``port`` and wait until it is usable.

    ``fresh`` wipes the data of a previous run first (only when this call starts it).
    """
    if controller_port is None:
        controller_port = DEFAULT_CONTROLLER_PORT if port == DEFAULT_PORT else port + 1
    sdir = state_dir(port)
    with _locked(sdir / ".lock"):
        state = _read_state(port)
        if state:
            _wait_ready(port, state["pid"], Path(state["log_file"]), wait)
            return Broker(port, state["controller_port"], state["pid"], state["run_dir"],
                          state["log_file"], state["version"], started=False)
        if _port_open(port):
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
        props.write_text(_server_properties(port, controller_port, data))
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
                 "--ignore-formatted"],
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
        }
        (sdir / "state.json").write_text(json.dumps(state, indent=2) + "\n")
        (sdir / "kafka.pid").write_text(f"{proc.pid}\n")
        try:
            _wait_ready(port, proc.pid, log_file, wait, out)
        except BaseException:
            _terminate(proc.pid)
            _clear_state(port)
            raise
        return Broker(port, controller_port, proc.pid, str(run_dir), str(log_file), version,
                      started=True)


def _wait_ready(port: int, pid: int, log_file: Path, wait: float, out: Path | None = None) -> None:
    deadline = time.monotonic() + wait
    while True:
        if not _alive(pid):
            raise DevKafkaError(
                f"Kafka (pid {pid}) exited while starting on {HOST}:{port}.\n"
                f"--- {log_file}\n{_tail(log_file)}"
                + (f"\n--- {out}\n{_tail(out)}" if out else "")
            )
        remaining = deadline - time.monotonic()
        if _is_ready(port, timeout=max(1.0, min(5.0, remaining))):
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
        "ready": _is_ready(port) if answering else False,
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
def up_command(port: int, controller_port: int | None, data_dir: str | None, wait: float) -> None:
    """Start the broker (or find it running) and wait until it accepts writes."""
    began = time.monotonic()
    try:
        broker = start(port=port, data_dir=data_dir, wait=wait, controller_port=controller_port)
    except DevKafkaError as exc:
        raise click.ClickException(str(exc)) from exc
    what = f"Kafka {broker.version}" if broker.version else "Kafka"
    verb = "started" if broker.started else "already running"
    click.echo(f"{what} {verb} on {broker.bootstrap_servers} "
               f"(pid {broker.pid}, {time.monotonic() - began:.1f}s)", err=True)
    if broker.log_file:
        click.echo(f"log: {broker.log_file}", err=True)
    click.echo(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")


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
    kafka_group(prog_name="python -m shared.devkafka")
