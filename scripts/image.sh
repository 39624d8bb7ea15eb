#!/usr/bin/env bash
# Build and run the project image with Docker when a Docker engine answers, otherwise with buildah
# (no daemon, no image registry: the base image is made locally with debootstrap).
#
#   scripts/image.sh build [--gpu] [--no-cache]
#                                         build $IMAGE from the Dockerfile
#   scripts/image.sh base                 make the local Debian base image (buildah only; once)
#   scripts/image.sh run [-e K=V] [-v HOST:CTR[:ro]] [--] [CMD ARG...]
#                                         run CMD in $IMAGE (default: the image's CMD), as the
#                                         image's user, with the host network (-p is not needed);
#                                         the container is named mlops-run-<this script's pid>
#   scripts/image.sh ready                check that images can be built here (exit 3 if not)
#   scripts/image.sh engine               print the engine that would be used (docker|buildah)
#   scripts/image.sh size                 print the image size
#   scripts/image.sh command              print the image's default command, one word a line
#
# Settings (environment):
#   IMAGE           tag to build and run            (default localhost/mlops-template:dev,
#                                                    build --gpu: localhost/mlops-template:dev-gpu)
#   BASE_IMAGE      local base for buildah builds   (default localhost/mlops-base:bookworm)
#   IMAGE_ENGINE    docker|buildah, to force one    (default: docker if `docker info` works)
#   STORAGE_DRIVER  buildah storage driver, overlay|vfs (default: the one in use, else buildah's)
#   IMAGE_LAYERS    true|false: keep each step's layer as build cache (default true on overlay)
#   IMAGE_CACHE     host directory for the uv cache (default /var/tmp/mlops-image/uv-cache)
#   DEBIAN_MIRROR   where debootstrap downloads     (default: the Debian mirror apt uses)
#   IMAGE_INSTALL   0 = never apt-get install buildah/debootstrap (default 1)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
IMAGE_SET=${IMAGE:+1}
IMAGE=${IMAGE:-localhost/mlops-template:dev}
BASE_IMAGE=${BASE_IMAGE:-localhost/mlops-base:bookworm}
IMAGE_CACHE=${IMAGE_CACHE:-/var/tmp/mlops-image/uv-cache}
IMAGE_INSTALL=${IMAGE_INSTALL:-1}
SUITE=bookworm

die() {
    echo "image.sh: $*" >&2
    exit 1
}

log() {
    echo "image.sh: $*" >&2
}

# Exit status 3: no engine can be used here (the image test skips on it).
unavailable() {
    echo "image.sh: cannot build images here: $*" >&2
    exit 3
}

engine() {
    if [ -n "${IMAGE_ENGINE:-}" ]; then
        echo "$IMAGE_ENGINE"
    elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        echo docker
    else
        echo buildah
    fi
}

# buildah and debootstrap come from apt; root is needed both to install them and to build with
# chroot isolation (this script does not set up rootless user namespaces).
need_buildah() {
    local missing=()
    command -v buildah >/dev/null 2>&1 || missing+=(buildah)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    if [ "${#missing[@]}" -gt 0 ]; then
        local hint="no Docker engine answers and ${missing[*]} is not installed"
        [ "$IMAGE_INSTALL" = 1 ] || unavailable "$hint (IMAGE_INSTALL=0: not installing it)"
        [ "$(id -u)" = 0 ] || unavailable "$hint; as root: apt-get install ${missing[*]}"
        command -v apt-get >/dev/null 2>&1 || unavailable "$hint, and there is no apt-get"
        log "installing ${missing[*]} with apt-get"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
            unavailable "$hint, and apt-get could not install it"
    fi
    [ "$(id -u)" = 0 ] || unavailable "no Docker engine answers, and buildah needs root here (chroot isolation)"
}

# buildah with the chosen storage driver. Buildah 1.28 (Debian bookworm) ignores the
# STORAGE_DRIVER environment variable, so it becomes --storage-driver; unset, buildah keeps the
# driver its storage already uses, or picks one (overlay where the kernel allows it, else vfs).
bh() {
    if [ -n "${STORAGE_DRIVER:-}" ]; then
        buildah --storage-driver "$STORAGE_DRIVER" "$@"
    else
        buildah "$@"
    fi
}

# The first deb.debian.org-style URI apt is configured with (deb822 or one-line sources).
debian_mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then
        echo "$DEBIAN_MIRROR"
        return
    fi
    local uri
    uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        sed -nE 's#^(URIs:[[:space:]]*|deb[[:space:]]+(\[[^]]*\][[:space:]]+)?)([a-z]+://[^[:space:]]*/debian)/?([[:space:]].*)?$#\3#p' |
        head -n 1)
    echo "${uri:-http://deb.debian.org/debian}"
}

make_base() {
    need_buildah
    if bh inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
        log "base image $BASE_IMAGE exists"
        return
    fi
    local work rootfs mirror ctr mnt start
    start=$(date +%s)
    work=$(mktemp -d /var/tmp/mlops-base.XXXXXX)
    rootfs=$work/rootfs
    mirror=$(debian_mirror)
    log "debootstrap $SUITE from $mirror (about a minute)"
    if ! debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
        tail -n 20 "$work/debootstrap.log" >&2
        rm -rf "$work"
        die "debootstrap failed"
    fi
    # Apt's package lists and downloaded .debs are not needed in the image.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    ctr=$(bh from scratch)
    mnt=$(bh mount "$ctr")
    cp -a "$rootfs/." "$mnt/"
    bh umount "$ctr" >/dev/null
    bh config \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 \
        --cmd /bin/bash \
        --label org.opencontainers.image.description="Debian $SUITE minbase with python3 (debootstrap)" \
        "$ctr"
    bh commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
    rm -rf "$work"
    log "base image $BASE_IMAGE made in $(($(date +%s) - start)) s"
}

