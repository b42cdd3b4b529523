# imagetagger: the Ray Serve application in one container, model weights baked in.
#
#   docker build -t imagetagger .                          # lean CPU image: LiteRT, no TensorFlow
#   docker build --target tensorflow -t imagetagger:tf .   # + TensorFlow (--runtime tensorflow)
#   docker build --target tensorflow --build-arg MODEL=efficientnet_b3 \
#     --build-arg WITH_CUDA=true -t imagetagger:2.0.0-gpu .   # GPU image (KubeRay manifest)
#   docker run --rm -p 8000:8000 imagetagger
#   docker run --rm -v "$PWD:/data:ro" imagetagger predict /data/cat.jpg
#
# (podman: `podman build --format docker ...`, or podman drops the HEALTHCHECK.)
# Stages: `base` (OS, user, how the container runs) -> `lean` (everything serving on
# LiteRT needs) -> `build` (+ TensorFlow: converts the weights, writes the .tflite
# files) -> `tensorflow` (the build stage, ~3 GB) and, last and so the default,
# `litert` (lean + the .tflite files, ~1 GB). The GPU image is a target, not a build
# argument, because podman 4.3's builder cannot resolve `FROM stage-${ARG}`. The
# container needs no network at run time. docs/DEPLOY.md says how
# `scripts/container_check.sh` proves all this against a running container.

# The base is pinned by tag: Python 3.11.14 on Debian 12. Its multi-arch index digest,
# as published by Docker Hub when this was pinned (pass
# --build-arg BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:... to enforce it):
#   sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
ARG BASE_IMAGE=python:3.11.14-slim-bookworm
# MODEL: the preset whose weights are converted and cached at build time; the container
# serves it whatever model the Serve config names ($IMAGETAGGER_MODEL, see cli/serve.py).
ARG MODEL=efficientnet_lite2

FROM ${BASE_IMAGE} AS base
ARG MODEL

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMAGETAGGER_CACHE_DIR=/opt/imagetagger/cache \
    KERAS_HOME=/opt/imagetagger/cache/keras \
    IMAGETAGGER_MODEL=${MODEL} \
    IMAGETAGGER_PORT_FILE=/tmp/imagetagger-serve.port \
    IMAGETAGGER_HOST=0.0.0.0 \
    PORT=8000

# Ray's high-throughput serving mode, for `imagetagger serve` and for the `ray start`
# KubeRay runs in this image, and the slower idle loops (docs/SERVING.md, *Idle CPU*):
# the values of imagetagger/serving/serving_env.py (a test checks).
ENV RAY_SERVE_THROUGHPUT_OPTIMIZED=1 \
    RAY_SERVE_ENABLE_HA_PROXY=1 \
    RAY_SERVE_HAPROXY_NBTHREAD=1 \
    RAY_SERVE_HAPROXY_METRICS_ENABLED=0 \
    RAY_SERVE_HAPROXY_RETRY_ON="conn-failure empty-response response-timeout" \
    RAY_max_direct_call_object_size=1048576 \
    RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH=75497472 \
    RAY_SERVE_CONTROL_LOOP_INTERVAL_S=0.5 \
    RAY_SERVE_METRICS_EXPORT_INTERVAL_MS=1000 \
    RAY_task_events_report_interval_ms=5000 \
    RAY_ray_events_report_interval_ms=5000 \
    RAY_raylet_report_resources_period_milliseconds=1000 \
    RAY_raylet_check_gc_period_milliseconds=1000 \
    RAY_memory_monitor_refresh_ms=1000 \
    RAY_enable_pipe_based_agent_to_parent_health_check=1 \
    REPORTER_UPDATE_INTERVAL_MS=15000 \
    METRICS_RECORD_INTERVAL_S=30

# tini is PID 1: it reaps the processes Ray leaves behind and passes signals on to the
# CLI. wget is what KubeRay's readiness and liveness probes run inside Ray pods.
# Debian's point releases replace package versions, so these are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini wget \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 --user-group imagetagger \
    && mkdir -p /opt/imagetagger/cache \
    && chown imagetagger:imagetagger /opt/imagetagger/cache

