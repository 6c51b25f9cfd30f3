#!/usr/bin/env bash
# The machine's ceiling for reads: Debian's nginx-light (sendfile on) serves the very manifest
# and blob files of Berth's data directory, laid out as static files under /v2/, to the same
# regbench pulls and manifest GETs as Berth. Prints each figure and Berth's share of the
# ceiling, so a benchmark table can say how far from the limit the machine lets us go.
# With --data, Berth and nginx serve an existing Berth data directory (scripts/bench.sh passes
# the one compare.sh's run filled: repositories bench/small and bench/large) and nothing is
# pushed; otherwise a fresh one is filled with the same pushes first.
# Usage: scripts/bench-ceiling.sh [--quick] [--data DIR]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

quick=0 data=""
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; shift ;;
    --data) data=$(cd "$2" && pwd); shift 2 ;;
    *) echo "usage: scripts/bench-ceiling.sh [--quick] [--data DIR]" >&2; exit 2 ;;
  esac
done
command -v nginx >/dev/null || apt_install nginx-light
kit=${BENCH_KIT_DIR:-/tmp/berth-bench-kit}
if [ ! -x "$kit/target/release/regbench" ]; then
  rm -rf "$kit"; cp -r "$SHARED/bench" "$kit"; chmod -R u+w "$kit"
  (cd "$kit" && cargo build --release --locked -q)
fi
regbench=$kit/target/release/regbench
(cd "$REPO_ROOT" && cargo build --release --locked -q -p berth)

work=$(mktemp -d /tmp/berth-ceiling.XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
bport=$(free_port) nport=$(free_port)
root=${data:-$work/data}
cat >"$work/berth.yml" <<YAML
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $root}
http: {addr: 127.0.0.1:$bport}
YAML
"$BERTH_BIN" serve "$work/berth.yml" >"$work/berth.log" 2>&1 &
bpid=$!; pids+=("$bpid")
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$bport/v2/" >/dev/null && break; sleep 0.1; done

small_n=200 large_n=4 large=256M rate_s=10
[ "$quick" = 1 ] && small_n=20 large_n=2 large=16M rate_s=3
if [ -z "$data" ]; then
  "$regbench" push --url "http://127.0.0.1:$bport" --repo bench/small --blobs "$small_n" --size 1M --concurrency 8 >/dev/null
  "$regbench" push --url "http://127.0.0.1:$bport" --repo bench/large --blobs "$large_n" --size "$large" --concurrency 2 --seed 2 >/dev/null
fi

# The static tree: every file a pull reads, as symlinks into Berth's data directory.
v2=$root/docker/registry/v2
blob_data() { local hex=${1#sha256:}; echo "$v2/blobs/sha256/${hex:0:2}/$hex/data"; }
for repo in bench/small bench/large; do
  out=$work/static/v2/$repo
  mkdir -p "$out/manifests" "$out/blobs" "$out/tags"
  tags=()
  for tagdir in "$v2/repositories/$repo/_manifests/tags"/*; do
    tag=$(basename "$tagdir") digest=$(cat "$tagdir/current/link")
    tags+=("\"$tag\"")
    ln -s "$(blob_data "$digest")" "$out/manifests/$tag"
    ln -sf "$(blob_data "$digest")" "$out/manifests/$digest"
    # Clients read the digest from this header; nginx learns it per file from here.
    for ref in "$tag" "$digest"; do
      printf 'location = /v2/%s/manifests/%s { default_type application/vnd.oci.image.manifest.v1+json; add_header Docker-Content-Digest %s; }\n' \
        "$repo" "$ref" "$digest" >>"$work/manifests.conf"
    done
  done
  for layer in "$v2/repositories/$repo/_layers/sha256"/*; do
    digest=sha256:$(basename "$layer")
    ln -s "$(blob_data "$digest")" "$out/blobs/$digest"
  done
  (IFS=,; echo "{\"name\":\"$repo\",\"tags\":[${tags[*]}]}") >"$out/tags/list"
done
# Workers run as the invoking user, so they read what the registry wrote (root: as root).
cat >"$work/nginx.conf" <<NGINX
user $(id -un);
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $work/nginx-tmp;
  server {
    listen 127.0.0.1:$nport;
    root $work/static;
    disable_symlinks off;
    location = /v2/ { default_type application/json; return 200 '{}'; }
    include $work/manifests.conf;
    location ~ /tags/list\$ { default_type application/json; }
    location / { default_type application/octet-stream; }
  }
}
NGINX
mkdir -p "$work/nginx-tmp"
nginx -c "$work/nginx.conf" -g 'daemon off;' &
npid=$!; pids+=("$npid")
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$nport/v2/bench/small/tags/list" >/dev/null && break; sleep 0.1; done

figure() { # figure URL ARGS...: the MiB/s or req/s figure of one regbench run
  local url=$1; shift
  "$regbench" "$@" --url "$url" 2>&1 | grep -oE '[0-9.]+ (MiB/s|req/s)' | head -1 | cut -d' ' -f1
}
# Each figure twice, in the order nginx, berth, berth, nginx, so that a drift in the machine's
# load during the row weighs on both alike; the ratio is of the two means.
echo "ceiling: nginx $(nginx -v 2>&1 | cut -d/ -f2) (sendfile, 2 workers) and berth on the same files, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| scenario | metric | nginx (ceiling) | berth | berth / ceiling |\n|---|---|---:|---:|---:|\n'
row() { # row LABEL METRIC ARGS...
  local label=$1 metric=$2; shift 2
  local n1 b1 b2 n2
  n1=$(figure "http://127.0.0.1:$nport" "$@")
  b1=$(figure "http://127.0.0.1:$bport" "$@")
  b2=$(figure "http://127.0.0.1:$bport" "$@")
  n2=$(figure "http://127.0.0.1:$nport" "$@")
  printf '| %s | %s | %s, %s | %s, %s | %s |\n' "$label" "$metric" "$n1" "$n2" "$b1" "$b2" \
    "$(python3 -c "print(f'{($b1+$b2)/($n1+$n2):.2f}')")"
}
row "pull 1M x3 c=8" MiB/s pull --repo bench/small --concurrency 8 --rounds 3
row "pull $large x2 c=2" MiB/s pull --repo bench/large --concurrency 2 --rounds 2
row "manifest GET ${rate_s}s c=32" req/s manifest-rate --repo bench/small --concurrency 32 --seconds "$rate_s"
