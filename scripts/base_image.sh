#!/usr/bin/env bash
# Make a Debian bookworm base image locally with debootstrap, for machines that cannot pull from a public
# registry (CI here). It stands in for debian:bookworm-slim: pass it to the build as
#   scripts/build_push.sh --no-push --base-image "$(scripts/base_image.sh)"
# Prints the image name on stdout. Idempotent: an existing image is kept unless --force.
#
# Environment: BYOC_BASE_IMAGE (name, default byoc-debootstrap:bookworm), DEBIAN_MIRROR (default: the first
# Debian mirror in this machine's apt sources).
set -euo pipefail

IMAGE=${BYOC_BASE_IMAGE:-byoc-debootstrap:bookworm}
FORCE=0
case ${1:-} in
--force) FORCE=1 ;;
"") ;;
*)
    echo "usage: scripts/base_image.sh [--force]" >&2
    exit 2
    ;;
esac

log() { echo "base_image: $*" >&2; }
die() {
    echo "base_image: error: $*" >&2
    exit 1
}

docker info >/dev/null 2>&1 || die "Docker engine not reachable (DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}): run scripts/services.sh start docker"

# The recipe's version, a label on the image: an image made by an older recipe is made again.
RECIPE=2
if ((FORCE == 0)) && [[ $(docker image inspect -f '{{index .Config.Labels "byoc.base-recipe"}}' "$IMAGE" 2>/dev/null) == "$RECIPE" ]]; then
    log "$IMAGE already exists (use --force to rebuild)"
    echo "$IMAGE"
    exit 0
fi

# The Debian mirror the machine already uses: one-line (deb URL suite ...) or deb822 (URIs: URL) sources.
mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [[ -f $f ]] && cat "$f"
    done | awk '/^(deb|URIs:)/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:.*\/debian\/?$/) { print $i; exit } }'
}
MIRROR=${DEBIAN_MIRROR:-$(mirror)}
[[ -n $MIRROR ]] || die "no Debian mirror found in /etc/apt/sources*; set DEBIAN_MIRROR"
command -v debootstrap >/dev/null || die "debootstrap not installed: run scripts/services.sh install"

ROOTFS=$(mktemp -d /var/tmp/byoc-rootfs.XXXXXX)
trap 'rm -rf "$ROOTFS"' EXIT
log "debootstrap --variant=minbase bookworm from $MIRROR"
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 ||
    die "debootstrap failed; last lines: $(tail -n3 "$ROOTFS.log" | tr '\n' ' ')"
rm -f "$ROOTFS.log"

# What debian:bookworm-slim has: the same suites, no package lists or caches, no docs, man pages or translations
# (33 MB of locale files alone), and dpkg told to leave them out of every package installed later too.
cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian*}/debian-security bookworm-security main
EOF
cat >"$ROOTFS/etc/dpkg/dpkg.cfg.d/byoc-slim" <<EOF
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/lintian/*
EOF
find "$ROOTFS"/usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/*.bin "$ROOTFS"/var/cache/apt/archives/*.deb \
    "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/locale/* "$ROOTFS"/var/log/*.log

tar --numeric-owner -C "$ROOTFS" -c . |
    docker import --change 'CMD ["bash"]' --change "LABEL byoc.base-recipe=$RECIPE" --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        - "$IMAGE" >/dev/null
log "imported $IMAGE ($(docker image inspect -f '{{.Size}}' "$IMAGE" | awk '{printf "%d MB", $1/1e6}'))"
echo "$IMAGE"
