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

# in_use REF...: note images this run uses (all.sh prunes every other localhost/lmops image from the store).
in_use() { [ -z "${LMOPS_IMAGES_IN_USE:-}" ] || printf '%s\n' "$@" >>"${LMOPS_IMAGES_IN_USE}"; }

# image_ref NAME KEY: the content-keyed reference of a built image.
image_ref() { echo "${IMAGE_PREFIX}/$1:$2"; }

# load_image NAME KEY: make containerd (namespace k8s.io) hold NAME:KEY and NAME:$IMAGE_TAG. Nothing happens
# when it holds this build already. Otherwise the image is pushed into an OCI layout kept per NAME in the cache
# (blobs it holds already, like the runtime's dependency layers, are not copied again), and containerd is
# handed only the blobs it lacks: a code change moves one thin layer, not gigabytes.
load_image() {
  local name=$1 ref dev layout
  ref="$(image_ref "$1" "$2")"
  dev="$(image_ref "$1" "${IMAGE_TAG}")"
  if ! ctr -n k8s.io images ls -q "name==${ref}" | grep -q .; then
    layout="${LMOPS_CACHE}/oci/${name}"
    mkdir -p "${layout}"
    rm -f "${layout}/index.json"
    bh push --quiet "${PUSH_FLAGS[@]}" "${ref}" "oci:${layout}:${ref}"
    python3 - "${layout}" "$(ctr -n k8s.io content ls -q)" <<'PY' | tar -C "${layout}" -cf - -T - | ctr -n k8s.io images import -
import json, pathlib, sys
layout, present = pathlib.Path(sys.argv[1]), set(sys.argv[2].split())
blobs = layout / "blobs" / "sha256"
wanted = set()
for entry in json.loads((layout / "index.json").read_text())["manifests"]:
    manifest = json.loads((blobs / entry["digest"].split(":")[1]).read_text())
    wanted |= {d["digest"] for d in [entry, manifest["config"], *manifest["layers"]]}
for blob in blobs.iterdir():  # blobs of earlier builds of this image: not needed again
    if f"sha256:{blob.name}" not in wanted:
        blob.unlink()
print("oci-layout\nindex.json")
print("\n".join(f"blobs/sha256/{d.split(':')[1]}" for d in sorted(wanted - present)))
PY
  fi
  ctr -n k8s.io images tag --force "${ref}" "${dev}" >/dev/null
  say "containerd holds ${ref} (also ${dev})"
}
