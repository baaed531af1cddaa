#!/usr/bin/env bash
# The machine-level services the container tests need: a Docker engine, a local image registry with htpasswd
# auth (stand-in for ECR's registry) and moto (stand-in for the ECR API). Used by CI on a fresh Debian machine
# and by developers.
#
#   scripts/services.sh install              apt-get install what is missing (no-op when all present)
#   scripts/services.sh start [SERVICE...]   start docker, moto, registry (default: all), skipping running ones
#   scripts/services.sh stop [SERVICE...]    stop only what this script started (PIDs in the state dir)
#   scripts/services.sh status
#
# Environment: BYOC_STATE_DIR (default build/services), BYOC_REGISTRY_ADDR (127.0.0.1:5000),
# BYOC_MOTO_PORT (5001), PYTHON (default .venv/bin/python: moto and boto3 come from requirements/dev.txt).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
STATE=${BYOC_STATE_DIR:-$REPO/build/services}
REGISTRY_ADDR=${BYOC_REGISTRY_ADDR:-127.0.0.1:5000}
MOTO_PORT=${BYOC_MOTO_PORT:-5001}
export MOTO_PORT # moto needs its own port to call itself back (Step Functions, presigned URLs)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
# Packages CI needs besides Python: the engine, debootstrap for the base image, the registry and htpasswd for
# the push test, shellcheck for the lint, gcc + headers for the one sdist in the wheelhouse (sagemaker-training),
# chromium (+ a font) to check that the monitoring report renders, docker-compose for SageMaker local mode,
# nodejs + npm for asl-validator in `make lint` (bookworm's Node 18 runs it).
APT_PACKAGES=(docker.io docker-compose debootstrap docker-registry apache2-utils shellcheck gcc python3-dev chromium
    fonts-dejavu-core nodejs npm)
# An equivalent already on the machine counts as installed: NodeSource's nodejs bundles npm and conflicts with
# Debian's npm; GitHub's Ubuntu runners (.github/workflows/ci.yml) ship Docker CE with the Compose plugin, whose
# containerd conflicts with docker.io, and Google Chrome, where Ubuntu's chromium package is only a snap stub.
provided() {
    case $1 in
    nodejs) command -v node ;;
    npm) command -v npm ;;
    docker.io) command -v dockerd ;;
    docker-compose) command -v docker-compose || docker compose version ;;
    chromium) command -v chromium || command -v chromium-browser || command -v google-chrome ;;
    *) false ;;
    esac >/dev/null 2>&1
}

log() { echo "services: $*" >&2; }
die() {
    echo "services: error: $*" >&2
    exit 1
}

install() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        provided "$pkg" && continue
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        log "all packages present: ${APT_PACKAGES[*]}"
        return
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    # The engine's postinst tries to start a service; without systemd that fails harmlessly.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# A recorded PID counts only while it is alive and still runs the program we started (PIDs get reused).
alive() {
    local name=$1 expect=$2 pid
    [[ -f $STATE/$name.pid ]] || return 1
    pid=$(<"$STATE/$name.pid")
    [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$expect"
}

wait_for() {
    local what=$1 tries=$2
    shift 2
    local i
    for ((i = 0; i < tries; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    die "$what did not become ready (see $STATE/$what.log)"
}

start_docker() {
    if alive docker dockerd && docker info >/dev/null 2>&1; then
        log "docker: already running (pid $(<"$STATE/docker.pid"), started by this script)"
        return
    fi
    if docker info >/dev/null 2>&1; then
        log "docker: engine already reachable, leaving it alone"
        return
    fi
    command -v dockerd >/dev/null || die "dockerd not installed: run scripts/services.sh install"
    dockerd --host unix:///var/run/docker.sock >"$STATE/docker.log" 2>&1 &
    echo $! >"$STATE/docker.pid"
    wait_for docker 240 docker info
    log "docker: started (pid $(<"$STATE/docker.pid"))"
}

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

start_moto() {
    if alive moto moto_server; then
        log "moto: already running (pid $(<"$STATE/moto.pid"), started by this script)"
        return
    fi
    if port_open 127.0.0.1 "$MOTO_PORT"; then
        log "moto: something already listens on 127.0.0.1:$MOTO_PORT, leaving it alone"
        return
    fi
    [[ -x $(dirname "$PYTHON")/moto_server ]] || die "moto_server not found next to $PYTHON: run make setup"
    "$(dirname "$PYTHON")/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$STATE/moto.log" 2>&1 &
    echo $! >"$STATE/moto.pid"
    wait_for moto 120 port_open 127.0.0.1 "$MOTO_PORT"
    log "moto: started on 127.0.0.1:$MOTO_PORT (pid $(<"$STATE/moto.pid"))"
}

# The registry plays ECR's registry: its only user is AWS and its password is the one moto's ECR
# GetAuthorizationToken hands out (base64 of AWS:<password>) for the default account, so a push script that
# logs in with the token gets in, and one with another account's token is refused.
ecr_password() {
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN='' "$PYTHON" -c '
import base64, sys, boto3
ecr = boto3.client("ecr", region_name="us-east-1", endpoint_url=sys.argv[1])
token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
print(base64.b64decode(token).decode().split(":", 1)[1])
' "http://127.0.0.1:$MOTO_PORT"
}

start_registry() {
    if alive registry docker-registry; then
        log "registry: already running (pid $(<"$STATE/registry.pid"), started by this script)"
        return
    fi
    if port_open "${REGISTRY_ADDR%:*}" "${REGISTRY_ADDR##*:}"; then
        log "registry: something already listens on $REGISTRY_ADDR, leaving it alone"
        return
    fi
    command -v docker-registry >/dev/null || die "docker-registry not installed: run scripts/services.sh install"
    port_open 127.0.0.1 "$MOTO_PORT" || die "registry: its password comes from moto; start moto first"
    htpasswd -Bbc "$STATE/htpasswd" AWS "$(ecr_password)" 2>/dev/null
    cat >"$STATE/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $STATE/registry-data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
auth:
  htpasswd:
    realm: byoc-test-registry
    path: $STATE/htpasswd
EOF
    docker-registry serve "$STATE/registry.yml" >"$STATE/registry.log" 2>&1 &
    echo $! >"$STATE/registry.pid"
    wait_for registry 120 port_open "${REGISTRY_ADDR%:*}" "${REGISTRY_ADDR##*:}"
    log "registry: started on $REGISTRY_ADDR (pid $(<"$STATE/registry.pid"), user AWS)"
}

stop_one() {
    local name=$1 expect=$2 pid i
    if ! alive "$name" "$expect"; then
        rm -f "$STATE/$name.pid"
        log "$name: not started by this script, nothing to stop"
        return
    fi
    pid=$(<"$STATE/$name.pid")
    kill -TERM "$pid"
    for ((i = 0; i < 120; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name: still running after 30 s, killing pid $pid"
        kill -KILL "$pid"
    fi
    rm -f "$STATE/$name.pid"
    log "$name: stopped (pid $pid)"
}

status() {
    if docker info >/dev/null 2>&1; then log "docker: reachable"; else log "docker: NOT reachable"; fi
    if port_open 127.0.0.1 "$MOTO_PORT"; then log "moto: 127.0.0.1:$MOTO_PORT open"; else log "moto: down"; fi
    if port_open "${REGISTRY_ADDR%:*}" "${REGISTRY_ADDR##*:}"; then log "registry: $REGISTRY_ADDR open"; else
        log "registry: down"
    fi
}

main() {
    local action=${1:-}
    shift || true
    local services=("$@")
    ((${#services[@]})) || services=(docker moto registry)
    mkdir -p "$STATE"
    case $action in
    install) install ;;
    start)
        local s
        for s in "${services[@]}"; do
            case $s in
            docker) start_docker ;;
            moto) start_moto ;;
            registry) start_registry ;;
            *) die "unknown service '$s' (expected docker, moto or registry)" ;;
            esac
        done
        ;;
    stop)
        # Reverse order: the registry and moto do not need the engine, but the engine goes last anyway.
        local i
        for ((i = ${#services[@]} - 1; i >= 0; i--)); do
            case ${services[i]} in
            docker) stop_one docker dockerd ;;
            moto) stop_one moto moto_server ;;
            registry) stop_one registry docker-registry ;;
            *) die "unknown service '${services[i]}' (expected docker, moto or registry)" ;;
            esac
        done
        ;;
    status) status ;;
    *)
        echo "usage: scripts/services.sh {install|start|stop|status} [docker|moto|registry ...]" >&2
        exit 2
        ;;
    esac
}

main "$@"
