"""The Kubernetes profile (deploy/kubernetes/, Dockerfile, docs/KUBERNETES.md), checked with
Dagster's and dagster-k8s's own schemas and code, against each other, against the repository's
dagster.yaml, and against the variables the code reads. No cluster is needed: dagster-k8s
builds here the Kubernetes Job it would submit for a run."""

import copy
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster._config import process_config
from dagster._config.field_utils import IntEnvVar
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.storage.dagster_run import DagsterRun
from dagster_k8s import K8sRunLauncher, k8s_job_executor
from dagster_k8s.job import construct_dagster_k8s_job
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from refresh_assets.defs.executors import (
    K8S_STEP_EXECUTOR_CONFIG,
    STEP_EXECUTOR_VARIABLE,
    step_executor,
)
from refresh_assets.defs.exports import exports_resource
from refresh_assets.defs.resources import build_resources
from refresh_assets.lib.database import ServerAddress
from refresh_assets.lib.runtime import runtime_environment
from refresh_assets.settings import DAGSTER_DB, PROJECT_DIR, SettingsError, load_settings

DEPLOY = PROJECT_DIR / "deploy" / "kubernetes"
# The chart's release and namespace docs/KUBERNETES.md installs, which the profile names.
RELEASE = "dagster"
NAMESPACE = "refresh-assets"
CHART_DAGSTER_HOME = "/opt/dagster/dagster_home"  # the chart's global.dagsterHome


def read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


VALUES = read_yaml(DEPLOY / "values.yaml")
PROFILE = read_yaml(DEPLOY / "dagster.yaml")
LOCAL_INSTANCE = read_yaml(PROJECT_DIR / "dagster.yaml")
STORAGE = read_yaml(DEPLOY / "storage.yaml")
DOCS = (PROJECT_DIR / "docs" / "KUBERNETES.md").read_text()
CODE_LOCATION = VALUES["dagster-user-deployments"]["deployments"][0]
IMAGE = f"{CODE_LOCATION['image']['repository']}:{CODE_LOCATION['image']['tag']}"
ENV = {entry["name"]: entry for entry in CODE_LOCATION["env"]}

# Variables runtime_environment exports that the chart provides otherwise.
SET_OTHERWISE = {
    "DAGSTER_HOME": "the chart sets it in every pod (global.dagsterHome)",
    "REFRESH_DAGSTER_STORAGE": "read by the local dagster.yaml only (artifact and log folders)",
    "REFRESH_DB_DAGSTER": "read by the local dagster.yaml only: postgresql.postgresqlDatabase here",
}


