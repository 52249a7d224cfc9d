# One image for every QW Control cluster-mode process: the workers (`qwc worker liveness|
# takeover|recovery`), the manager (`qwc manager`) and the reference node (`qwc node`).
# The command is the qwc sub-command: `docker run IMAGE worker liveness`. See compose.yaml
# and docs/operations.md. Needs BuildKit (the default builder since Docker 23) and the
# built-in Dockerfile frontend only: no `# syntax=` image to pull, so it builds offline.
#
# BASE_IMAGE: a Python 3.11 image with `python` on PATH (deploy/smoke builds on a local one).
# pip reads two optional build secrets, neither kept in a layer: a pip.conf (a private index,
# its credentials) and a CA bundle, usable as `cert = /run/secrets/pip-cert` in that pip.conf:
#   docker build --secret id=pip.conf,src=pip.conf --secret id=pip-cert,src=ca.pem .
ARG BASE_IMAGE=python:3.11-slim

# -- build: the project and its dependencies into a venv (every dependency ships a wheel) --
FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/qwc
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producers ./producers
COPY workers ./workers
RUN --mount=type=secret,id=pip.conf,target=/etc/pip.conf \
    --mount=type=secret,id=pip-cert \
    /opt/qwc/bin/pip install . && /opt/qwc/bin/qwc --version

# -- runtime: the venv only, run as an unprivileged user --------------------------------
FROM ${BASE_IMAGE}
RUN groupadd --system --gid 10001 qwc \
    && useradd --system --uid 10001 --gid qwc --home-dir /var/lib/qwc --create-home \
        --shell /usr/sbin/nologin qwc
COPY --from=build /opt/qwc /opt/qwc
ENV PATH=/opt/qwc/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    QWC_HOME=/var/lib/qwc \
    QWC_LOG_FORMAT=json
WORKDIR /var/lib/qwc
USER 10001:10001
EXPOSE 4440
# Exits 1 when this process's Redis does not answer or its store is unreachable or not
# migrated (`qwc health --help`).
HEALTHCHECK --interval=15s --timeout=10s --start-period=30s --retries=3 CMD ["qwc", "health"]
ENTRYPOINT ["qwc"]
CMD ["--help"]