WORKDIR /opt/imagetagger/app

# The service port, on every interface of the container (IMAGETAGGER_HOST): `-p` reaches
# it. Ray's and Serve's own ports stay on the container's loopback (docs/SECURITY.md).
EXPOSE 8000

# Serve's HTTP proxy answers /-/healthz once the application's routes are up, on the
# port `imagetagger serve` writes to $IMAGETAGGER_PORT_FILE ($PORT until it has).
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-m", "imagetagger.healthcheck"]

# Tracing (docs/OPERATIONS.md, *Tracing*) is off until an OTLP endpoint is set; the
# standard variables reach every replica (and `imagetagger tag`'s workers), e.g.
#   docker run -e OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318 \
#     -e OTEL_SERVICE_NAME=imagetagger -e OTEL_TRACES_SAMPLER=parentbased_traceidratio \
#     -e OTEL_TRACES_SAMPLER_ARG=0.1 -p 8000:8000 imagetagger
# (also OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf,
# OTEL_SDK_DISABLED). Not set here: an image default would point every container at it.
ENTRYPOINT ["tini", "--", "imagetagger"]
CMD ["serve", "--config", "serve_config.yaml"]

# What serving on LiteRT needs, in its own layer (it changes far less often than the
# code): the project's dependencies without TensorFlow and Keras, and only the baked
# model's weight package (the LiteRT cache is keyed on that file's digest).
FROM base AS lean
ARG MODEL
# The model registry names each model's weight package: the script reads it, and the
# standard-library modules it imports, from beside it.
COPY pyproject.toml ./
COPY scripts/image_requirements.py ./scripts/
COPY imagetagger/__init__.py imagetagger/environment.py ./imagetagger/
COPY imagetagger/models/__init__.py imagetagger/models/specs.py ./imagetagger/models/
RUN python scripts/image_requirements.py lean --model "$MODEL" --pyproject pyproject.toml > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# TensorFlow converts the weights (and serves `--runtime tensorflow` in that image).
# WITH_CUDA=true installs TensorFlow's CUDA libraries for NVIDIA GPUs.
FROM lean AS build
ARG MODEL
ARG WITH_CUDA=false
RUN python scripts/image_requirements.py tensorflow --cuda "$WITH_CUDA" --pyproject pyproject.toml > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY README.md LICENSE ./
COPY imagetagger ./imagetagger
COPY deployments ./deployments
RUN pip install --no-cache-dir --no-deps .

# Numeric, so Kubernetes can verify runAsNonRoot.
USER 1000:1000

# Convert (EfficientNet-Lite) or download (efficientnet_b3: Keras 'imagenet') the
# weights now, and convert them to LiteRT flatbuffers (float32 and int8), so a replica
# on either runtime starts with no network and no conversion.
RUN python -c "from imagetagger.models.runtimes import RuntimeOptions as O, load_model; load_model('${MODEL}', O(runtime='tensorflow')); [load_model('${MODEL}', O(runtime='litert', precision=p)) for p in ('float32', 'int8')]"

# The TensorFlow image: the build stage as it is (both runtimes, every cache file).
FROM build AS tensorflow
COPY serve_config.yaml ./
COPY configs ./configs

# The lean CPU image (the default target): no TensorFlow, no Keras; the flatbuffers
# and their checksum sidecars from the build stage.
FROM lean AS litert
COPY README.md LICENSE ./
COPY imagetagger ./imagetagger
COPY deployments ./deployments
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import importlib.util as u; assert u.find_spec('tensorflow') is None and u.find_spec('keras') is None"
COPY --from=build --chown=1000:1000 /opt/imagetagger/cache/*.tflite* /opt/imagetagger/cache/
COPY serve_config.yaml ./
COPY configs ./configs
USER 1000:1000
