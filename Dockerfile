# One image for every pipeline component (and, later, serving).
# CPU by default; `--build-arg ACCELERATOR=gpu` installs the CUDA-enabled TensorFlow wheels from
# requirements-gpu.lock (same pins plus tensorflow[and-cuda]).
ARG PYTHON_IMAGE=python:3.11.7-slim-bookworm
FROM ${PYTHON_IMAGE}

ARG ACCELERATOR=cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /app
COPY requirements.lock requirements-gpu.lock ./
RUN python -m pip install --disable-pip-version-check uv==0.13.9 \
    && if [ "$ACCELERATOR" = "gpu" ]; then lock=requirements-gpu.lock; else lock=requirements.lock; fi \
    && uv pip install --system --no-cache -r "$lock"

COPY pyproject.toml README.md ./
COPY mlops ./mlops
COPY components ./components
COPY pipelines ./pipelines
COPY configs ./configs
RUN uv pip install --system --no-cache --no-deps . \
    && useradd --create-home --uid 1000 mlops
USER 1000
# By default the image is the prediction server (Vertex AI custom-container contract: the model
# comes from AIP_STORAGE_URI, port and routes from AIP_*); pipeline steps set their own command.
EXPOSE 8080
CMD ["python", "-m", "mlops.serving"]
