# One image for every pipeline component and for serving.
# CPU by default; `--build-arg ACCELERATOR=gpu` installs the CUDA-enabled TensorFlow wheels from
# requirements-gpu.lock (same pins plus tensorflow[and-cuda]).
# PYTHON_IMAGE is any Debian-based image with Python 3.11 and its venv module: the official
# python image, or a local Debian bookworm base built without a registry (scripts/image.sh).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG ACCELERATOR=cpu
# uv keeps no cache in the image. scripts/image.sh sets UV_NO_CACHE=0 and mounts a host directory
# at UV_CACHE_DIR for the RUN steps only, so rebuilds do not download the wheels again.
ARG UV_NO_CACHE=1
ARG UV_CACHE_DIR=/root/.cache/uv
# Where TLS to the package registries goes through a proxy, the proxy's CA bundle for uv (the
# build mounts it; scripts/image.sh passes the host's). Unset by default.
ARG SSL_CERT_FILE
# Everything installs into a virtual environment: the same layout on every base image (Debian's
# python3 has no `python` command and refuses system-wide pip installs, PEP 668).
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    UV_LINK_MODE=copy \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
COPY requirements.lock requirements-gpu.lock ./
RUN python3 -m venv "$VIRTUAL_ENV" \
    && python -m pip install --disable-pip-version-check uv==0.13.9 \
    && if [ "$ACCELERATOR" = "gpu" ]; then lock=requirements-gpu.lock; else lock=requirements.lock; fi \
    && uv pip install --compile-bytecode -r "$lock"

COPY pyproject.toml README.md ./
COPY mlops ./mlops
COPY components ./components
COPY pipelines ./pipelines
COPY configs ./configs
RUN uv pip install --compile-bytecode --no-deps . \
    && useradd --create-home --uid 1000 mlops
USER 1000
# By default the image is the prediction server (Vertex AI custom-container contract: the model
# comes from AIP_STORAGE_URI, port and routes from AIP_*); pipeline steps set their own command.
EXPOSE 8080
CMD ["python", "-m", "mlops.serving"]
