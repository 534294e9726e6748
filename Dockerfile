# syntax=docker/dockerfile:1
# Build stage: resolve the locked dependencies into a virtual environment.
FROM python:3.11-slim-bookworm AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv==0.13.9
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
COPY bot ./bot
COPY cogs ./cogs
RUN uv sync --locked --no-dev

# Runtime stage: the environment and the code, run as an unprivileged user.
FROM python:3.11-slim-bookworm
RUN useradd --create-home --uid 10001 atelier
WORKDIR /app
COPY --from=build --chown=atelier:atelier /app /app
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1 DATABASE_URL=sqlite:////data/atelier.db
RUN mkdir -p /data && chown atelier:atelier /data
VOLUME ["/data"]
# The webhook listener, used only when WEBHOOK_PUBLIC_URL is set; metrics and health checks when METRICS_PORT is.
EXPOSE 8080 9100
USER 10001
ENTRYPOINT ["atelier"]
CMD ["run"]
