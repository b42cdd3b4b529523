#!/usr/bin/env bash
# Build the image and check the running container as a user would meet it.
#
#   scripts/container_check.sh            (make container-check)
#
# Uses docker when a daemon answers, else podman (`--format docker`, so the HEALTHCHECK
# is kept). When the Dockerfile's pinned base cannot be pulled (no Docker Hub, as on the
# machine this was written on), a STAND-IN is built with debootstrap and imported
# under the base's tag (scripts/make_standin_base.sh: Debian's Python, not the official
# image); the report says so. Then, against real containers:
#
#   - GET / (and the time from `run` to its first 200), a URL tagged from a file server
#     inside the container (--allow-network 127.0.0.1/32), an upload;
#   - uid 1000, tini as PID 1, the HEALTHCHECK (`healthcheck run`);
#   - `stop` with the engine's default 10 s timeout: exit 0, within 10 s;
#   - API keys on: 401 without a key, 200 with it; `--network none` still serves;
#     the healthcheck with PORT changed, and with `serve --port N`;
#   - `predict` and `tag` on a mounted folder, no network;
#   - the lean image <= 1.3 GB and without TensorFlow; the `tensorflow` target's size
#     and start time (CHECK_TENSORFLOW=0 skips it).
#
# Minutes and GBs: not part of `make test`. Needs curl and python3 on the host; traffic
# stays on 127.0.0.1. Env: ENGINE, IMAGE (imagetagger:check), CHECK_TENSORFLOW (1),
# MAX_IMAGE_BYTES (1300000000), START_TIMEOUT_S (300), KEEP_LOGS_DIR.
set -uo pipefail

cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-imagetagger:check}
TF_IMAGE=${TF_IMAGE:-${IMAGE}-tensorflow}
CHECK_TENSORFLOW=${CHECK_TENSORFLOW:-1}
MAX_IMAGE_BYTES=${MAX_IMAGE_BYTES:-1300000000}
START_TIMEOUT_S=${START_TIMEOUT_S:-300}
LOGS=${KEEP_LOGS_DIR:-$(mktemp -d /tmp/imagetagger-container-check.XXXXXX)}
mkdir -p "$LOGS"
PREFIX=imagetagger-check-$$
failures=0
declare -a SUMMARY=()

say() { printf '%s\n' "$*" >&2; }
note() { SUMMARY+=("$*"); say "  * $*"; }
pass() { SUMMARY+=("PASS $*"); say "PASS $*"; }
fail() { SUMMARY+=("FAIL $*"); say "FAIL $*"; failures=$((failures + 1)); }
check() { # check NAME COMMAND...: pass when COMMAND exits 0
    local name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}
now() { date +%s.%N; }
elapsed() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }

# --- the engine ---------------------------------------------------------------------
if [ -n "${ENGINE:-}" ]; then
    engine=$ENGINE
elif command -v docker >/dev/null && docker info >/dev/null 2>&1; then
    engine=docker
elif command -v podman >/dev/null; then
    engine=podman
else
    say "container_check: neither a docker daemon nor podman is available"
    exit 2
fi
build_flags=()
[ "$engine" = podman ] && build_flags=(--format docker)
say "container_check: engine $engine ($($engine --version)); logs in $LOGS"

cleanup() {
    local names
    names=$($engine ps -a --format '{{.Names}}' 2>/dev/null | grep "^$PREFIX" || true)
    for name in $names; do
        $engine logs "$name" >"$LOGS/$name.log" 2>&1 || true
        $engine rm -f "$name" >/dev/null 2>&1 || true
    done
}
trap cleanup EXIT

# --- the base -----------------------------------------------------------------------
base=$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)
if $engine image inspect "$base" >/dev/null 2>&1; then
    if $engine image inspect --format '{{.Comment}}' "$base" 2>/dev/null | grep -q stand-in; then
        note "base $base: the debootstrap STAND-IN made earlier (Debian's Python, not the official image)"
    else
        note "base $base: present locally"
    fi
elif $engine pull "$base" >"$LOGS/pull.log" 2>&1; then
    note "base $base: pulled"
else
    note "base $base cannot be pulled ($(tail -1 "$LOGS/pull.log")): building the debootstrap STAND-IN"
    scripts/make_standin_base.sh "$base" "$engine" 2>"$LOGS/standin.log" ||
        { say "stand-in base failed, see $LOGS/standin.log"; exit 2; }
fi

# --- build --------------------------------------------------------------------------
t0=$(now)
if ! nice -n 19 $engine build "${build_flags[@]}" -t "$IMAGE" . >"$LOGS/build.log" 2>&1; then
    fail "build (see $LOGS/build.log)"
    exit 1
fi
note "build of $IMAGE (lean, default target): $(elapsed "$t0" "$(now)") s"
size=$($engine image inspect --format '{{.Size}}' "$IMAGE")
check "lean image size $((size / 1000000)) MB <= $((MAX_IMAGE_BYTES / 1000000)) MB" \
    test "$size" -le "$MAX_IMAGE_BYTES"
