# landcover REST service: `docker build -t landcover-api .` (see docker-compose.yml).
# CPU image; torch comes from PyTorch's CPU wheel index. No model weights are baked in:
# mount base bundles at /models; adaptations and the SQLite database live in /data.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY landcover ./landcover
COPY api ./api
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu ".[postgres]"

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=2 \
    LANDCOVER_DATA_DIR=/data \
    LANDCOVER_MODELS_DIR=/models
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --home-dir /data landcover \
    && mkdir -p /data /models && chown landcover /data
USER landcover
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health', timeout=4)"
CMD ["landcover", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "1"]
