# The TOT Dispatch server image. Settings come from the environment (see README.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY server ./server
COPY dispatch ./dispatch
COPY geo ./geo
COPY realtime ./realtime
COPY models ./models
COPY migrations ./migrations
# loadtests/ (benchmarks, the replay) is not part of the server image: it is not in the wheel either.
RUN pip install . && python -m server.console_assets && useradd --system --uid 10001 tot
USER tot

ENV TOT_HOST=0.0.0.0 TOT_PORT=8000 TOT_LOG_FORMAT=json
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v1/health', timeout=2).status != 200)"
CMD ["tot-dispatch", "serve"]
