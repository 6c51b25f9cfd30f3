#!/usr/bin/env bash
# berth copy / berth sync against skopeo copy --all / skopeo sync --all, moving the same set
# of multi-arch images between two local registries (Debian's docker-registry 2.8, so neither
# side is Berth's own server): wall time and peak RSS of each tool, each run into a fresh,
# empty destination. A second sync run (nothing changed) is timed too.
# The set: IMAGES (default 20) indexes of two platforms; each platform has a base layer shared
# by every image of its architecture (8 MiB) and two layers of its own (3 and 6 MiB), all
# incompressible; the source is filled with skopeo, which is not timed.
# Usage: scripts/bench-copy.sh [--images N]   (prints a markdown table)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

images=20
[ "${1:-}" = --images ] && images=$2
for tool in skopeo docker-registry python3; do
  command -v "$tool" >/dev/null || { echo "bench-copy: missing $tool" >&2; exit 1; }
done
[ -x "$BERTH_BIN" ] || (cd "$REPO_ROOT" && cargo build --release --locked -p berth)

work=$(mktemp -d /tmp/berth-bench-copy.XXXXXX)
SRC_PID=0 R2_PID=0
trap 'stop_pid "$SRC_PID"; stop_pid "$R2_PID"; rm -rf "$work"' EXIT
export DOCKER_CONFIG=$work/docker
mkdir -p "$DOCKER_CONFIG"; echo '{}' >"$DOCKER_CONFIG/config.json"

# The image set, as one OCI layout with a tag per image.
python3 - "$work/layout" "$images" <<'PY'
import hashlib, json, os, sys
root, count = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{root}/blobs/sha256", exist_ok=True)
def put(data, media_type):
    h = hashlib.sha256(data).hexdigest()
    with open(f"{root}/blobs/sha256/{h}", "wb") as f:
        f.write(data)
    return {"mediaType": media_type, "digest": f"sha256:{h}", "size": len(data)}
layer = "application/vnd.oci.image.layer.v1.tar+gzip"
base = {arch: put(os.urandom(8 << 20), layer) for arch in ("amd64", "arm64")}
entries = []
for i in range(count):
    children = []
    for arch in ("amd64", "arm64"):
        layers = [base[arch], put(os.urandom(3 << 20), layer), put(os.urandom(6 << 20), layer)]
        config = put(json.dumps({"architecture": arch, "os": "linux", "image": i,
            "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode(),
            "application/vnd.oci.image.config.v1+json")
        manifest = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config, "layers": layers}).encode(), "application/vnd.oci.image.manifest.v1+json")
        manifest["platform"] = {"os": "linux", "architecture": arch}
        children.append(manifest)
    index = put(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": children}).encode(), "application/vnd.oci.image.index.v1+json")
    index["annotations"] = {"org.opencontainers.image.ref.name": f"img{i}"}
    entries.append(index)
with open(f"{root}/index.json", "w") as f:
    json.dump({"schemaVersion": 2, "manifests": entries}, f)
with open(f"{root}/oci-layout", "w") as f:
    f.write('{"imageLayoutVersion":"1.0.0"}')
PY
total_mib=$(du -sm "$work/layout/blobs" | cut -f1)

write_config "$work/src.yml" "$work/src-data"
start_registry2 "$work/src.yml" "$work/src.log"; SRC_PID=$R2_PID; SRC=$R2_ADDR; R2_PID=0
for i in $(seq 0 $((images - 1))); do
  skopeo copy --quiet --all --dest-tls-verify=false "oci:$work/layout:img$i" "docker://$SRC/bench/img$i:1"
done
{
  echo "$SRC:"
  echo "  tls-verify: false"
  echo "  images:"
  for i in $(seq 0 $((images - 1))); do echo "    bench/img$i: [\"1\"]"; done
} >"$work/sync.yml"

fresh_dest() { # a new, empty destination registry in R2_ADDR
  stop_pid "$R2_PID"
  rm -rf "$work/dst-data"
  write_config "$work/dst.yml" "$work/dst-data"
  start_registry2 "$work/dst.yml" "$work/dst.log"
}

# measure NAME COMMAND...: one row (wall seconds, peak RSS of the process in MiB).
rows=()
measure() {
  local name=$1; shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" "$@" >"$work/out.log" 2>&1 || { echo "bench-copy: $name failed:" >&2; tail -5 "$work/out.log" >&2; exit 1; }
  end=$(date +%s.%N)
  rows+=("| $name | $(python3 -c "print(f'{$end - $start:.2f}')") | $(( $(tail -1 "$work/rss") / 1024 )) |")
}
# measure_loop NAME COMMAND-TEMPLATE: COMMAND run once per image (I replaced by its number),
# as a shell loop would; peak RSS is the largest single run.
measure_loop() {
  local name=$1 template=$2 start end peak=0
  start=$(date +%s.%N)
  for i in $(seq 0 $((images - 1))); do
    /usr/bin/time -f '%M' -o "$work/rss" bash -c "${template//I/$i}" >"$work/out.log" 2>&1 || { echo "bench-copy: $name failed:" >&2; tail -5 "$work/out.log" >&2; exit 1; }
    r=$(tail -1 "$work/rss"); [ "$r" -gt "$peak" ] && peak=$r
  done
  end=$(date +%s.%N)
  rows+=("| $name | $(python3 -c "print(f'{$end - $start:.2f}')") | $((peak / 1024)) |")
}

fresh_dest
measure_loop "skopeo copy --all, one image after another" \
  "skopeo copy --quiet --all --src-tls-verify=false --dest-tls-verify=false docker://$SRC/bench/imgI:1 docker://$R2_ADDR/bench/imgI:1"
fresh_dest
measure_loop "berth copy, one image after another" \
  "$BERTH_BIN copy -q --src-tls-verify=false --dest-tls-verify=false docker://$SRC/bench/imgI:1 docker://$R2_ADDR/bench/imgI:1"
fresh_dest
measure "skopeo sync --all" skopeo sync --all --src yaml --dest docker --dest-tls-verify=false "$work/sync.yml" "$R2_ADDR/mirror"
measure "skopeo sync --all, again (nothing changed)" skopeo sync --all --src yaml --dest docker --dest-tls-verify=false "$work/sync.yml" "$R2_ADDR/mirror"
fresh_dest
measure "berth sync (4 images at a time)" "$BERTH_BIN" sync -q --dest-tls-verify=false "$work/sync.yml" "$R2_ADDR/mirror"
measure "berth sync, again (nothing changed)" "$BERTH_BIN" sync -q --dest-tls-verify=false "$work/sync.yml" "$R2_ADDR/mirror"

echo "bench-copy: $images two-platform images, $total_mib MiB of blobs, docker-registry 2.8 to docker-registry 2.8 on 127.0.0.1, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| run | wall s | peak RSS MiB |"
echo "| --- | ---: | ---: |"
printf '%s\n' "${rows[@]}"
