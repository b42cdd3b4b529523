# imagetagger: the Ray Serve application in one container, model weights baked in.
#
#   docker build -t imagetagger .                          # efficientnet_lite2, CPU
#   docker build --build-arg MODEL=efficientnet_b3 -t imagetagger:b3 .   # needs internet
#   docker build --build-arg MODEL=efficientnet_b3 --build-arg WITH_CUDA=true \
#     -t imagetagger:2.0.0-gpu .                           # GPU image (KubeRay manifest)
#   docker run --rm -p 8000:8000 --shm-size=1g imagetagger
#   docker run --rm -v "$PWD:/data:ro" imagetagger predict /data/cat.jpg
#
# Ray keeps its object store in /dev/shm: give the container room (--shm-size) or Ray
# falls back to slower disk. The container needs no network at run time.
FROM python:3.11-slim

# MODEL: the preset whose weights are converted and cached at build time; the container
# serves it whatever model the Serve config names ($IMAGETAGGER_MODEL, see cli.py).
# WITH_CUDA=true installs TensorFlow's CUDA libraries for NVIDIA GPUs.
ARG MODEL=efficientnet_lite2
ARG WITH_CUDA=false

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    IMAGETAGGER_CACHE_DIR=/opt/imagetagger/cache \
    KERAS_HOME=/opt/imagetagger/cache/keras \
    IMAGETAGGER_MODEL=${MODEL} \
    PORT=8000

# Ray's high-throughput serving mode, for `imagetagger serve` and for the `ray start`
# KubeRay runs in this image: the values of imagetagger/serving_env.py (a test checks).
ENV RAY_SERVE_THROUGHPUT_OPTIMIZED=1 \
    RAY_SERVE_ENABLE_HA_PROXY=1 \
    RAY_SERVE_HAPROXY_NBTHREAD=1 \
    RAY_SERVE_HAPROXY_METRICS_ENABLED=0 \
    RAY_SERVE_HAPROXY_RETRY_ON="conn-failure empty-response response-timeout" \
    RAY_max_direct_call_object_size=1048576 \
    RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH=75497472

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

# Dependencies first, in their own layer: they change far less often than the code.
COPY pyproject.toml README.md LICENSE ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && if [ "$WITH_CUDA" = "true" ]; then sed -i 's/^tensorflow\([<>=!~]\)/tensorflow[and-cuda]\1/' /tmp/requirements.txt; fi \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY imagetagger ./imagetagger
COPY deployments ./deployments
RUN pip install --no-cache-dir --no-deps .

# Numeric, so Kubernetes can verify runAsNonRoot.
USER 1000:1000

# Convert (EfficientNet-Lite) or download (efficientnet_b3: Keras 'imagenet') the
# weights now, and convert them to the LiteRT flatbuffer, so a replica on either runtime
# starts with no network and no conversion.
RUN python -c "from imagetagger.models.runtimes import RuntimeOptions, load_model; [load_model('${MODEL}', RuntimeOptions(runtime=r)) for r in ('tensorflow', 'litert')]"

COPY serve_config.yaml ./
COPY configs ./configs

EXPOSE 8000

# Serve's HTTP proxy answers /-/healthz once the application's routes are up.
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/-/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

ENTRYPOINT ["tini", "--", "imagetagger"]
CMD ["serve", "--config", "serve_config.yaml"]
