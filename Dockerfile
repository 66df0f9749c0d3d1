# The code location's image for Kubernetes (deploy/kubernetes/, docs/KUBERNETES.md): the project
# installed as a package (not editable, no dev extras) with dagster-k8s, the dbt manifest
# prepared at build time, served by `dagster code-server start` on port 4000 by an
# unprivileged user. The Helm chart runs it as the code server, and its run and step pods.
FROM python:3.11-slim

# The Dagster release of the Helm chart (`helm install --version`): its webserver and daemon
# talk to this code location over gRPC, so both sides run the same release. Dagster's
# libraries are numbered 0.(minor + 16).patch: 1.13.27 goes with 0.29.27.
ARG DAGSTER_VERSION=1.13.27
ARG DAGSTER_LIBRARIES_VERSION=0.29.27

# The warehouse connection as deploy/kubernetes/values.yaml sets it (no password: dbt parses
# without connecting). dbt keys its saved parse to host, port, user and database: parsed here
# with the values the pods use, each run's dbt build reuses it instead of parsing again (2-3 s).
ARG REFRESH_DB_HOST=postgres.example.internal
ARG REFRESH_DB_PORT=5432
ARG REFRESH_DB_USER=refresh
ARG REFRESH_DB_WAREHOUSE=warehouse

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DO_NOT_TRACK=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false

# A fixed numeric id, so that Kubernetes' runAsNonRoot can check it (values.yaml).
RUN groupadd --gid 10001 refresh \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin refresh \
    && python -m venv /opt/venv

# The dependencies first, in a layer of their own that a change of the code does not rebuild.
COPY pyproject.toml /tmp/build/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/build/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/build/requirements.txt \
    && pip install -r /tmp/build/requirements.txt \
        "dagster==${DAGSTER_VERSION}" "dagster-k8s==${DAGSTER_LIBRARIES_VERSION}"

# Then the package itself, from a folder that is removed afterwards: Dagster puts the working
# directory on the import path, and a source copy there would stand in for the installed one.
COPY README.md /tmp/build/
COPY refresh_assets /tmp/build/refresh_assets
RUN pip install --no-deps /tmp/build && rm -rf /tmp/build

# The files the package reads beside it: settings.PROJECT_DIR is the folder above the package
# (a checkout's root; here site-packages), where they are linked.
WORKDIR /app
COPY dbt_project /app/dbt_project
COPY data /app/data
COPY sources.yaml /app/sources.yaml
RUN project_dir="$(python -c 'from refresh_assets.settings import PROJECT_DIR; print(PROJECT_DIR)')" \
    && ln -s /app/dbt_project /app/data /app/sources.yaml "$project_dir/" \
    && cd /app/dbt_project \
    && dbt parse --quiet --project-dir . --profiles-dir . \
    && rm -rf logs \
    && chown -R refresh:refresh /app/dbt_project

# dbt writes each build's target/ and logs/ under /app/dbt_project, hence its owner above.
USER 10001:10001
EXPOSE 4000
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", "-m", "refresh_assets.definitions"]
