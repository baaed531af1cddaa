#!/usr/bin/env bash
# Build the images and push them to Amazon ECR.
#
#   scripts/build_push.sh [--region R] [--account ID] [--tag T] [--no-latest] [--images xgboost,linear,monitor]
#                         [--no-push] [--registry HOST[:PORT]] [--endpoint-url URL] [--base-image IMAGE]
#
# Builds byoc-<name>:<tag> and byoc-<name>:latest locally (containers/Dockerfile, one target per image; --no-latest:
# <tag> only, locally and in ECR). Unless --no-push: creates each ECR repository when missing (scan on push on),
# logs Docker in with an ECR authorization token (what `aws ecr get-login-password | docker login` does, via
# boto3: no AWS CLI needed), tags and pushes <tag> and latest, and prints one line per pushed tag on stdout:
#   <registry>/byoc-xgboost:<tag> <registry>/byoc-xgboost@sha256:<digest>
# (with --no-push: byoc-xgboost:<tag> <image id>). Everything else goes to stderr. Idempotent.
#
# Defaults: account from STS GetCallerIdentity; region from --region, AWS_REGION, AWS_DEFAULT_REGION or the
# profile; tag = short git revision of HEAD (suffix -dirty when the image's sources have uncommitted changes);
# registry = <account>.dkr.ecr.<region>.amazonaws.com; base image = the Dockerfile's (debian:bookworm-slim).
# --endpoint-url (or AWS_ENDPOINT_URL) points the AWS API calls elsewhere (tests use moto).
# Environment: PYTHON (with boto3; default .venv/bin/python, else python3), BYOC_BASE_IMAGE.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ALL_IMAGES=(xgboost linear monitor)

log() { echo "build_push: $*" >&2; }
die() {
    echo "build_push: error: $*" >&2
    exit 1
}
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
}

REGION='' ACCOUNT='' TAG='' LATEST=1 PUSH=1 REGISTRY='' ENDPOINT_URL=${AWS_ENDPOINT_URL:-}
BASE_IMAGE=${BYOC_BASE_IMAGE:-}
IMAGES=("${ALL_IMAGES[@]}")
while (($#)); do
    case $1 in
    --region | --account | --tag | --images | --registry | --endpoint-url | --base-image)
        (($# >= 2)) || die "$1 needs a value"
        case $1 in
        --region) REGION=$2 ;;
        --account) ACCOUNT=$2 ;;
        --tag) TAG=$2 ;;
        --images) IFS=, read -r -a IMAGES <<<"$2" ;;
        --registry) REGISTRY=$2 ;;
        --endpoint-url) ENDPOINT_URL=$2 ;;
        --base-image) BASE_IMAGE=$2 ;;
        esac
        shift 2
        ;;
    --no-latest) LATEST=0 && shift ;;
    --no-push) PUSH=0 && shift ;;
    -h | --help) usage ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done

