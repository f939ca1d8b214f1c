# Shared by hack/images/*.sh (sourced): build images with buildah, without Docker or a registry.
# buildah's layer store lives in the per-user cache, so every image built once (the 5 GB dependency layer
# above all) is reused by the next run, in this clone or a fresh one. An image reaches the node's containerd
# as a transient OCI archive (`ctr images import`), skipped when containerd already holds that exact build.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

IMAGE_PREFIX="localhost/lmops"
# The tag users and the chart values name; each build is also tagged with its content key.
IMAGE_TAG="${IMAGE_TAG:-dev}"
BUILDAH_ROOT="${LMOPS_CACHE}/containers"
# Uncompressed layers: compressing gigabytes of wheels costs minutes of CPU for an archive read once, locally.
PUSH_FLAGS=(--disable-compression)

bh() { buildah --root "${BUILDAH_ROOT}/storage" --runroot "${BUILDAH_ROOT}/run" "$@"; }

# have_image REF: whether buildah's store holds REF.
have_image() { bh inspect --type image "$1" >/dev/null 2>&1; }

# commit_dir NAME KEY DIR [buildah-config-args...]: an image of DIR's contents (one layer, from scratch).
commit_dir() {
  local name=$1 key=$2 dir=$3 c mnt
  shift 3
  c="$(bh from scratch)"
  mnt="$(bh mount "${c}")"
  tar -C "${dir}" -cf - . | tar -C "${mnt}" -xf -
  bh umount "${c}" >/dev/null
  [ $# -eq 0 ] || bh config "$@" "${c}"
  bh commit --quiet "${c}" "${IMAGE_PREFIX}/${name}:${key}" >/dev/null
  bh rm "${c}" >/dev/null
}

# chroot_run MNT CMD...: run CMD inside the rootfs MNT with /proc and /dev mounted (unmounted afterwards).
chroot_run() {
  local mnt=$1 rc=0
  shift
  mount -t proc proc "${mnt}/proc"
  mount --bind /dev "${mnt}/dev"
  chroot "${mnt}" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@" || rc=$?
  umount "${mnt}/dev" "${mnt}/proc"
  return "${rc}"
}

# image_ref NAME KEY: the content-keyed reference of a built image.
image_ref() { echo "${IMAGE_PREFIX}/$1:$2"; }

# load_image NAME KEY: make containerd (namespace k8s.io) hold NAME:KEY and NAME:$IMAGE_TAG, importing an
# OCI archive only when it does not hold this build yet.
load_image() {
  local ref dev archive
  ref="$(image_ref "$1" "$2")"
  dev="$(image_ref "$1" "${IMAGE_TAG}")"
  if ! ctr -n k8s.io images ls -q "name==${ref}" | grep -q .; then
    archive="$(mktemp -d "${LMOPS_CACHE}/import.XXXXXX")"
    bh push --quiet "${PUSH_FLAGS[@]}" "${ref}" "oci-archive:${archive}/image.tar:${ref}"
    ctr -n k8s.io images import "${archive}/image.tar" >/dev/null
    rm -rf "${archive}"
  fi
  ctr -n k8s.io images tag --force "${ref}" "${dev}" >/dev/null
  say "containerd holds ${ref} (also ${dev})"
}
