"""Where the main job's steps run: in the run's own process, or on Kubernetes each in a pod of
its own (k8s_job_executor), chosen by REFRESH_STEP_EXECUTOR.

`in_process` (the default) is what the project runs everywhere else. `k8s_job` is set by
deploy/kubernetes/values.yaml: a full refresh's steps then get their own pods, memory and
restarts. It is meant for the main job (refresh_all) only: a city's refresh stays in its run's
process, since a pod per step would add a pod's start-up to each of its steps, and an entry
reaches the marts in seconds only without it. With a pod per step, resources (the city locks
among them) are set up for each step rather than once per run: docs/KUBERNETES.md says what
that changes."""

from collections.abc import Mapping
from typing import Any

import dagster as dg

from refresh_assets.settings import SettingsError

STEP_EXECUTOR_VARIABLE = "REFRESH_STEP_EXECUTOR"
IN_PROCESS = "in_process"
K8S_JOB = "k8s_job"

# The step pods inherit the run pod's image, environment, secrets, volumes and resources (the
# code location's, from the Helm values); this only bounds and tidies them.
K8S_STEP_EXECUTOR_CONFIG: Mapping[str, Any] = {
    # Step pods of one run at once: each opens its own PostgreSQL connections (dbt eight).
    "max_concurrent": 4,
    # A step's Kubernetes job is deleted with its run's pod instead of lingering.
    "enable_owner_references": True,
}


def step_executor(environ: Mapping[str, str]) -> dg.ExecutorDefinition:
    """The executor REFRESH_STEP_EXECUTOR names in `environ` (os.environ at definition time).
    Raises SettingsError for any other value."""
    choice = environ.get(STEP_EXECUTOR_VARIABLE) or IN_PROCESS
    if choice == IN_PROCESS:
        return dg.in_process_executor
    if choice == K8S_JOB:
        # Installed in the Kubernetes image (Dockerfile) and the dev extras only.
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor.configured(dict(K8S_STEP_EXECUTOR_CONFIG))
    raise SettingsError(f"{STEP_EXECUTOR_VARIABLE} must be {IN_PROCESS} or {K8S_JOB}, got {choice!r}")
