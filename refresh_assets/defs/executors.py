"""Where the main job's steps run: in the run's own process, on Kubernetes each in a pod of
its own (k8s_job_executor), or on Celery workers (celery_executor), chosen by
REFRESH_STEP_EXECUTOR.

`in_process` (the default) is what the project runs everywhere else. `k8s_job` is set by
deploy/kubernetes/values.yaml: a full refresh's steps then get their own pods, memory and
restarts. `celery` sends each step to whichever `refresh-assets celery worker` takes it from
the broker (docs/CELERY.md). Either is meant for the main job (refresh_all) only: a city's
refresh stays in its run's process, since a pod or a queue hop per step would add to each of
its steps, and an entry reaches the marts in seconds only without them. With a step per pod or
per worker, resources (the city locks among them) are set up for each step rather than once per
run: docs/KUBERNETES.md and docs/CELERY.md say what that changes."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from refresh_assets.settings import SettingsError

STEP_EXECUTOR_VARIABLE = "REFRESH_STEP_EXECUTOR"
IN_PROCESS = "in_process"
K8S_JOB = "k8s_job"
CELERY = "celery"

# The step pods inherit the run pod's image, environment, secrets, volumes and resources (the
# code location's, from the Helm values); this only bounds and tidies them.
K8S_STEP_EXECUTOR_CONFIG: Mapping[str, Any] = {
    # Step pods of one run at once: each opens its own PostgreSQL connections (dbt eight).
    "max_concurrent": 4,
    # A step's Kubernetes job is deleted with its run's pod instead of lingering.
    "enable_owner_references": True,
}

# The Celery broker (redis://host:6379/0); the result backend is the broker unless set. Named,
# not copied, in the executor's config: a URL may carry Redis's password.
CELERY_BROKER_VARIABLE = "REFRESH_CELERY_BROKER"
CELERY_BACKEND_VARIABLE = "REFRESH_CELERY_BACKEND"
# Seconds after which the step of a worker that stopped renewing its lease (a dead worker) is
# handed to another (lib/celery_leases.py).
CELERY_VISIBILITY_VARIABLE = "REFRESH_CELERY_VISIBILITY_TIMEOUT"
DEFAULT_VISIBILITY_TIMEOUT = 300
# The queue dagster-celery sends steps to and its workers read (dagster_celery.make_app).
CELERY_QUEUE = "dagster"


def celery_visibility_timeout(environ: Mapping[str, str]) -> int:
    text = environ.get(CELERY_VISIBILITY_VARIABLE) or str(DEFAULT_VISIBILITY_TIMEOUT)
    if not text.isascii() or not text.isdigit() or int(text) < 1:
        raise SettingsError(f"{CELERY_VISIBILITY_VARIABLE} must be a whole number of seconds, "
                            f"got {text!r}")
    return int(text)


def celery_lease_seconds(environ: Mapping[str, str]) -> float:
    """How often a worker renews its running step's lease: five times per visibility timeout,
    so that a late renewal or two (a busy machine, Redis restarting) loses nothing."""
    return celery_visibility_timeout(environ) / 5


def celery_executor_config(environ: Mapping[str, str]) -> dict[str, Any]:
    """dagster-celery's executor config, which the workers' app is built from too (the two
    must agree). Raises SettingsError without a broker or with a bad timeout."""
    from dagster_celery.defaults import broker_transport_options

    if not environ.get(CELERY_BROKER_VARIABLE):
        raise SettingsError(f"{STEP_EXECUTOR_VARIABLE}=celery needs {CELERY_BROKER_VARIABLE}, "
                            "the broker's URL (e.g. redis://127.0.0.1:6379/0)")
    visibility = celery_visibility_timeout(environ)
    backend = CELERY_BACKEND_VARIABLE if environ.get(CELERY_BACKEND_VARIABLE) else CELERY_BROKER_VARIABLE
    return {
        # Read from the environment where the executor or the worker starts.
        "broker": {"env": CELERY_BROKER_VARIABLE},
        "backend": {"env": backend},
        "config_source": {
            # A step's message is acknowledged once the step has ended, not when a worker takes
            # it: the step of a worker that dies is handed to another worker.
            "task_acks_late": True,
            # A worker holds only the step it runs, none in reserve that its death would delay.
            "worker_prefetch_multiplier": 1,
            "broker_transport_options": {
                **broker_transport_options,
                # Redis cannot see a worker die: a step whose lease has not been renewed for
                # this long goes back to the queue (celery_lease_seconds, lib/celery_leases.py).
                "visibility_timeout": visibility,
                # How often a worker looks for such steps: every few seconds, instead of
                # kombu's 10 × 10 s, so a lost step is retried soon after its timeout.
                "unacked_restore_interval": min(10, max(1, visibility // 10)),
                "unacked_restore_throttle": 1,
            },
            # Celery 6 will stop retrying at start-up unless told to; a worker started before
            # Redis waits for it.
            "broker_connection_retry_on_startup": True,
            # A step's own output (Dagster's log lines) as it is, not relogged as warnings.
            "worker_redirect_stdouts": False,
        },
    }


def celery_worker_app(environ: Mapping[str, str]):
    """The Celery app of a worker (refresh-assets celery worker): the executor's broker,
    backend and settings, with dagster-celery's task that runs a step."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    config = celery_executor_config(environ)
    app = make_app(CeleryExecutor.for_cli(
        broker=environ[config["broker"]["env"]], backend=environ[config["backend"]["env"]],
        config_source=config["config_source"]).app_args())
    create_task(app)
    return app


def step_executor(environ: Mapping[str, str]) -> dg.ExecutorDefinition:
    """The executor REFRESH_STEP_EXECUTOR names in `environ` (os.environ at definition time).
    Raises SettingsError for any other value, or for celery without a broker."""
    choice = environ.get(STEP_EXECUTOR_VARIABLE) or IN_PROCESS
    if choice == IN_PROCESS:
        return dg.in_process_executor
    if choice == K8S_JOB:
        # Installed in the Kubernetes image (Dockerfile) and the dev extras only.
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(dict(K8S_STEP_EXECUTOR_CONFIG))
    if choice == CELERY:
        # In the dev extras only, as the workers need it too.
        from dagster_celery import celery_executor

        return celery_executor.configured(celery_executor_config(environ))
    raise SettingsError(f"{STEP_EXECUTOR_VARIABLE} must be {IN_PROCESS}, {K8S_JOB} or {CELERY}, "
                        f"got {choice!r}")