for i in "${!IMAGES[@]}"; do
    name=${IMAGES[i]#byoc-}
    [[ " ${ALL_IMAGES[*]} " == *" $name "* ]] || die "--images: unknown image '${IMAGES[i]}', expected some of ${ALL_IMAGES[*]}"
    IMAGES[i]=$name
done
((${#IMAGES[@]})) || die "--images: empty list"
[[ -z $ACCOUNT || $ACCOUNT =~ ^[0-9]{12}$ ]] || die "--account: received '$ACCOUNT', expected a 12-digit AWS account ID"
[[ -z $TAG || $TAG =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "--tag: received '$TAG', not a valid Docker tag"

# --- Docker first: nothing else matters without it.
command -v docker >/dev/null || die "docker CLI not found (install Docker)"
if ! docker_error=$(timeout 30 docker info 2>&1 >/dev/null); then
    die "Docker engine not reachable (DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}): is it running? $(tail -n1 <<<"$docker_error")"
fi

# --- Version and revision for the OCI labels and the default tag.
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n1)
# What goes into the images (the dirty suffix of the tag): code, the Dockerfile and its scripts, the requirements.
SOURCES=(core algorithms serving processing monitoring analytics containers .dockerignore requirements/constraints.txt
    requirements/runtime.txt requirements/runtime-algorithm.txt requirements/runtime-algorithm-nodeps.txt
    requirements/runtime-monitor.txt)
if REVISION=$(git -C "$REPO" rev-parse HEAD 2>/dev/null); then
    SHORT=$(git -C "$REPO" rev-parse --short=12 HEAD)
    if [[ -n $(git -C "$REPO" status --porcelain -- "${SOURCES[@]}") ]]; then
        REVISION+=-dirty SHORT+=-dirty
    fi
    TAG=${TAG:-$SHORT}
else
    REVISION=unknown
    [[ -n $TAG ]] || die "not a git checkout: pass --tag"
fi

# --- AWS side before the (long) build, so missing credentials fail fast: account, repositories, login password.
if ((PUSH)); then
    if [[ -z ${PYTHON:-} ]]; then
        PYTHON=$REPO/.venv/bin/python
        [[ -x $PYTHON ]] || PYTHON=python3
    fi
    "$PYTHON" -c 'import boto3' 2>/dev/null || die "$PYTHON cannot import boto3 (pip install boto3, or set PYTHON)"
    aws_out=$(
        "$PYTHON" - "$REGION" "$ACCOUNT" "$ENDPOINT_URL" "${IMAGES[@]/#/byoc-}" <<'PY'
import base64
import sys

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

region, account, endpoint, *repositories = sys.argv[1:]


def fail(message):
    print(f"build_push: error: {message}", file=sys.stderr)
    sys.exit(1)


try:
    session = boto3.Session(region_name=region or None)
    if not session.region_name:
        raise NoRegionError()
    kwargs = {"endpoint_url": endpoint} if endpoint else {}
    if not account:
        account = session.client("sts", **kwargs).get_caller_identity()["Account"]
    ecr = session.client("ecr", **kwargs)
    for name in repositories:
        try:
            ecr.describe_repositories(registryId=account, repositoryNames=[name])
            print(f"build_push: ECR repository {name} exists", file=sys.stderr)
        except ecr.exceptions.RepositoryNotFoundException:
            ecr.create_repository(
                registryId=account, repositoryName=name, imageScanningConfiguration={"scanOnPush": True}
            )
            print(f"build_push: created ECR repository {name} (scan on push)", file=sys.stderr)
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
except NoCredentialsError:
    fail("no AWS credentials found (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or use a role)")
except NoRegionError:
    fail("no AWS region: pass --region or set AWS_REGION")
except ClientError as e:
    err = e.response.get("Error", {})
    fail(f"AWS refused {e.operation_name}: {err.get('Code')}: {err.get('Message')}")
except BotoCoreError as e:
    fail(f"AWS call failed: {e}")
print(account)
print(session.region_name)
print(base64.b64decode(token).decode().split(":", 1)[1])
PY
    ) || exit 1
    { read -r ACCOUNT && read -r REGION && read -r PASSWORD; } <<<"$aws_out"
    domain=amazonaws.com
    [[ $REGION == cn-* ]] && domain=amazonaws.com.cn
    REGISTRY=${REGISTRY:-$ACCOUNT.dkr.ecr.$REGION.$domain}
    if ! login_out=$(docker login --username AWS --password-stdin "$REGISTRY" <<<"$PASSWORD" 2>&1); then
        die "docker login to $REGISTRY refused: $(tail -n1 <<<"$login_out")"
    fi
    unset PASSWORD aws_out
    log "logged in to $REGISTRY"
fi

# --- Build: one Dockerfile, one target per image; the shared stages come from the cache after the first.
build_args=(--build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION")
[[ -z $BASE_IMAGE ]] || build_args+=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
compgen -G "$REPO/containers/wheelhouse/*.whl" >/dev/null ||
    log "no wheels in containers/wheelhouse: the build installs from the package index (scripts/wheelhouse.sh makes it offline)"
# --no-latest leaves the local :latest tags alone too (other work may be running against them).
for name in "${IMAGES[@]}"; do
    local_tags=(-t "byoc-$name:$TAG")
    ((LATEST)) && local_tags+=(-t "byoc-$name:latest")
    log "building byoc-$name:$TAG"
    SECONDS=0
    docker build -f "$REPO/containers/Dockerfile" --target "$name" "${build_args[@]}" \
        "${local_tags[@]}" "$REPO" >&2 || die "docker build of byoc-$name failed (output above)"
    log "built byoc-$name:$TAG in ${SECONDS}s ($(docker image inspect -f '{{.Size}}' "byoc-$name:$TAG" | awk '{printf "%d MB", $1/1e6}'))"
done

if ((!PUSH)); then
    for name in "${IMAGES[@]}"; do
        echo "byoc-$name:$TAG $(docker image inspect -f '{{.Id}}' "byoc-$name:$TAG")"
    done
    exit 0
fi

# --- Tag and push; the digest comes from the push itself (the registry's manifest digest).
tags=("$TAG")
((LATEST)) && [[ $TAG != latest ]] && tags+=(latest)
push_log=$(mktemp)
trap 'rm -f "$push_log"' EXIT
for name in "${IMAGES[@]}"; do
    for tag in "${tags[@]}"; do
        uri=$REGISTRY/byoc-$name:$tag
        docker tag "byoc-$name:$TAG" "$uri"
        log "pushing $uri"
        if ! docker push "$uri" >"$push_log" 2>&1; then
            cat "$push_log" >&2
            die "push of $uri refused: $(tail -n1 "$push_log")"
        fi
        digest=$(sed -n 's/.*digest: \(sha256:[0-9a-f]\{64\}\).*/\1/p' "$push_log" | tail -n1)
        [[ -n $digest ]] || die "push of $uri reported no digest: $(tail -n1 "$push_log")"
        echo "$uri $REGISTRY/byoc-$name@$digest"
    done
done
