# syntax=docker/dockerfile:1
#
# The egp-operator image:  docker build -t egp-operator:latest .
#
# Runs `egp-operator run` (every namespace) as a non-root numeric user, and writes nothing
# outside /tmp, so it runs under readOnlyRootFilesystem with an emptyDir at /tmp, as
# deploy/deployment.yaml does. Ports: 8080 /metrics, 8081 /healthz.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# The package with its runtime dependencies only (no extras), from the package index, into a
# virtualenv the final stage copies whole. pip and setuptools, which only the build uses, leave
# it (22 MB, and what image scanners flag most). Bytecode is compiled here, valid whatever the
# files' times, so that nothing needs writing at run time.
RUN python -m venv /opt/egp-operator \
 && /opt/egp-operator/bin/pip install . \
 && /opt/egp-operator/bin/python -m pip uninstall --yes --quiet pip setuptools \
 && /opt/egp-operator/bin/python -m compileall -q --invalidation-mode unchecked-hash \
      /opt/egp-operator/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="egp-operator" \
      org.opencontainers.image.description="Mirrors the models of a Scale EGP account into EGPModel custom resources" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/egp-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=build /opt/egp-operator /opt/egp-operator
# 65532: the conventional "nonroot" user; numeric, so Kubernetes can check runAsNonRoot.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["egp-operator", "run"]
