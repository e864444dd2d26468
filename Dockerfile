FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DATABASE_PATH=/data/stories-bot.sqlite3 CALLBACK_HOST=0.0.0.0 CALLBACK_PORT=8080
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY adapters ./adapters
COPY storage ./storage
RUN pip install --no-cache-dir . && useradd --system --home /data stories && mkdir -p /data \
    && chown stories /data
USER stories
VOLUME /data
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request,os; urllib.request.urlopen(f'http://127.0.0.1:{os.environ.get(\"CALLBACK_PORT\",\"8080\")}/healthz', timeout=4)"
CMD ["stories-bot", "run"]