build() {
    local accelerator=cpu no_cache=()
    while [ $# -gt 0 ]; do
        case $1 in
        --gpu)
            accelerator=gpu
            [ -n "$IMAGE_SET" ] || IMAGE=localhost/mlops-template:dev-gpu
            ;;
        --no-cache) no_cache=(--no-cache) ;;
        *) die "build: unknown argument $1" ;;
        esac
        shift
    done
    local start
    start=$(date +%s)
    if [ "$(engine)" = docker ]; then
        docker build "${no_cache[@]}" --build-arg ACCELERATOR="$accelerator" -t "$IMAGE" "$REPO"
    else
        make_base
        mkdir -p "$IMAGE_CACHE"
        # --layers keeps each step's result, so a change to our code does not reinstall the
        # locked dependencies; the uv cache (a host directory mounted into RUN steps only) makes
        # a changed lock download only what changed. The host's CA bundle is mounted (and named
        # for uv, which does not read the system store by default) because TLS to the package
        # registries may go through a proxy certificate.
        # vfs stores every layer as a full copy of the file system (3 GB each here), so only
        # overlay keeps the intermediate layers by default.
        local layers=${IMAGE_LAYERS:-}
        if [ -z "$layers" ]; then
            if [ "$(bh info --format '{{.store.GraphDriverName}}')" = overlay ]; then
                layers=true
            else
                layers=false
            fi
        fi
        bh bud --isolation chroot --pull-never --layers="$layers" --force-rm "${no_cache[@]}" \
            --build-arg PYTHON_IMAGE="$BASE_IMAGE" \
            --build-arg ACCELERATOR="$accelerator" \
            --build-arg UV_NO_CACHE=0 \
            --build-arg UV_CACHE_DIR=/var/cache/uv \
            -v "$IMAGE_CACHE:/var/cache/uv" \
            -v /etc/ssl/certs:/etc/ssl/certs:ro \
            --build-arg SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
            -t "$IMAGE" "$REPO"
    fi
    log "built $IMAGE ($accelerator) in $(($(date +%s) - start)) s"
}

# The image's default command (ENTRYPOINT + CMD), one word per line.
default_command() {
    local format='{{range .Config.Entrypoint}}{{println .}}{{end}}{{range .Config.Cmd}}{{println .}}{{end}}'
    if [ "$(engine)" = docker ]; then
        docker image inspect --format "$format" "$IMAGE"
    else
        bh inspect --type image --format "{{range .OCIv1.Config.Entrypoint}}{{println .}}{{end}}{{range .OCIv1.Config.Cmd}}{{println .}}{{end}}" "$IMAGE"
    fi
}

run() {
    local envs=() volumes=() command=()
    while [ $# -gt 0 ]; do
        case $1 in
        -e | --env)
            envs+=("$2")
            shift 2
            ;;
        -v | --volume)
            volumes+=("$2")
            shift 2
            ;;
        --)
            shift
            command=("$@")
            break
            ;;
        -*) die "run: unknown option $1" ;;
        *)
            command=("$@")
            break
            ;;
        esac
    done
    if [ "$(engine)" = docker ]; then
        local args=(--rm --network host --name "mlops-run-$$")
        for e in "${envs[@]}"; do args+=(-e "$e"); done
        for v in "${volumes[@]}"; do args+=(-v "$v"); done
        exec docker run "${args[@]}" "$IMAGE" "${command[@]}"
    fi
    need_buildah
    bh inspect --type image "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE: run scripts/image.sh build"
    if [ "${#command[@]}" -eq 0 ]; then
        mapfile -t command < <(default_command)
        [ "${#command[@]}" -gt 0 ] || die "$IMAGE has no default command"
    fi
    # Chroot isolation: no network namespace, so a server in the container listens on the host's
    # interfaces directly, like `docker run --network host`.
    local args=(--isolation chroot)
    for e in "${envs[@]}"; do args+=(--env "$e"); done
    for v in "${volumes[@]}"; do args+=(--volume "$v"); done
    local ctr status=0
    ctr=$(bh from --pull-never --quiet --name "mlops-run-$$" "$IMAGE")
    # shellcheck disable=SC2064
    trap "bh rm '$ctr' >/dev/null 2>&1 || true" EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    bh run "${args[@]}" "$ctr" -- "${command[@]}" || status=$?
    exit "$status"
}

size() {
    if [ "$(engine)" = docker ]; then
        docker image inspect --format '{{.Size}}' "$IMAGE"
    else
        need_buildah
        bh images --noheading --format '{{.Size}}' "$IMAGE"
    fi
}

# Exit 0 when images can be built and run here (installing buildah if allowed), 3 when not.
ready() {
    if [ "$(engine)" = docker ]; then
        echo docker
        return
    fi
    need_buildah
    local ctr
    ctr=$(bh from scratch 2>/dev/null) || unavailable "buildah cannot create a container"
    if ! bh mount "$ctr" >/dev/null 2>&1; then
        bh rm "$ctr" >/dev/null 2>&1 || true
        unavailable "buildah cannot mount a container file system (unprivileged container?)"
    fi
    bh rm "$ctr" >/dev/null
    echo "buildah ($(bh info --format '{{.store.GraphDriverName}}') storage)"
}

case ${1:-} in
ready) ready ;;
build)
    shift
    build "$@"
    ;;
base) make_base ;;
run)
    shift
    run "$@"
    ;;
engine) engine ;;
size) size ;;
command) default_command ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
