# One image for the project's own services: the rule bridge, the simulator and the testbed CLI.
# docker-compose.yml runs it with different commands (`python -m <command>`).
FROM python:3.12.8-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY telemetry/ telemetry/
COPY toolkit/ toolkit/
COPY processor/ processor/
COPY simulator/ simulator/
COPY ingress/ ingress/
COPY fault_proxy/ fault_proxy/
COPY testbed/ testbed/
COPY localstack_plugins/ localstack_plugins/
COPY infra/ infra/
# Editable, so fleet files and scenarios are read from /app as in a checkout.
RUN pip install -e .

# compose runs the services as the host user (TESTBED_UID), so the mounted state stays readable.
USER 65532:65532
ENTRYPOINT ["python", "-m"]
CMD ["simulator", "--help"]