def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (INSTRUCTION, arguments), continuations joined."""
    text = (PROJECT_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith("#")]


def dockerfile_assignments(instruction: str) -> dict[str, str]:
    """NAME=value pairs of every ARG (defaults) or ENV instruction."""
    pairs = [word.split("=", 1) for kind, args in dockerfile() if kind == instruction
             for word in shlex.split(args)]
    return {name: value for name, value in pairs}


def dockerfile_user() -> int:
    (user,) = [args for kind, args in dockerfile() if kind == "USER"]
    return int(user.split(":")[0])


def env_var_names(resource: dg.ConfigurableResource) -> Iterator[str]:
    """The variables a resource reads through EnvVar, nested resources included."""
    for field in type(resource).model_fields:
        value = getattr(resource, field)
        if isinstance(value, dg.EnvVar):
            yield value.env_var_name
        elif isinstance(value, IntEnvVar):
            yield value.name
        elif isinstance(value, dg.ConfigurableResource):
            yield from env_var_names(value)


SECRET_WORD = re.compile(r"password|passwd|token|api_?key", re.IGNORECASE)


def literal_secrets(tree: Any, path: str = "") -> list[str]:
    """Where a tree read from YAML holds a secret's value itself: a password- or token-named key
    with a non-empty string, or an env entry of such a name with a `value`. Keys naming a
    Kubernetes Secret (`..._secret`, `...SecretName`) hold a name, not a secret."""
    found = []
    if isinstance(tree, Mapping):
        if isinstance(tree.get("name"), str) and SECRET_WORD.search(tree["name"]) and tree.get("value"):
            found.append(f"{path}: env {tree['name']} has a literal value")
        for key, value in tree.items():
            here = f"{path}.{key}" if path else str(key)
            names_a_secret = re.search(r"secret(name)?$", str(key), re.IGNORECASE)
            if SECRET_WORD.search(str(key)) and not names_a_secret and isinstance(value, str) and value:
                found.append(f"{here}: literal value")
            found += literal_secrets(value, here)
    elif isinstance(tree, list):
        for index, item in enumerate(tree):
            found += literal_secrets(item, f"{path}[{index}]")
    return found


def camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# -- dagster-k8s's and Dagster's own schemas --------------------------------------------------

def test_run_launcher_section_passes_k8s_run_launcher_schema():
    launcher = PROFILE["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, [error.message for error in result.errors]


@pytest.mark.parametrize(("change", "named"), [
    (lambda config: config.update(job_namespce=config.pop("job_namespace")), "job_namespce"),
    (lambda config: config.update(load_incluster_config="yes"), "load_incluster_config"),
])
def test_a_wrong_launcher_key_or_type_is_rejected(change, named):
    config = copy.deepcopy(PROFILE["run_launcher"]["config"])
    change(config)
    result = process_config(K8sRunLauncher.config_type(), config)
    assert not result.success
    assert any(named in error.message for error in result.errors)


def test_profile_passes_dagsters_instance_schema(tmp_path):
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert config["run_launcher"]["class"] == "K8sRunLauncher"
    assert config["concurrency"]["runs"]["max_concurrent_runs"] == 4


@pytest.mark.parametrize(("change", "message"), [
    # What the chart renders without concurrency.enabled: Dagster refuses both limits at once.
    (lambda profile: profile["run_coordinator"]["config"].update(max_concurrent_runs=-1),
     "incompatible with the `concurrency > runs` config"),
    (lambda profile: profile.update(run_launchr=profile.pop("run_launcher")), "run_launchr"),
])
def test_a_broken_profile_is_rejected(tmp_path, change, message):
    profile = copy.deepcopy(PROFILE)
    change(profile)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(profile))
    with pytest.raises(DagsterInvalidConfigError) as error:
        dagster_instance_config(str(tmp_path))
    assert message in str(error.value) + json.dumps([e.message for e in error.value.errors])


def test_step_executor_config_passes_k8s_job_executor_schema():
    result = process_config(k8s_job_executor.config_schema.config_type, dict(K8S_STEP_EXECUTOR_CONFIG))
    assert result.success, [error.message for error in result.errors]
    # Step pods take the run's image, the code location's: no image of their own.
    assert "job_image" not in K8S_STEP_EXECUTOR_CONFIG
    misspelled = {"max_concurent": 4}
    result = process_config(k8s_job_executor.config_schema.config_type, misspelled)
    assert not result.success
    assert any("max_concurent" in error.message for error in result.errors)


# -- the step executor switch -----------------------------------------------------------------

def test_the_values_switch_a_job_to_k8s_step_pods():
    in_values = {STEP_EXECUTOR_VARIABLE: ENV[STEP_EXECUTOR_VARIABLE]["value"]}

    @dg.asset
    def one_step():
        pass

    defs = dg.Definitions(assets=[one_step], jobs=[
        dg.define_asset_job("stepped", executor_def=step_executor(in_values)),
        dg.define_asset_job("local", executor_def=step_executor({}))])
    assert defs.resolve_job_def("stepped").executor_def.name == "k8s"
    assert defs.resolve_job_def("local").executor_def is dg.in_process_executor


def test_an_unknown_step_executor_is_a_clear_error():
    expected = "REFRESH_STEP_EXECUTOR must be in_process, k8s_job or celery, got 'dask'"
    with pytest.raises(SettingsError, match=expected):
        step_executor({STEP_EXECUTOR_VARIABLE: "dask"})


# -- a run's pod, as dagster-k8s builds it from these values ----------------------------------

def test_run_pod_built_by_dagster_k8s_from_the_values(tmp_path):
    config = process_config(K8sRunLauncher.config_type(), PROFILE["run_launcher"]["config"]).value
    # Outside a cluster: a kubeconfig that is read, never connected to.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "test", "cluster": {"server": "https://127.0.0.1:6443"}}],
        "users": [{"name": "test", "user": {}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
    launcher = K8sRunLauncher(**{**config, "load_incluster_config": False,
                                 "kubeconfig_file": str(kubeconfig)})
    # What the chart hands a run of this code location (includeConfigInLaunchedRuns).
    code_location_context = {"k8s": {
        "image_pull_policy": CODE_LOCATION["image"]["pullPolicy"], "env": CODE_LOCATION["env"],
        "volumes": CODE_LOCATION["volumes"], "volume_mounts": CODE_LOCATION["volumeMounts"],
        "resources": CODE_LOCATION["resources"], "namespace": NAMESPACE}}
    origin = JobPythonOrigin("refresh_all", RepositoryPythonOrigin(
        "/opt/venv/bin/python", ModuleCodePointer("refresh_assets.definitions", "defs", "/app"),
        container_image=IMAGE, container_context=code_location_context))
    run = DagsterRun(job_name="refresh_all", run_id="test-run", job_code_origin=origin)
    context = launcher.get_container_context_for_run(run)
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=IMAGE, run_launcher=launcher),
        args=["dagster", "api", "execute_run"], job_name="dagster-run-test",
        user_defined_k8s_config=context.run_k8s_config, component="run_worker")
    pod = kubernetes.client.ApiClient().sanitize_for_serialization(job)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {entry["name"]: entry for entry in container["env"]}

    assert container["image"] == IMAGE
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": VALUES["global"]["postgresqlSecretName"], "key": "postgresql-password"}
    assert env["REFRESH_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": VALUES["global"]["postgresqlSecretName"], "key": "postgresql-password"}
    assert env["DAGSTER_HOME"]["value"] == CHART_DAGSTER_HOME
    assert env[STEP_EXECUTOR_VARIABLE]["value"] == "k8s_job"
    assert [v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]] == [
        STORAGE["metadata"]["name"]]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/data"]
    user = dockerfile_user()
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": user,
                                      "runAsGroup": user, "fsGroup": user}
    assert container["resources"] == CODE_LOCATION["resources"]
    assert literal_secrets(container["env"]) == []


# -- the values against the code, the profile and the local instance --------------------------

def test_code_location_gets_every_variable_the_code_reads():
    address = ServerAddress(host="db", port=5432, user="u", password="p")
    exported = set(runtime_environment(load_settings({}), address)) - set(SET_OTHERWISE)
    resources = {**build_resources(), "exports": exports_resource()}
    read_by_resources = {name for resource in resources.values() for name in env_var_names(resource)}
    image_env = set(dockerfile_assignments("ENV"))
    assert read_by_resources <= set(ENV), sorted(read_by_resources - set(ENV))
    assert exported <= set(ENV) | image_env, sorted(exported - set(ENV) - image_env)
    for name, entry in ENV.items():
        if SECRET_WORD.search(name):
            assert set(entry) == {"name", "valueFrom"}, f"{name} must come from a Secret"
    # Where runs are created (the webserver, the daemon) the chart's pods need it too.
    for component in ("dagsterWebserver", "dagsterDaemon"):
        assert VALUES[component]["env"]["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] == "true"


def test_every_secret_key_the_pods_use_is_created_in_the_docs():
    created = {(match[0], key) for match in re.findall(
        r"kubectl -n \S+ create secret generic (\S+)((?:\s+\\?\s*--from-literal=[^\s=]+=\S*)+)", DOCS)
        for key in re.findall(r"--from-literal=([^\s=]+)=", match[1])}
    used = {(entry["valueFrom"]["secretKeyRef"]["name"], entry["valueFrom"]["secretKeyRef"]["key"])
            for entry in ENV.values() if "valueFrom" in entry}
    used.add((VALUES["global"]["postgresqlSecretName"], "postgresql-password"))
    assert used <= created, sorted(used - created)


def test_warehouse_connection_is_dagsters_server_and_the_images_build_arguments():
    postgres = VALUES["postgresql"]
    profile_db = PROFILE["run_storage"]["config"]["postgres_db"]
    build_args = dockerfile_assignments("ARG")
    assert postgres["enabled"] is False and VALUES["generatePostgresqlPasswordSecret"] is False
    for name, chart_value in (("REFRESH_DB_HOST", postgres["postgresqlHost"]),
                              ("REFRESH_DB_PORT", str(postgres["service"]["port"])),
                              ("REFRESH_DB_USER", postgres["postgresqlUsername"])):
        assert ENV[name]["value"] == chart_value == build_args[name], name
    assert ENV["REFRESH_DB_WAREHOUSE"]["value"] == build_args["REFRESH_DB_WAREHOUSE"]
    # `refresh-assets db start` creates and migrates the databases of these names.
    assert postgres["postgresqlDatabase"] == DAGSTER_DB
    assert (profile_db["hostname"], profile_db["username"], profile_db["db_name"],
            profile_db["port"], profile_db["scheme"]) == (
        postgres["postgresqlHost"], postgres["postgresqlUsername"], postgres["postgresqlDatabase"],
        postgres["service"]["port"], postgres["postgresqlScheme"])
    assert profile_db["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert PROFILE["schedule_storage"]["config"]["postgres_db"] == profile_db
    assert PROFILE["event_log_storage"]["config"]["postgres_db"] == profile_db


def test_profile_is_what_the_values_render():
    launcher = PROFILE["run_launcher"]["config"]
    launcher_values = VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    assert VALUES["runLauncher"]["type"] == PROFILE["run_launcher"]["class"]
    assert launcher["image_pull_policy"] == launcher_values["imagePullPolicy"]
    assert launcher["load_incluster_config"] == launcher_values["loadInclusterConfig"]
    assert launcher["run_k8s_config"] == {camel_to_snake(key): value for key, value
                                          in launcher_values["runK8sConfig"].items()}
    assert (launcher["job_namespace"], launcher["service_account_name"],
            launcher["instance_config_map"], launcher["dagster_home"]) == (
        NAMESPACE, RELEASE, f"{RELEASE}-instance", CHART_DAGSTER_HOME)
    assert launcher["postgres_password_secret"] == VALUES["global"]["postgresqlSecretName"]
    daemon = VALUES["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == PROFILE["run_coordinator"]["class"]
    assert PROFILE["run_monitoring"] == {camel_to_snake(key): value
                                         for key, value in daemon["runMonitoring"].items()}
    for section in ("sensors", "schedules"):
        assert PROFILE[section] == {camel_to_snake(key): value for key, value in daemon[section].items()}
    assert PROFILE["compute_logs"]["class"] == VALUES["computeLogManager"]["type"]
    assert PROFILE["telemetry"] == VALUES["telemetry"]


def test_queue_and_limits_are_the_local_instances():
    local = LOCAL_INSTANCE["concurrency"]
    queued = VALUES["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert PROFILE["concurrency"] == local
    assert (PROFILE["run_coordinator"]["config"]["dequeue_interval_seconds"]
            == queued["dequeueIntervalSeconds"]
            == LOCAL_INSTANCE["run_queue"]["dequeue_interval_seconds"])
    values = VALUES["concurrency"]
    assert values["enabled"] is True
    assert {camel_to_snake(key): value for key, value in values["pools"].items()} == local["pools"]
    assert values["runs"]["maxConcurrentRuns"] == local["runs"]["max_concurrent_runs"]
    assert values["runs"]["tagConcurrencyLimits"] == local["runs"]["tag_concurrency_limits"]


# -- one image, one release -------------------------------------------------------------------

def test_one_image_serves_the_code_location_and_runs_its_runs():
    assert set(re.findall(r"docker build -t (\S+)", DOCS)) == {IMAGE}
    assert set(re.findall(r"docker push (\S+)", DOCS)) == {IMAGE}
    # Runs and steps take the code location's image: neither sets one of its own.
    assert "job_image" not in PROFILE["run_launcher"]["config"]
    assert "image" not in VALUES["runLauncher"]["config"]["k8sRunLauncher"]
    workspace = read_yaml(PROJECT_DIR / "workspace.yaml")
    module = workspace["load_from"][0]["python_module"]["module_name"]
    (cmd,) = [json.loads(args) for kind, args in dockerfile() if kind == "CMD"]
    assert CODE_LOCATION["codeServerArgs"] == ["-m", module] == cmd[-2:]
    assert cmd[:3] == ["dagster", "code-server", "start"]
    assert str(CODE_LOCATION["port"]) == cmd[cmd.index("-p") + 1] == [
        args for kind, args in dockerfile() if kind == "EXPOSE"][0]
    assert [args for kind, args in dockerfile() if kind == "FROM"] == ["python:3.11-slim"]
    assert 0 < dockerfile_user() == CODE_LOCATION["podSecurityContext"]["runAsUser"]


def test_image_and_chart_run_the_same_dagster_release():
    build_args = dockerfile_assignments("ARG")
    dagster_version = Version(build_args["DAGSTER_VERSION"])
    libraries_version = Version(build_args["DAGSTER_LIBRARIES_VERSION"])
    project = read_toml_project()
    assert dagster_version in requirement_specifier(project["dependencies"], "dagster")
    assert libraries_version in requirement_specifier(
        project["optional-dependencies"]["dev"], "dagster-k8s")
    assert (libraries_version.minor, libraries_version.micro) == (
        dagster_version.minor + 16, dagster_version.micro)
    chart_versions = set(re.findall(r"helm (?:template|upgrade)[^\n]*?--version (\S+)", DOCS))
    assert chart_versions == {str(dagster_version)}


def read_toml_project() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text())["project"]


def requirement_specifier(requirements: list[str], name: str) -> SpecifierSet:
    (spec,) = [r[len(name):] for r in requirements if re.match(rf"{re.escape(name)}[<>=]", r)]
    return SpecifierSet(spec)


# -- no secret in the files -------------------------------------------------------------------

def test_no_literal_secret_in_deploy_or_the_dockerfile():
    for path in sorted(DEPLOY.glob("*.yaml")):
        assert literal_secrets(read_yaml(path)) == [], path.name
        url_with_password = re.search(r"://[^/\s:@]+:[^@\s]+@", path.read_text())
        assert not url_with_password, f"{path.name}: {url_with_password}"
    assert not [name for kind in ("ARG", "ENV") for name in dockerfile_assignments(kind)
                if SECRET_WORD.search(name)]


def test_the_secret_check_finds_a_literal_password():
    leaky = copy.deepcopy(VALUES)
    leaky["postgresql"]["postgresqlPassword"] = "hunter2"
    env = leaky["dagster-user-deployments"]["deployments"][0]["env"]
    env.append({"name": "SLACK_TOKEN", "value": "xoxb-1"})
    assert literal_secrets(leaky) == [
        "postgresql.postgresqlPassword: literal value",
        f"dagster-user-deployments.deployments[0].env[{len(env) - 1}]: env SLACK_TOKEN has a literal value"]
