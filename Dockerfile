# syntax=docker/dockerfile:1
# One image for every QW Control cluster-mode process: the workers (`qwc worker liveness|
# takeover|recovery`), the manager (`qwc manager`) and the reference node (`qwc node`).
# The command is the qwc sub-command: `docker run IMAGE worker liveness`. See compose.yaml
# and docs/operations.md.
ARG PYTHON_VERSION=3.11

# -- build: the project and its dependencies into a venv (every dependency ships a wheel) --
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/qwc
WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY producers ./producers
COPY workers ./workers
RUN /opt/qwc/bin/pip install . && /opt/qwc/bin/qwc --version

# -- runtime: the venv only, run as an unprivileged user --------------------------------
FROM python:${PYTHON_VERSION}-slim
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
