# syntax=docker/dockerfile:1
# Drive's image: dependencies and the package are built in one stage; the runtime stage gets
# only the finished virtualenv, on a slim base, as a non-root user.
# BASE_IMAGE: the official image by default; any Debian-like image with python3 on PATH as
# `python` works (the container test builds on a local stand-in when no registry is reachable).
ARG PYTHON_VERSION=3.11
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/drive
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/drive/bin/pip install .

FROM ${BASE_IMAGE} AS runtime
# PROMETHEUS_MULTIPROC_DIR: the workers share their metrics through files there (see docs/DEPLOYMENT.md).
ENV PATH=/opt/drive/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/drive-metrics
RUN groupadd --system --gid 10001 drive \
 && useradd --system --uid 10001 --gid drive --home-dir /var/lib/drive --shell /usr/sbin/nologin drive \
 && mkdir -p /var/lib/drive /tmp/drive-metrics \
 && chown drive:drive /var/lib/drive /tmp/drive-metrics
COPY --from=build /opt/drive /opt/drive
# The embedded defaults (./data/metadata.db, ./data/blobs) land here; mount a volume on it.
WORKDIR /var/lib/drive
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["drive"]
# Two workers per container (scale further with replicas); 25 s for in-flight requests on
# SIGTERM, inside the 30 s most orchestrators wait before SIGKILL.
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--graceful-timeout", "25"]
