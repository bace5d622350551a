# fota-bot as a container: a slim Python base, a non-root user, the database on a volume.
#
#   docker build -t fota-bot .
#   docker run -d --name fota-bot --env-file fota-bot.env -v fota-data:/data -p 3000:3000 fota-bot
#
# Configuration is the environment, as in the README (--env-file or -e); the image sets only
# where the database lives (FOTA_DB, on the /data volume) and the port (FOTA_PORT). Other
# commands run in the same image: `docker exec fota-bot fota-bot backup /data/backups/`,
# `docker run --rm --env-file fota-bot.env fota-bot check`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FOTA_DB=/data/fota.db \
    FOTA_PORT=3000

# A system user with no shell and no home of its own; /data is the only place it writes.
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin fota \
    && mkdir -p /data \
    && chown fota:fota /data \
    && chmod 0700 /data

WORKDIR /opt/fota-bot/src
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY commands ./commands
COPY storage ./storage
# A virtual environment owned by root: the service user can run it, not change it.
RUN python3 -m venv /opt/fota-bot/venv \
    && /opt/fota-bot/venv/bin/pip install --no-cache-dir . \
    && /opt/fota-bot/venv/bin/fota-bot --version
ENV PATH=/opt/fota-bot/venv/bin:$PATH

USER fota
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000
# /healthz answers 503 when the database is unusable; the image has Python but no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('FOTA_PORT', '3000'), timeout=4)"]
# serve finishes the requests in flight and stops its scheduler on SIGTERM (docker stop).
STOPSIGNAL SIGTERM
ENTRYPOINT ["fota-bot"]
CMD ["serve"]
