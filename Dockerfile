# The activation server image: `activation-server` (API + admin, `migrate`) and `fraud-worker`.
#   docker build -t license-server .
#   docker run license-server serve --processes 4        # the API (entrypoint activation-server)
#   docker run --entrypoint fraud-worker license-server  # the worker
# Runtime dependencies only (no dev or embedded extras); runs as an unprivileged user.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY activation ./activation
COPY fraud ./fraud
COPY metrics ./metrics
RUN pip wheel --wheel-dir /wheels .

FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    HOST=0.0.0.0 PUBLIC_PORT=8080 ADMIN_PORT=8081 WORKER_PORT=8082
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links=/wheels license-activation \
    && rm -rf /wheels \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --create-home app
WORKDIR /app
USER 10001:10001
EXPOSE 8080 8081 8082
ENTRYPOINT ["activation-server"]
CMD ["serve"]
