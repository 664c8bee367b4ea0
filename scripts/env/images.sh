#!/usr/bin/env bash
# The node's images, built here: no container registry is reachable, so the
# base is made from Debian packages (mmdebstrap) and the images are built
# from the repo's own Dockerfile by buildah (daemonless), with the binaries
# the test tiers already built on the host (BINARIES=prebuilt).
#
#   images.sh install buildah, mmdebstrap; the base image (cached)
#   images.sh build   base (cached), pause, and the operator, gateway and
#                     consumer images from $CARGO_TARGET_DIR/$PARLEY_IMAGE_PROFILE
#                     (debug by default: what the test tiers build), saved as
#                     archives in $IMAGES_DIR
#   (scripts/env/node.sh start loads them; node.sh load reloads them into a
#   running node)
#   images.sh env     the image names
#
# A user with Docker builds the same images against the public base images
# (README, Images).
set -euo pipefail

IMAGES_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=common.sh
source "$IMAGES_HERE/common.sh"

IMAGES_REPO=$(cd "$IMAGES_HERE/../.." && pwd)
IMAGES_DIR=$PARLEY_RUN/images
IMAGE_TAG=${PARLEY_IMAGE_TAG:-dev}
IMAGE_PREFIX=${PARLEY_IMAGE_PREFIX:-localhost/parley}
PAUSE_IMAGE=$IMAGE_PREFIX/pause:1.0
BASE_IMAGE=$IMAGE_PREFIX/base:bookworm
IMAGE_TARGETS=(parley-operator parley-gateway parley-consumer)
# The base: Debian's minimal variant plus the CA bundle, no docs; the same
# release as the host, whose glibc the prebuilt binaries link against.
BASE_SUITE=bookworm
BASE_PACKAGES=ca-certificates
BUILDAH_ROOT=$PARLEY_CACHE/containers/storage
BUILDAH_RUNROOT=$PARLEY_RUN/containers

buildah_() {
  buildah --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT" --storage-driver overlay "$@"
}

install_tools() {
  local missing=() cmd
  for cmd in buildah mmdebstrap; do command -v "$cmd" >/dev/null || missing+=("$cmd"); done
  command -v objcopy >/dev/null || missing+=(binutils)
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  ((${#missing[@]})) || return 0
  ((EUID == 0)) || die "installing ${missing[*]} needs root (apt-get)"
  local apt=(apt-get -qq -o DPkg::Lock::Timeout=300)
  apt-cache show buildah >/dev/null 2>&1 || "${apt[@]}" update >&2
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >&2
}

# base_image: the rootfs from Debian packages, once (cached tarball, stamped
# with what made it), imported into buildah's storage as BASE_IMAGE.
base_image() {
  local dir=$PARLEY_CACHE/images tar stamp sources=()
  tar=$dir/base-$BASE_SUITE.tar
  # The host's own package sources when they are for the same release (a
  # mirror the machine is set up for), mmdebstrap's default otherwise.
  if [[ -f /etc/apt/sources.list.d/debian.sources ]] &&
    grep -q "^Suites:.*\b$BASE_SUITE\b" /etc/apt/sources.list.d/debian.sources; then
    sources=(/etc/apt/sources.list.d/debian.sources)
  fi
  stamp="$BASE_SUITE $BASE_PACKAGES minbase nodocs tar"
  if [[ ! -s $tar || $(cat "$tar.stamp" 2>/dev/null) != "$stamp" ]]; then
    mkdir -p "$dir"
    log "making the base image from Debian packages (mmdebstrap $BASE_SUITE)"
    local started=$SECONDS
    mmdebstrap --quiet --format=tar --variant=minbase --include="$BASE_PACKAGES" \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      "$BASE_SUITE" "$tar.tmp" "${sources[@]}" >&2 || die "mmdebstrap failed"
    mv "$tar.tmp" "$tar" && echo "$stamp" >"$tar.stamp"
    log "base rootfs made in $((SECONDS - started))s"
    buildah_ rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
  fi
  buildah_ inspect --type image "$BASE_IMAGE" >/dev/null 2>&1 && return 0
  local c
  c=$(buildah_ from scratch)
  buildah_ add "$c" "$tar" / >/dev/null
  buildah_ config --cmd '["/bin/sh"]' --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
  buildah_ commit -q "$c" "$BASE_IMAGE" >/dev/null
  buildah_ rm "$c" >/dev/null
}

# save IMAGE NAME: IMAGE as a docker archive that containerd imports with its
# name.
save() {
  rm -f "$IMAGES_DIR/$2.tar"
  buildah_ push -q "$1" "docker-archive:$IMAGES_DIR/$2.tar:$1" >/dev/null
}

pause_image() {
  local ctx=$BUILDAH_RUNROOT/pause-context
  rm -rf "$ctx" && mkdir -p "$ctx"
  gcc -static -Os -Wall -Wextra -o "$ctx/pause" "$IMAGES_HERE/node/pause.c" || die "building pause failed"
  buildah_ bud -q --layers --pull=never -f "$IMAGES_HERE/node/Containerfile.pause" -t "$PAUSE_IMAGE" "$ctx" >/dev/null
  save "$PAUSE_IMAGE" pause
}

cmd_build() {
  install_tools
  local profile=${PARLEY_IMAGE_PROFILE:-debug}
  local target_dir=${CARGO_TARGET_DIR:-$PARLEY_CACHE/target}
  local bins=$target_dir/$profile ctx=$BUILDAH_RUNROOT/context t started=$SECONDS
  for t in "${IMAGE_TARGETS[@]}"; do
    [[ -x $bins/$t ]] || die "$bins/$t is missing: cargo build --bins${profile/debug/} first"
  done
  mkdir -p "$IMAGES_DIR" "$BUILDAH_RUNROOT"
  base_image
  pause_image
  # The build context: just the binaries, without their debug info (a debug
  # build's would make each image hundreds of MB).
  rm -rf "$ctx" && mkdir -p "$ctx/prebuilt"
  for t in "${IMAGE_TARGETS[@]}"; do objcopy --strip-debug "$bins/$t" "$ctx/prebuilt/$t"; done
  for t in "${IMAGE_TARGETS[@]}"; do
    # chroot isolation: the one RUN step (CA bundle, present in this base)
    # needs no container runtime or network set-up.
    buildah_ bud -q --layers --pull=never --isolation chroot \
      --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg BINARIES=prebuilt \
      --target "$t" -t "$(image_of "$t")" -f "$IMAGES_REPO/Dockerfile" "$ctx" >/dev/null ||
      die "buildah could not build $t"
    save "$(image_of "$t")" "$t"
  done
  rm -rf "$ctx"
  # bud leaves a working container (and its mount) per stage it ran; the
  # images and their cached layers are what is kept.
  buildah_ rm --all >/dev/null
  log "images built in $((SECONDS - started))s: $PAUSE_IMAGE ${IMAGE_TARGETS[*]/#/$IMAGE_PREFIX/} (tag $IMAGE_TAG)"
}

image_of() { echo "$IMAGE_PREFIX/$1:$IMAGE_TAG"; }

images_env() {
  echo "export PARLEY_OPERATOR_IMAGE=$(image_of parley-operator) PARLEY_GATEWAY_IMAGE=$(image_of parley-gateway) PARLEY_CONSUMER_IMAGE=$(image_of parley-consumer)"
}

images_main() {
  case ${1:-} in
    install) install_tools && base_image ;;
    build) cmd_build ;;
    env) images_env ;;
    *) echo "usage: $0 install|build|env" >&2; exit 2 ;;
  esac
}

# Sourced by node.sh for the names; run, it is a command.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then images_main "$@"; fi
