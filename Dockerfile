# syntax=docker/dockerfile:1.7
# The foundryflow image: Python 3.11, Apache Airflow 3 and foundryflow (with the local-cluster
# extra), the helm CLI for the helm cluster backend, and this repository at /opt/foundryflow,
# the import root (DAGs, plugin, pipeline specs, Alembic migrations, charts, argo/).
#
# One image for every place foundryflow runs: the Argo workflow pods and pipeline-runner
# pools (`command: [foundryflow]`), the foundryflow chart's migration hook, and every
# component of the official Apache Airflow chart (charts/foundryflow/airflow-values.yaml).
#
#   docker build -t ghcr.io/foundryflow/foundryflow:0.1.0 .
#   docker run --rm -e FOUNDRYFLOW_DATABASE_URL=postgresql://... ghcr.io/foundryflow/foundryflow:0.1.0 db upgrade
#
# Pin the base image by digest as well when you publish (FROM python:...@sha256:<digest>).
FROM python:3.11.13-slim-bookworm

ARG TARGETARCH
# Helm 3, for foundryflow.cluster.helm (which drives the helm CLI). Each checksum is the
# release's published SHA-256 of helm-<version>-linux-<arch>.tar.gz: the build fails on any
# other archive. Change the version and both checksums together.
ARG HELM_VERSION=v3.16.4
ARG HELM_SHA256_AMD64=fc307327959aa38ed8f9f7e66d45492bb022a66c3e5da6063958254b9767d179
ARG HELM_SHA256_ARM64=d3f8f15b3d9ec8c8678fbf3280c3e5902efabe5912e2f9fcf29107efbc8ead69
ARG UV_VERSION=0.13.9

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# curl only to fetch Helm, removed again in the same layer; postgresql-client (pg_dump,
# pg_restore) stays for the ops-postgres-backup pipeline.
RUN set -eux; \
    arch="${TARGETARCH:-$(dpkg --print-architecture)}"; \
    case "$arch" in \
      amd64) helm_sha256="$HELM_SHA256_AMD64" ;; \
      arm64) helm_sha256="$HELM_SHA256_ARM64" ;; \
      *) echo "unsupported architecture: $arch" >&2; exit 1 ;; \
    esac; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl postgresql-client; \
    curl -fsSL -o /tmp/helm.tar.gz "https://get.helm.sh/helm-${HELM_VERSION}-linux-${arch}.tar.gz"; \
    echo "${helm_sha256}  /tmp/helm.tar.gz" | sha256sum -c -; \
    tar -xzf /tmp/helm.tar.gz -C /tmp "linux-${arch}/helm"; \
    install -m 0755 "/tmp/linux-${arch}/helm" /usr/local/bin/helm; \
    rm -rf /tmp/helm.tar.gz "/tmp/linux-${arch}"; \
    apt-get purge -y --auto-remove curl; \
    rm -rf /var/lib/apt/lists/*; \
    helm version --short

# The non-root user every container runs as (numeric, so runAsNonRoot can verify it).
RUN groupadd --gid 1000 foundryflow \
    && useradd --uid 1000 --gid 1000 --home-dir /home/foundryflow --create-home \
       --shell /bin/bash foundryflow \
    && install -d -o 1000 -g 1000 -m 0755 /opt/airflow

# Dependencies first, from pyproject.toml alone, so a code change does not reinstall Airflow.
COPY pyproject.toml README.md /tmp/foundryflow-deps/
RUN pip install "uv==${UV_VERSION}" \
    && uv pip install --system --no-cache \
       -r /tmp/foundryflow-deps/pyproject.toml --extra local-cluster \
    && rm -rf /tmp/foundryflow-deps

# The repository (owned by root: read-only for the runtime user), then the package itself;
# with the layer above, this is `pip install .[local-cluster]` split in two.
COPY . /opt/foundryflow
WORKDIR /opt/foundryflow
RUN uv pip install --system --no-cache --no-deps . \
    && rm -rf build ./*.egg-info \
    && foundryflow --help >/dev/null

# The entrypoint: `docker run IMAGE <args>` is `foundryflow <args>`; a command line that starts
# with a program (`bash -c "exec airflow scheduler"`, `airflow db check-migrations`, `python`)
# runs as it is, which is what the official Airflow chart passes its containers (it relies on
# the apache/airflow image's entrypoint doing so, and calls /entrypoint in its probes).
COPY --chmod=0755 <<'EOF' /usr/local/bin/foundryflow-entrypoint
#!/bin/sh
set -e
case "${1:-}" in
  airflow | bash | sh | python | python3 | foundryflow | /*) exec "$@" ;;
esac
exec foundryflow "$@"
EOF
RUN ln -s /usr/local/bin/foundryflow-entrypoint /entrypoint

# PYTHONPATH: the repository is the import root (foundryflow.config.REPO_ROOT resolves to it),
# so migrations, pipeline specs, charts and argo/ are found where the package expects them.
ENV PYTHONPATH=/opt/foundryflow \
    FOUNDRYFLOW_PIPELINES_PATH='["/opt/foundryflow/pipelines"]' \
    FOUNDRYFLOW_HOME=/tmp/foundryflow \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/foundryflow/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/foundryflow/plugins \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    HOME=/home/foundryflow

USER 1000:1000
ENTRYPOINT ["/usr/local/bin/foundryflow-entrypoint"]
CMD ["--help"]
