"""The deployment files name only what the code has.

No Docker engine or cluster is needed (none runs here): docker-compose.yml, the
Dockerfile, .dockerignore and deploy/k8s/ are read as data and checked against the
code. Every command must be a real `cityscore` command (through click's CliRunner), a
real `python -m` entry point, or gunicorn with a WSGI module that defines `app`; every
environment variable a setting the code reads, with a value the settings accept; every
port in a health check, probe, Service or published port the one the command binds.
"""

from __future__ import annotations

import ast
import base64
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from services.cli.commands import main
from services.ingest.settings import IngestSettings
from services.notifier.settings import NotifierSettings
from services.scorer.settings import ScorerSettings
from shared.dev.local_kafka import KAFKA_VERSION
from shared.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE_FILE = ROOT / "docker-compose.yml"

# The common settings and each service's own (the notifier's are a class of their own).
SETTINGS_VARS = {f.alias for kind in (Settings, IngestSettings, ScorerSettings)
                 for f in kind.model_fields.values() if f.alias}
NOTIFIER_VARS = {f.alias for f in NotifierSettings.model_fields.values() if f.alias}
# Read straight from os.environ, with the file that reads each.
EXTRA_VARS = {
    "BIND": "deploy/gunicorn.conf.py",
    "WEB_CONCURRENCY": "deploy/gunicorn.conf.py",
    "WEB_THREADS": "deploy/gunicorn.conf.py",
    "PROMETHEUS_MULTIPROC_DIR": "deploy/gunicorn.conf.py",
    "CITYSCORE_LOG_LEVEL": "shared/platform/logs.py",
    "CITYSCORE_LOG_FORMAT": "shared/platform/logs.py",
    # The Open311 pull's options (click reads them from these variables).
    "CITYSCORE_OPEN311_URL": "services/cli/pull.py",
    "CITYSCORE_PULL_FEED": "services/cli/pull.py",
    "CITYSCORE_INGEST_URL": "services/cli/pull.py",
    "CITYSCORE_API_KEYS": "services/cli/pull.py",
    "CITYSCORE_PULL_STATE": "services/cli/pull.py",
    "CITYSCORE_PULL_EVERY": "services/cli/pull.py",
    "CITYSCORE_PULL_LOOKBACK": "services/cli/pull.py",
}
KNOWN_VARS = SETTINGS_VARS | NOTIFIER_VARS | set(EXTRA_VARS)
# Variables compose interpolates that are not our settings: the database roles' passwords,
# which compose puts into the postgres container and into the URLs.
COMPOSE_ONLY_VARS = {"POSTGRES_PASSWORD", "CITYSCORE_DB_PASSWORD", "CITYSCORE_READER_PASSWORD"}
# The Open311 pull (compose service, Kubernetes Deployment): it reads a city's endpoint and sends
# to ingest over HTTP, so it holds no database URL.
NO_DATABASE = {"open311-pull", "cityscore-open311-pull"}
# The roles of docker-compose.yml and deploy/k8s (deploy/postgres/compose-init.sh makes them).
OWNER_ROLE, READER_ROLE = "cityscore", "cityscore_reader"


# -- reading the files ---------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def k8s_documents() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                docs.append((path.name, doc))
    return docs


def k8s_objects(kind: str | None = None) -> list[dict]:
    return [doc for name, doc in k8s_documents()
            if name != "kustomization.yaml" and (kind is None or doc["kind"] == kind)]