check "lean image has no TensorFlow" \
    $engine run --rm --network none --entrypoint python "$IMAGE" -c \
    "import importlib.util as u, sys; sys.exit(u.find_spec('tensorflow') is not None)"
if [ "$engine" = podman ]; then
    health=$($engine image inspect --format '{{json .HealthCheck}}' "$IMAGE")
else
    health=$($engine image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
fi
check "image keeps its HEALTHCHECK" grep -q imagetagger.healthcheck <<<"$health"

# --- helpers against a running container ---------------------------------------------
free_port() { python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

# inside NAME URL [HEADER]: HTTP status of a GET made inside the container (no network needed)
inside() {
    $engine exec "$1" python -c '
import sys, urllib.error, urllib.request
request = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 2:
    key, _, value = sys.argv[2].partition(":")
    request.add_header(key, value.strip())
try:
    print(urllib.request.urlopen(request, timeout=30).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError:
    print(0)
' "${@:2}" 2>/dev/null || echo 0
}

# wait_inside NAME URL: seconds until the URL answers 200 inside the container
wait_inside() {
    local start deadline
    start=$(now)
    deadline=$(($(date +%s) + START_TIMEOUT_S))
    while [ "$(date +%s)" -lt "$deadline" ]; do
        if [ "$(inside "$1" "$2")" = 200 ]; then
            elapsed "$start" "$(now)"
            return 0
        fi
        if [ "$($engine inspect --format '{{.State.Running}}' "$1" 2>/dev/null)" != true ]; then
            return 1
        fi
        sleep 1
    done
    return 1
}

healthcheck_ok() { # healthcheck_ok NAME: the image's own HEALTHCHECK passes now
    if [ "$engine" = podman ]; then
        $engine healthcheck run "$1" >/dev/null 2>&1
    else # docker runs it on its interval; run the same command by hand
        $engine exec "$1" python -m imagetagger.healthcheck
    fi
}

# stop_check NAME LABEL: `stop` with the default timeout; exit 0 and within 10 s
stop_check() {
    local t code took
    t=$(now)
    $engine stop "$1" >/dev/null 2>&1
    took=$(elapsed "$t" "$(now)")
    code=$($engine inspect --format '{{.State.ExitCode}}' "$1")
    note "$2: stop took $took s, exit $code"
    check "$2: stop (default 10 s timeout) exits 0" test "$code" = 0
    check "$2: stop within 10 s" python3 -c "import sys; sys.exit(float(sys.argv[1]) >= 10)" "$took"
}

json_get() { # json_get PYTHON_EXPR < body: evaluate EXPR on the parsed body `d`
    python3 -c "import json, sys; d = json.load(sys.stdin); print($1)"
}

# --- A: bridged, keys off, a file server inside --------------------------------------
port=$(free_port)
a=$PREFIX-a
t0=$(now)
$engine run -d --name "$a" -p "127.0.0.1:$port:8000" -v "$PWD/tests/data:/data:ro" "$IMAGE" \
    serve --config serve_config.yaml --allow-network 127.0.0.1/32 >/dev/null
first=""
deadline=$(($(date +%s) + START_TIMEOUT_S))
while [ "$(date +%s)" -lt "$deadline" ]; do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/")" = 200 ]; then
        first=$(elapsed "$t0" "$(now)")
        break
    fi
    [ "$($engine inspect --format '{{.State.Running}}' "$a")" = true ] || break
    sleep 1
done
if [ -n "$first" ]; then
    pass "lean: GET / 200 after $first s (run to first 200)"
    note "lean start-to-first-200: $first s"
else
    fail "lean: GET / never answered 200 within $START_TIMEOUT_S s"
fi
body=$(curl -s "http://127.0.0.1:$port/")
check "lean: GET / is the service description" \
    test "$(json_get "'version' in d and 'revision' in d" <<<"$body")" = True
$engine exec -d "$a" python -m http.server 8080 --bind 127.0.0.1 --directory /data >/dev/null
sleep 2
body=$(curl -s "http://127.0.0.1:$port/predictions?url=http://127.0.0.1:8080/chelsea.jpg&top=3")
say "  URL: $body"
check "lean: a URL is tagged (chelsea.jpg is a cat)" \
    test "$(json_get "d['predictions'][0]['label'] in ('Egyptian_cat', 'tabby', 'tiger_cat')" <<<"$body" 2>/dev/null)" = True
body=$(curl -s -F "file=@tests/data/coffee.jpg" "http://127.0.0.1:$port/predictions?top=3")
say "  upload: $body"
check "lean: an upload is tagged (coffee.jpg)" \
    test "$(json_get "d['filename'] == 'coffee.jpg' and d['predictions'][0]['label'] in ('espresso', 'cup', 'coffee_mug')" <<<"$body" 2>/dev/null)" = True
check "lean: runs as uid 1000" test "$($engine exec "$a" id -u)" = 1000
check "lean: tini is PID 1" test "$($engine exec "$a" cat /proc/1/comm)" = tini
check "lean: healthcheck healthy" healthcheck_ok "$a"
if $engine logs "$a" 2>&1 | grep -q "/dev/shm has only"; then
    note "lean: Ray put its object store outside /dev/shm (log: '/dev/shm has only ... available')"
fi
stop_check "$a" lean

# --- B: no network, API keys on, PORT changed -----------------------------------------
b=$PREFIX-b
key=container-check-key
hash=$(printf %s "$key" | sha256sum | cut -d' ' -f1)
$engine run -d --name "$b" --network none -e PORT=8124 -e "IMAGETAGGER_API_KEY_HASHES=$hash" \
    "$IMAGE" >/dev/null
if took=$(wait_inside "$b" http://127.0.0.1:8124/-/healthz); then
    pass "network none, PORT=8124: serving after $took s"
    check "keys on: 401 without a key" \
        test "$(inside "$b" 'http://127.0.0.1:8124/predictions?url=http://example.invalid/x.jpg')" = 401
    check "keys on: 401 with a wrong key" \
        test "$(inside "$b" 'http://127.0.0.1:8124/predictions?url=http://example.invalid/x.jpg' 'X-API-Key: wrong')" = 401
    # With the key the request is let through: no network, so the URL is 404 (UnreachableURL).
    check "keys on: the key is accepted (no network: UnreachableURL 404)" \
        test "$(inside "$b" 'http://127.0.0.1:8124/predictions?url=http://example.invalid/x.jpg' "Authorization: Bearer $key")" = 404
    check "PORT=8124: healthcheck healthy" healthcheck_ok "$b"
else
    fail "network none, PORT=8124: never served"
fi
stop_check "$b" "network none"

# --- C: serve --port N (PORT still 8000) ---------------------------------------------
c=$PREFIX-c
$engine run -d --name "$c" --network none "$IMAGE" serve --config serve_config.yaml --port 8125 >/dev/null
if took=$(wait_inside "$c" http://127.0.0.1:8125/-/healthz); then
    pass "serve --port 8125: serving after $took s"
    check "serve --port 8125: healthcheck healthy (follows the port serve uses)" healthcheck_ok "$c"
else
    fail "serve --port 8125: never served"
fi
stop_check "$c" "--port 8125"

# --- D: predict and tag on a mounted folder, no network --------------------------------
out=$(mktemp -d /tmp/imagetagger-check-out.XXXXXX)
chmod 0777 "$out"
lines=$($engine run --rm --network none -v "$PWD/tests/data:/data:ro" "$IMAGE" \
    predict /data/chelsea.jpg /data/coffee.jpg 2>"$LOGS/predict.log")
say "  predict: $lines"
check "predict on a mounted folder: one answer per file" test "$(grep -c predictions <<<"$lines")" = 2
$engine run --rm --network none -v "$PWD/tests/data:/data:ro" -v "$out:/out" "$IMAGE" \
    tag /data --out /out/tags.jsonl >"$LOGS/tag.log" 2>&1
images=$(find tests/data -maxdepth 1 -name '*.jpg' | wc -l)
check "tag on a mounted folder: one row per image ($images)" \
    test "$(wc -l <"$out/tags.jsonl" 2>/dev/null || echo 0)" = "$images"
rm -rf "$out"

# --- E: the tensorflow target ---------------------------------------------------------
if [ "$CHECK_TENSORFLOW" = 1 ]; then
    t0=$(now)
    if nice -n 19 $engine build "${build_flags[@]}" --target tensorflow -t "$TF_IMAGE" . \
        >"$LOGS/build-tensorflow.log" 2>&1; then
        note "build of $TF_IMAGE (--target tensorflow, cached stages reused): $(elapsed "$t0" "$(now)") s"
        tf_size=$($engine image inspect --format '{{.Size}}' "$TF_IMAGE")
        note "tensorflow image size: $((tf_size / 1000000)) MB"
        e=$PREFIX-e
        $engine run -d --name "$e" --network none "$TF_IMAGE" \
            serve --config serve_config.yaml --runtime tensorflow >/dev/null
        if took=$(wait_inside "$e" http://127.0.0.1:8000/); then
            pass "tensorflow image, --runtime tensorflow: GET / 200 after $took s"
        else
            fail "tensorflow image: never served"
        fi
        stop_check "$e" tensorflow
    else
        fail "build --target tensorflow (see $LOGS/build-tensorflow.log)"
    fi
fi

say ""
say "container_check summary ($engine, logs in $LOGS):"
for line in "${SUMMARY[@]}"; do say "  $line"; done
if [ "$failures" -gt 0 ]; then
    say "container_check: $failures check(s) failed"
    exit 1
fi
say "container_check: all checks passed"