def k8s_object(kind: str, name: str) -> dict:
    found = [doc for doc in k8s_objects(kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def resolve(value) -> str:
    """A compose value with ${VAR:-default} replaced by its default (what an empty shell gives),
    and ${VAR:?message}, which compose refuses to leave empty, by a stand-in value."""
    def value_of(match: re.Match) -> str:
        name, operator, rest = match.groups()
        if operator and operator.endswith("?"):
            return f"given-{name.lower().replace('_', '-')}"
        return rest or ""
    return INTERPOLATION.sub(value_of, str(value))


def database_url_of(name: str, svc: dict) -> str:
    """The URL a compose service connects with: the board's read-only one, the others' DATABASE_URL."""
    env = svc["environment"]
    return env["BOARD_DATABASE_URL"] if name == "board" else env["DATABASE_URL"]


def our_compose_services() -> dict[str, dict]:
    return {name: svc for name, svc in compose()["services"].items() if "build" in svc}


def configmap_data() -> dict[str, str]:
    return dict(k8s_object("ConfigMap", "cityscore-config")["data"])


def example_secret() -> dict[str, str]:
    docs = list(yaml.safe_load_all((K8S / "secret.example.yaml").read_text()))
    assert len(docs) == 1 and docs[0]["kind"] == "Secret"
    return docs[0]


def workloads() -> list[tuple[dict, dict]]:
    """(object, pod spec) of every Deployment and Job."""
    return [(obj, obj["spec"]["template"]["spec"]) for obj in k8s_objects()
            if obj["kind"] in ("Deployment", "Job")]


def deployment(component: str) -> dict:
    return k8s_object("Deployment", f"cityscore-{component}")


def container_env(container: dict) -> dict[str, str]:
    """The environment a container gets: its ConfigMaps, then its env (secrets as the example's values)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"unexpected envFrom {source}"
        assert source["configMapRef"]["name"] == "cityscore-config"
        env.update(configmap_data())
    secret = example_secret()
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"], f"{item['name']}: unknown Secret {ref['name']}"
            assert ref["key"] in secret["stringData"], f"{item['name']}: the Secret template has no key {ref['key']}"
            env[item["name"]] = secret["stringData"][ref["key"]]
    return env


# -- what a command is and which port it binds ---------------------------------------------


def gunicorn_default_bind() -> str:
    text = (ROOT / "deploy" / "gunicorn.conf.py").read_text()
    match = re.search(r'os\.environ\.get\("BIND",\s*"([^"]+)"\)', text)
    assert match, "deploy/gunicorn.conf.py no longer reads BIND the way this test expects"
    return match.group(1)


def option_value(args: list[str], option: str, command_path: list[str]):
    if option in args:
        return args[args.index(option) + 1]
    command = main
    for name in command_path:
        command = command.commands[name]
    (param,) = [p for p in command.params if option in p.opts]
    return param.default


def check_command(command: list[str]) -> None:
    """The command exists in the code: a cityscore command, a python -m entry point, or gunicorn."""
    assert command, "empty command"
    program, args = command[0], command[1:]
    if program == "cityscore":
        # The words before the first option are the command path; the options are parsed
        # too (click refuses an unknown one before it shows the help).
        words = args[: next((i for i, a in enumerate(args) if a.startswith("-")), len(args))]
        assert words, "cityscore with no command"
        result = CliRunner().invoke(main, [*args, "--help"], prog_name="cityscore")
        assert result.exit_code == 0, f"`cityscore {' '.join(args)}`: {result.output}"
        assert f"Usage: cityscore {' '.join(words)} " in result.output, result.output
    elif program == "python":
        assert args[:1] == ["-m"], f"python should run a module: {command}"
        module = args[1]
        assert (ROOT / module.replace(".", "/") / "__main__.py").is_file(), f"{module} has no __main__"
        done = subprocess.run([sys.executable, "-m", *args[1:], "--help"], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, f"`python -m {' '.join(args[1:])} --help`: {done.stderr}"
        assert "Usage:" in done.stdout
    elif program == "gunicorn":
        assert args[0] == "-c", f"gunicorn should use the project's config: {command}"
        config = ROOT / args[1]
        assert config.is_file(), f"gunicorn config {args[1]} does not exist"
        (target,) = [a for a in args[2:] if not a.startswith("-")]
        module, _, attribute = target.partition(":")
        source = ROOT / (module.replace(".", "/") + ".py")
        assert source.is_file(), f"WSGI module {module} does not exist"
        # Importing a wsgi module makes the app (and touches the database): read it instead.
        tree = ast.parse(source.read_text())
        assigned = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                    if isinstance(t, ast.Name)}
        assert attribute in assigned, f"{module} does not define {attribute} ="
    else:
        pytest.fail(f"unknown program {program!r} in {command}")


def bound_address(command: list[str], env: dict[str, str]) -> tuple[str, int] | None:
    """Where the command listens for HTTP, from its arguments, its environment and the code's defaults."""
    program, args = command[0], command[1:]
    if program == "gunicorn":
        host, _, port = env.get("BIND", gunicorn_default_bind()).rpartition(":")
        return host, int(port)
    if program == "cityscore" and args[:2] == ["scorer", "run"]:
        return (str(option_value(args, "--host", ["scorer", "run"])),
                int(option_value(args, "--http-port", ["scorer", "run"])))
    if program == "cityscore" and args[:2] in (["ingest", "serve"], ["scorer", "serve"]):
        return str(option_value(args, "--host", args[:2])), int(option_value(args, "--port", args[:2]))
    if program == "python" and args[1:3] == ["services.notifier", "run"]:
        settings = NotifierSettings(**{k: v for k, v in env.items() if k in NOTIFIER_VARS})
        return settings.http_host, settings.http_port
    if program == "cityscore" and args[:2] == ["pull", "open311"]:
        return (str(option_value(args, "--host", ["pull", "open311"])),
                int(option_value(args, "--http-port", ["pull", "open311"])))
    return None


def app_module(command: list[str]) -> Path | None:
    """The Flask app module behind a service command (where its routes are declared)."""
    text = " ".join(command)
    for needle, path in (("services.ingest", "services/ingest/app.py"), ("scorer", "services/scorer/app.py"),
                         ("services.notifier", "services/notifier/app.py"), ("pull open311", "services/puller/app.py")):
        if needle in text:
            return ROOT / path
    return None


def assert_route(command: list[str], path: str) -> None:
    module = app_module(command)
    assert module is not None, f"no app behind {command}"
    assert re.search(rf'@app\.get\("{re.escape(path)}"\)', module.read_text()), f"{module.name} has no GET {path}"


def validate_settings(env: dict[str, str], where: str) -> None:
    """The values are ones the settings classes accept (types, ranges, formats)."""
    unknown = set(env) - KNOWN_VARS
    assert not unknown, f"{where}: not settings the code reads: {sorted(unknown)}"
    for kind in (IngestSettings, ScorerSettings):  # each holds the common settings too
        kind(**{k: v for k, v in env.items() if k in SETTINGS_VARS})
    NotifierSettings(**{k: v for k, v in env.items() if k in NOTIFIER_VARS})
    for name in ("WEB_CONCURRENCY", "WEB_THREADS"):
        if name in env:
            assert int(env[name]) >= 1, f"{where}: {name}"
    if "BIND" in env:
        host, _, port = env["BIND"].rpartition(":")
        assert host and 0 < int(port) < 65536, f"{where}: BIND {env['BIND']}"


# -- the settings themselves ---------------------------------------------------------------


def test_extra_variables_are_read_where_the_list_says():
    for name, path in EXTRA_VARS.items():
        assert f'"{name}"' in (ROOT / path).read_text(), f"{path} does not read {name}"
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "CITYSCORE_TOPIC_PARTITIONS"} <= SETTINGS_VARS
    assert {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "NOTIFIER_HTTP_PORT"} <= NOTIFIER_VARS


# -- docker-compose.yml ----------------------------------------------------------------------


def test_compose_parses_and_every_service_has_an_image_and_a_health_check():
    services = compose()["services"]
    assert {"kafka", "postgres", "migrate", "ingest", "scorer", "notifier"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, f"{name} has neither image nor build"
        if svc.get("restart") == "no":  # one-shot jobs need no health check
            continue
        test = svc.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"


def test_compose_services_are_built_from_the_one_dockerfile():
    ours = our_compose_services()
    assert set(ours) >= {"migrate", "ingest", "scorer", "notifier"}
    assert {svc["build"] for svc in ours.values()} == {"."}
    assert len({svc.get("image") for svc in ours.values()}) == 1
    assert (ROOT / "Dockerfile").is_file()


def test_compose_commands_are_real():
    for name, svc in our_compose_services().items():
        assert isinstance(svc["command"], list), f"{name}: write the command as a list"
        check_command(svc["command"])
    assert our_compose_services()["migrate"]["command"] == ["cityscore", "db", "upgrade"]


def test_compose_environment_names_only_settings_with_valid_values():
    for name, svc in our_compose_services().items():
        env = {k: resolve(v) for k, v in svc.get("environment", {}).items()}
        if name in NO_DATABASE:
            assert not {"DATABASE_URL", "BOARD_DATABASE_URL"} & set(env), f"{name} needs no database"
        else:
            assert ("BOARD_DATABASE_URL" if name == "board" else "DATABASE_URL") in env, name
        assert "KAFKA_BOOTSTRAP_SERVERS" in env, name
        validate_settings(env, f"compose {name}")
    for variable in INTERPOLATION.findall(COMPOSE_FILE.read_text()):
        assert variable[0] in KNOWN_VARS | COMPOSE_ONLY_VARS, f"${{{variable[0]}}} is not a setting"


def test_compose_secrets_come_from_the_environment_not_the_file():
    notifier = compose()["services"]["notifier"]["environment"]
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        assert notifier[name] == f"${{{name}:-}}"


def test_compose_ports_and_health_checks_match_what_each_command_binds():
    for name, svc in our_compose_services().items():
        env = {k: resolve(v) for k, v in svc.get("environment", {}).items()}
        address = bound_address(svc["command"], env)
        if address is None:
            assert "healthcheck" not in svc and "ports" not in svc, f"{name} binds nothing"
            continue
        host, port = address
        assert host == "0.0.0.0", f"{name} listens on {host}: unreachable from outside its container"
        test = " ".join(svc["healthcheck"]["test"])
        urls = re.findall(r"http://[^'\" ]+", test)
        assert len(urls) == 1, f"{name}: {test}"
        url = urlsplit(urls[0])
        assert url.port == port, f"{name}: health check on {url.port}, the command binds {port}"
        assert url.path == "/healthz"
        assert_route(svc["command"], "/healthz")
        for mapping in svc.get("ports", []):
            assert int(str(mapping).rsplit(":", 1)[-1]) == port, f"{name} publishes {mapping}, binds {port}"


def test_compose_health_check_command_is_valid_python():
    for name, svc in our_compose_services().items():
        if "healthcheck" in svc:
            test = svc["healthcheck"]["test"]
            assert test[:3] == ["CMD", "python", "-c"], name
            compile(test[3], f"{name} healthcheck", "exec")


def test_compose_kafka_is_a_single_kraft_node_the_services_can_reach():
    services = compose()["services"]
    kafka = services["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert tag == KAFKA_VERSION, "compose should run the Kafka version the tests run"
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16, "CLUSTER_ID must be a base64 UUID"
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols)
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    node, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node == env["KAFKA_NODE_ID"]
    voter_host, _, voter_port = voter.rpartition(":")
    assert voter_host == "kafka" and voter_port == listeners[controller].rpartition(":")[2]
    for key in ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
                "KAFKA_DEFAULT_REPLICATION_FACTOR"):
        assert env[key] == "1", f"{key}: a single broker holds one copy"
    advertised = {item.split("://")[1] for item in env["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    for name, svc in our_compose_services().items():
        bootstrap = svc["environment"]["KAFKA_BOOTSTRAP_SERVERS"]
        assert bootstrap in advertised, f"{name} connects to {bootstrap}, Kafka advertises {advertised}"
    data_dir = env["KAFKA_LOG_DIRS"]
    assert any(v.split(":", 1) == ["kafka-data", data_dir] for v in kafka["volumes"])
    assert "kafka-broker-api-versions.sh" in " ".join(kafka["healthcheck"]["test"])


def test_compose_postgres_matches_the_database_urls_and_no_service_is_the_superuser():
    services = compose()["services"]
    postgres = services["postgres"]
    assert postgres["image"] == "postgres:16"
    env = {k: resolve(v) for k, v in postgres["environment"].items()}
    superuser = env.get("POSTGRES_USER", "postgres")  # the image's default superuser
    assert superuser not in (OWNER_ROLE, READER_ROLE), "the app's roles must not be the superuser"
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert any(v.split(":", 1) == ["postgres-data", "/var/lib/postgresql/data"] for v in postgres["volumes"])
    passwords = {OWNER_ROLE: "CITYSCORE_DB_PASSWORD", READER_ROLE: "CITYSCORE_READER_PASSWORD"}
    for name, svc in our_compose_services().items():
        if name in NO_DATABASE:
            continue
        raw = database_url_of(name, svc)
        url = make_url(resolve(raw))
        assert url.drivername == "postgresql+psycopg", name
        assert (url.host, url.port, url.database) == ("postgres", 5432, "cityscore"), name
        assert url.username in passwords and url.username != superuser, f"{name} connects as {url.username}"
        assert raw.count(f"${{{passwords[url.username]}:?") == 1, f"{name}: the password must be the role's, required"
        assert url.password == env[passwords[url.username]], f"{name}: not the password the postgres container sets"
    # The board, which the public reaches, reads as the read-only role and never holds the owner's URL.
    assert make_url(resolve(services["board"]["environment"]["BOARD_DATABASE_URL"])).username == READER_ROLE
    assert "DATABASE_URL" not in services["board"]["environment"]

    # The container's first start makes both roles and the database, from the passwords it is given.
    mounts = dict(str(v).split(":")[:2] for v in postgres["volumes"] if str(v).startswith("./"))
    init = {dest: source for source, dest in mounts.items()}
    (script,) = [source for dest, source in init.items() if dest.startswith("/docker-entrypoint-initdb.d/")]
    assert script.endswith(".sh") and os.access(ROOT / script, os.X_OK), script
    text = (ROOT / script).read_text()
    for role, variable in passwords.items():
        assert f"CREATE ROLE {role} LOGIN PASSWORD" in text and f'"${variable}"' in text, role
    assert f"CREATE DATABASE cityscore OWNER {OWNER_ROLE}" in text
    assert "default_transaction_read_only = on" in text
    (grants,) = [dest for dest in init if dest.endswith("grant-reader.sql")]
    assert grants in text and mounts["./deploy/postgres/grant-reader.sql"] == grants


def test_compose_has_no_default_password_and_the_env_example_lists_what_it_needs():
    text = COMPOSE_FILE.read_text()
    found = INTERPOLATION.findall(text)
    for name, operator, rest in found:
        if "PASSWORD" in name:
            assert operator == ":?", f"${{{name}}} must be required (${{{name}:?…}}), never defaulted"
        if operator == ":-":
            assert rest == "", f"${{{name}}} defaults to {rest!r}: no value may be written in the file"
    # No password written into a URL or a *_PASSWORD key: only ${…} stand there.
    for url in re.findall(r"postgresql\+psycopg://([^@\s]+)@", text):
        assert INTERPOLATION.fullmatch(url.split(":", 1)[1]), f"a literal password in {url}"
    for key, value in re.findall(r"^\s*([A-Z_]*PASSWORD):\s*(.+)$", text, flags=re.M):
        assert INTERPOLATION.fullmatch(value.strip()), f"{key} is written in the file"
    example = ROOT / ".env.example"
    listed = dict(line.split("=", 1) for line in example.read_text().splitlines()
                  if line.strip() and not line.startswith("#"))
    assert {name for name, _, _ in found} <= set(listed), "every variable compose reads is in .env.example"
    assert all(value == "" for value in listed.values()), ".env.example holds no values"
    assert ".env" in (ROOT / ".gitignore").read_text().split(), ".env (the real secrets) must stay out of git"


def test_compose_services_do_not_migrate_only_the_one_shot_job_does():
    for name, svc in our_compose_services().items():
        env = {k: resolve(v) for k, v in svc.get("environment", {}).items()}
        assert Settings(**{k: v for k, v in env.items() if k in SETTINGS_VARS}).migrate_on_start is False, name
    assert our_compose_services()["migrate"]["command"] == ["cityscore", "db", "upgrade"]


def test_compose_volumes_and_dependencies():
    data = compose()
    declared = set(data.get("volumes") or {})
    for name, svc in data["services"].items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):  # a file of the repository
                assert (ROOT / source).is_file(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name} mounts undeclared volume {source}"
        for dependency in svc.get("depends_on", {}):
            assert dependency in data["services"], f"{name} depends on unknown {dependency}"
    assert {"kafka-data", "postgres-data"} <= declared
    migrate = data["services"]["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, svc in our_compose_services().items():
        if name != "migrate":
            assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_compose_replicas_scorer_within_partitions_notifier_alone():
    services = compose()["services"]
    partitions = int(services["scorer"]["environment"]["CITYSCORE_TOPIC_PARTITIONS"])
    assert 1 <= services["scorer"].get("deploy", {}).get("replicas", 1) <= partitions
    assert services["notifier"].get("deploy", {}).get("replicas", 1) == 1
    assert "ports" not in services["scorer"], "replicas of one service cannot publish the same host port"


# -- Dockerfile and .dockerignore -----------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        i = 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                regex, i = regex + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                regex, i = regex + ".*", i + 2
            elif pattern[i] == "*":
                regex, i = regex + "[^/]*", i + 1
            elif pattern[i] == "?":
                regex, i = regex + "[^/]", i + 1
            else:
                regex, i = regex + re.escape(pattern[i]), i + 1
        patterns.append((re.compile(regex + r"\Z"), negated))
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for regex, negated in patterns:
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return excluded


def test_dockerfile_base_user_and_copies():
    instructions = dockerfile_instructions()
    froms = [rest for word, rest in instructions if word == "FROM"]
    assert froms == ["python:3.11-slim"]
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    workdir = [rest for word, rest in instructions if word == "WORKDIR"][-1]
    copied = []
    for word, rest in instructions:
        if word == "COPY":
            *sources, destination = shlex.split(rest)
            assert not any(s.startswith("--from") for s in sources)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
                assert not dockerignore_excludes(source.rstrip("/") + ("/x.py" if source.endswith("/") else "")), \
                    f"COPY {source}: .dockerignore leaves it out of the build context"
                copied.append((source, destination))
    # pyproject.toml needs its readme to build; gunicorn's config is read from WORKDIR.
    assert any(s == "README.md" for s, _ in copied)
    run = " ".join(rest for word, rest in instructions if word == "RUN")
    assert "pip install" in run and "-e ." in run
    assert workdir == "/app"
    exposed = {int(p) for word, rest in instructions if word == "EXPOSE" for p in rest.split()}
    in_image = {dest.rstrip("/") for _, dest in copied}
    for command in (svc["command"] for svc in our_compose_services().values()):
        if command[0] == "gunicorn":
            assert command[2] in in_image, f"{command[2]} is not copied into the image"
    for name, svc in our_compose_services().items():
        env = {k: resolve(v) for k, v in svc.get("environment", {}).items()}
        address = bound_address(svc["command"], env)
        if address:
            assert address[1] in exposed, f"{name} binds {address[1]}, the Dockerfile does not EXPOSE it"


def test_dockerignore_keeps_the_context_small_and_complete():
    for path in ("pyproject.toml", "README.md", "shared/store/engine.py", "shared/catalogs/boston.yaml",
                 "shared/store/migrations/versions/__init__.py", "services/scorer/templates/pages/board.html",
                 "services/scorer/static/board.css", "deploy/gunicorn.conf.py"):
        assert (ROOT / path).exists(), path
        assert not dockerignore_excludes(path), f"{path} would be missing from the image"
    for path in (".venv/bin/python", ".git/HEAD", "cityscore.db", "bench/out/events.jsonl",
                 "services/__pycache__/cli.cpython-311.pyc", "cityscore.egg-info/PKG-INFO", "tests/unit/x.py",
                 "deploy/kafka/pom.xml", ".hypothesis/examples/x", "events.jsonl"):
        assert dockerignore_excludes(path), f"{path} would be sent to the build"


def test_no_build_outputs_are_tracked():
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for line in tracked.splitlines():
        assert not re.match(r"(build|dist)/|.*\.egg-info/|.*\.whl$|.*__pycache__/", line), f"{line} is a build output"


# -- Kubernetes --------------------------------------------------------------------------------


def test_k8s_documents_parse_and_are_named():
    docs = k8s_documents()
    assert docs
    for name, doc in docs:
        assert doc.get("apiVersion") and doc.get("kind"), name
        if doc["kind"] != "Kustomization":
            assert doc.get("metadata", {}).get("name"), f"{name}: {doc['kind']} without metadata.name"
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Job", "Kustomization"} <= kinds


def test_kustomization_lists_every_manifest_but_the_secret_template():
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = kustomization["resources"]
    for resource in resources:
        assert (K8S / resource).is_file(), resource
    manifests = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(resources) == manifests - {"secret.example.yaml"}
    assert kustomization["namespace"] == "cityscore"
    assert k8s_object("Namespace", "cityscore")
    images = {image["name"] for image in kustomization["images"]}
    for obj, spec in workloads():
        for container in spec["containers"]:
            assert container["image"] in images, f"{obj['metadata']['name']}: image {container['image']}"


def test_k8s_secret_template_holds_placeholders_for_the_secrets():
    secret = example_secret()
    assert set(secret["stringData"]) == {"database-url", "board-database-url", "slack-bot-token",
                                         "slack-signing-secret", "pull-api-keys"}
    for key, role in (("database-url", OWNER_ROLE), ("board-database-url", READER_ROLE)):
        url = make_url(secret["stringData"][key])
        assert url.drivername == "postgresql+psycopg" and url.username == role, key
    assert all("CHANGE-ME" in value for value in secret["stringData"].values())
    configmap = configmap_data()
    assert not {"DATABASE_URL", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"} & set(configmap), \
        "secrets belong in the Secret, not the ConfigMap"


def test_k8s_commands_are_real_and_environment_is_settings():
    for obj, spec in workloads():
        for container in spec["containers"]:
            where = f"{obj['kind']} {obj['metadata']['name']}"
            check_command(container["command"])
            env = container_env(container)
            if obj["metadata"]["name"] == "cityscore-board":
                # The public's workload reads as the read-only role and never holds the owner's URL.
                assert "DATABASE_URL" not in env, where
                assert make_url(env["BOARD_DATABASE_URL"]).username == READER_ROLE, where
            elif obj["metadata"]["name"] in NO_DATABASE:
                assert not {"DATABASE_URL", "BOARD_DATABASE_URL"} & set(env), f"{where} needs no database"
            else:
                assert make_url(env["DATABASE_URL"]).username == OWNER_ROLE, where
            validate_settings(env, where)
            # Only the db-upgrade Job changes the schema.
            assert Settings(**{k: v for k, v in env.items() if k in SETTINGS_VARS}).migrate_on_start is False, where
    job = k8s_object("Job", "cityscore-db-upgrade")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["cityscore", "db", "upgrade"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def test_k8s_probes_and_services_use_the_port_each_command_binds():
    deployments = k8s_objects("Deployment")
    assert {d["metadata"]["name"] for d in deployments} >= {"cityscore-ingest", "cityscore-scorer",
                                                             "cityscore-notifier"}
    ports_by_labels = []
    for obj in deployments:
        (container,) = obj["spec"]["template"]["spec"]["containers"]
        name = obj["metadata"]["name"]
        host, port = bound_address(container["command"], container_env(container))
        assert host == "0.0.0.0", f"{name} listens on {host}"
        declared = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert set(declared.values()) == {port}, f"{name} declares {declared}, binds {port}"
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                            ("startupProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, f"{name} {probe} on {get['path']}"
            assert declared.get(get["port"], get["port"]) == port, f"{name} {probe} on port {get['port']}"
            assert_route(container["command"], path)
        ports_by_labels.append((obj["spec"]["template"]["metadata"]["labels"], declared))
        assert obj["spec"]["selector"]["matchLabels"].items() <= obj["spec"]["template"]["metadata"]["labels"].items()
    services = k8s_objects("Service")
    assert services
    for service in services:
        selector = service["spec"]["selector"]
        matched = [declared for labels, declared in ports_by_labels if selector.items() <= labels.items()]
        assert len(matched) == 1, f"Service {service['metadata']['name']} selects {len(matched)} Deployments"
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert target in matched[0] or target in matched[0].values(), \
                f"Service {service['metadata']['name']} targets {target}, the pods declare {matched[0]}"


def test_k8s_replicas_and_strategies():
    partitions = int(configmap_data()["CITYSCORE_TOPIC_PARTITIONS"])
    scorer = deployment("scorer")
    # More consumers than partitions sit idle; 6 is also the code's default partition count.
    assert 1 <= scorer["spec"]["replicas"] <= partitions
    assert scorer["spec"]["replicas"] <= Settings.model_fields["topic_partitions"].default == 6
    notifier = deployment("notifier")
    assert notifier["spec"]["replicas"] == 1
    assert notifier["spec"]["strategy"]["type"] == "Recreate"
    assert deployment("ingest")["spec"]["replicas"] == 2
    containers = notifier["spec"]["template"]["spec"]["containers"]
    slack = {e["name"]: e for e in containers[0]["env"] if e["name"].startswith("SLACK_")}
    assert set(slack) == {"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"}
    assert all(e["valueFrom"]["secretKeyRef"]["name"] == "cityscore-secrets" for e in slack.values())


def quantity(value: str) -> float:
    """A Kubernetes quantity in bytes (memory) or cores (cpu)."""
    value = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def test_k8s_resources_fit_the_measured_footprint():
    for obj, spec in workloads():
        for container in spec["containers"]:
            resources = container["resources"]
            for kind in ("cpu", "memory"):
                request, limit = quantity(resources["requests"][kind]), quantity(resources["limits"][kind])
                assert 0 < request <= limit, f"{obj['metadata']['name']} {kind}"
    scorer = deployment("scorer")["spec"]["template"]["spec"]["containers"][0]["resources"]
    # bench/bench_scorer.py keeps the scorer under 300 MB; the limit must leave it room.
    assert quantity(scorer["limits"]["memory"]) >= 300 * 2**20
    assert quantity(scorer["requests"]["memory"]) >= 128 * 2**20


def test_k8s_pods_run_as_the_images_user_with_a_writable_tmp():
    uid = int([rest for word, rest in dockerfile_instructions() if word == "USER"][-1].split(":")[0])
    for obj, spec in workloads():
        name = obj["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] == uid, name
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in spec["containers"]:
            if container.get("securityContext", {}).get("readOnlyRootFilesystem"):
                mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
                assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]], \
                    f"{name}: gunicorn and matplotlib write under /tmp"


def test_k8s_readme_says_who_provides_kafka_and_postgres():
    text = (K8S / "README.md").read_text()
    assert "Strimzi" in text and "PostgreSQL" in text and "secret.example.yaml" in text


def rendered_kustomization() -> list[dict]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    done = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_kustomization_renders():
    docs = rendered_kustomization()
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    expected = f"{image['newName']}:{image['newTag']}"
    assert len(docs) == len(k8s_objects()) - 1  # all but the Secret template
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "cityscore", doc["metadata"]["name"]
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                assert container["image"] == expected


def test_k8s_manifests_match_the_kubernetes_schemas():
    # Optional, offline: `pip install kubernetes-validate` ships the schemas of recent releases.
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    from kubernetes_validate.utils import latest_version

    for doc in k8s_objects():
        kubernetes_validate.validate(doc, latest_version(), strict=True)


def test_the_open311_pull_is_there_but_off_by_default():
    pull = compose()["services"]["open311-pull"]
    assert pull["profiles"] == ["open311"], "compose starts it only with --profile open311"
    assert pull["command"][:3] == ["cityscore", "pull", "open311"]
    assert pull.get("deploy", {}).get("replicas", 1) == 1, "one pull per state file"
    state = pull["environment"]["CITYSCORE_PULL_STATE"]
    assert any(str(v).split(":", 1) == ["pull-state", state.rsplit("/", 1)[0]] for v in pull["volumes"])
    assert pull["depends_on"]["ingest"]["condition"] == "service_healthy"
    assert "/var/lib/cityscore-pull" in (ROOT / "Dockerfile").read_text()
    k8s = deployment("open311-pull")
    assert k8s["spec"]["replicas"] == 0 and k8s["spec"]["strategy"]["type"] == "Recreate"
    spec = k8s["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    env = {item["name"]: item for item in container["env"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    state = env["CITYSCORE_PULL_STATE"]["value"].rsplit("/", 1)[0]
    claim = volumes[mounts[state]]["persistentVolumeClaim"]["claimName"]
    assert k8s_object("PersistentVolumeClaim", claim)
    assert env["CITYSCORE_API_KEYS"]["valueFrom"]["secretKeyRef"]["key"] == "pull-api-keys"
    assert env["CITYSCORE_INGEST_URL"]["value"].rsplit(":", 1)[-1] == "8000"
    assert urlsplit(env["CITYSCORE_INGEST_URL"]["value"]).hostname in {
        service["metadata"]["name"] for service in k8s_objects("Service")}
