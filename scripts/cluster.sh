#!/usr/bin/env bash
# Several stateless Berth nodes on one bucket behind a load balancer, with real clients:
# three `berth serve` nodes (node-a, node-b, node-c) on the same S3 bucket and rootdirectory with
# the same http.secret, behind Debian's haproxy in round robin (no stickiness, health check on
# /readyz), everything on 127.0.0.1 with ephemeral ports:
#   1. images pushed with skopeo through haproxy (the first in the bucket, so every blob is
#      uploaded) read back byte-identical from each node directly and are in each node's
#      _catalog;
#   2. the shared compat kit, all 27 checks, through haproxy;
#   3. the kit's requests really spread: each node's access log shows it served a share of them,
#      writes included (haproxy's own counters are printed beside them);
#   4. one chunked upload crosses all three nodes (POST on one, PATCHes on the others, PUT on
#      another) and its manifest is read from all; a tag moved and a manifest deleted through
#      one node are seen by the next read on each other node;
#   5. one node killed with SIGKILL in the middle of a series of pulls through haproxy: every
#      pull succeeds, haproxy marks the node DOWN, and pushes and pulls go on on the other two.
# Usage: scripts/cluster.sh [garage|moto]   (the S3 server, started for the run)
# Under CI=true a missing tool is a failure, never a skip. KEEP=1 keeps the work directory.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

kind=${1:-garage}
case "$kind" in
  garage | moto) ;;
  *) echo "usage: $0 [garage|moto]" >&2; exit 2 ;;
esac

passed=0 failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
finish() {
  echo "cluster ($kind): $passed passed, $failed failed"
  [ "$failed" -eq 0 ] && exit 0
  exit 1
}
skip_or_fail() { # a missing prerequisite: a failure under CI, else a skip; ends the run
  if [ "${CI:-}" = "true" ]; then fail "$*"; else echo "SKIP $*"; fi
  finish
}

missing=()
for tool in haproxy skopeo jq curl python3 umoci openssl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
[ ${#missing[@]} -eq 0 ] || skip_or_fail "missing ${missing[*]} (scripts/install-test-deps.sh installs them)"
[ -x "$BERTH_BIN" ] || { fail "no berth binary at $BERTH_BIN (cargo build --release --locked -p berth)"; finish; }

work=$(mktemp -d /tmp/berth-cluster.XXXXXX)
HAPROXY_PID=0 CLUSTER_PIDS=() PULLS_PID=0
cleanup() {
  stop_pid "$PULLS_PID"
  stop_pid "$HAPROXY_PID"
  stop_cluster
  stop_s3 "$work"
  if [ "${KEEP:-}" = 1 ]; then
    echo "cluster: work directory kept: $work"
  elif [ "$failed" -ne 0 ]; then
    # The logs are what a bug report needs; the bucket's data is not.
    rm -rf "$work/s3" "$work/images" "$work/images-40" "$work/images-24" "$work/pull" "$work/chunked.bin" "$work/chunk"
    echo "cluster: logs kept in $work"
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

# --- the S3 server, three nodes, haproxy -------------------------------------------------------
rc=0
start_s3 "$kind" "$work" || rc=$?
if [ "$rc" -eq 3 ]; then skip_or_fail "$kind is not installed (scripts/install-test-deps.sh)"; fi
[ "$rc" -eq 0 ] || { fail "could not start $kind (exit $rc)"; finish; }

secret=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')
write_config "$work/config.yml" "$work/unused"
sed -i 's/accesslog: {disabled: true}/accesslog: {disabled: false}/' "$work/config.yml"
sed -i "s/^  addr: 127.0.0.1:0\$/&\n  secret: $secret/" "$work/config.yml"
use_s3_storage "$work/config.yml" "$kind" /cluster
# Garage ignores create-only writes, so no lease can elect the node that runs the background
# jobs: node-a is named (cluster.jobsnode). moto honours them: the nodes elect one by lease.
jobs_node=""
[ "$kind" = garage ] && jobs_node=node-a
if ! start_cluster 3 "$work/config.yml" "$work" "$jobs_node"; then fail "the three nodes did not start"; finish; fi
servers=()
for i in 0 1 2; do servers+=("${CLUSTER_NODES[$i]}=${CLUSTER_ADDRS[$i]}"); done
if ! start_haproxy "$work" "${servers[@]}"; then fail "haproxy did not start"; finish; fi
LB=$HAPROXY_ADDR
echo "cluster ($kind): storage $(eval echo "\$BERTH_TEST_${kind^^}_ENDPOINT") bucket $(eval echo "\$BERTH_TEST_${kind^^}_BUCKET") root /cluster"
for i in 0 1 2; do echo "cluster ($kind): ${CLUSTER_NODES[$i]} at ${CLUSTER_ADDRS[$i]} (PID ${CLUSTER_PIDS[$i]})"; done
echo "cluster ($kind): haproxy at $LB (PID $HAPROXY_PID), stats $HAPROXY_STATS"

# The kit's images, and two more sets whose large image (40 and 24 MiB instead of 100) has a
# layer nothing pushed before, so that pushing it uploads every byte instead of mounting.
"$SHARED/compat/make-images.sh" "$work/images" >"$work/make-images.log" 2>&1
COMPAT_LARGE_MIB=40 "$SHARED/compat/make-images.sh" "$work/images-40" >>"$work/make-images.log" 2>&1
COMPAT_LARGE_MIB=24 "$SHARED/compat/make-images.sh" "$work/images-24" >>"$work/make-images.log" 2>&1
images=$work/images
expected() { jq -r --arg k "$1" '.[$k].digest' "${2:-$images}/images.json"; }

# --- per-node request counts from the access logs ------------------------------------------------
# log_mark: the current line count of each node's log, as "A B C".
log_mark() {
  local name out=""
  for name in "${CLUSTER_NODES[@]}"; do out+="$(wc -l <"$work/$name.log") "; done
  echo "$out"
}
# node_requests I MARK [METHODS]: API requests (/v2/..., not haproxy's /readyz checks) node I
# logged after MARK, optionally only those whose method matches the regex METHODS.
node_requests() {
  local i=$1 from methods=${3:-[A-Z]+}
  read -r -a from <<<"$2"
  awk -v from="${from[$i]}" -v methods="^($methods)\$" '
    NR > from && /msg="response completed"/ && / http\.request\.uri="?\/v2\// {
      if (match($0, / http\.request\.method=[A-Z]+/)) {
        m = substr($0, RSTART + 21, RLENGTH - 21)
        if (m ~ methods) n++
      }
    }
    END { print n + 0 }' "$work/${CLUSTER_NODES[$i]}.log"
}
# node_methods I MARK: "GET 12, HEAD 3, ..." for node I after MARK.
node_methods() {
  local i=$1 from
  read -r -a from <<<"$2"
  awk -v from="${from[$i]}" '
    NR > from && /msg="response completed"/ && / http\.request\.uri="?\/v2\// &&
    match($0, / http\.request\.method=[A-Z]+/) { n[substr($0, RSTART + 21, RLENGTH - 21)]++ }
    END { sep = ""; for (m in n) { printf "%s%s %d", sep, m, n[m]; sep = ", " } }' \
    "$work/${CLUSTER_NODES[$i]}.log"
}

skopeo_push() { # skopeo_push ADDR IMAGESDIR IMAGE REF
  skopeo copy --all --preserve-digests --retry-times 0 --dest-tls-verify=false \
    "oci:$2/$3:1" "docker://$1/$4" >>"$work/skopeo.log" 2>&1
}
# pulled_digest ADDR REF: pulls REF (every platform) into an OCI layout, skopeo verifying every
# blob against its digest; prints the manifest digest it got, or nothing when the pull failed.
pulled_digest() {
  rm -rf "$work/pull"
  skopeo copy --all --retry-times 0 --src-tls-verify=false "docker://$1/$2" "oci:$work/pull:x" >>"$work/skopeo.log" 2>&1 \
    && jq -r '.manifests[0].digest' "$work/pull/index.json"
  rm -rf "$work/pull"
}

# --- 1. images pushed through haproxy (first in the bucket: every blob uploaded), read back from
# each node directly with identical digests, and in each node's _catalog ---------------------------
fresh=$work/images-40
pushed=(small multiarch large)
for img in "${pushed[@]}"; do
  if skopeo_push "$LB" "$fresh" "$img" "cluster/$img:1"; then
    pass "skopeo push of $img through haproxy as cluster/$img:1 ($(expected "$img" "$fresh"))"
  else
    fail "skopeo push of $img through haproxy: $(tail -n2 "$work/skopeo.log" | tr '\n' ' ')"
  fi
done
for i in 0 1 2; do
  name=${CLUSTER_NODES[$i]} addr=${CLUSTER_ADDRS[$i]} got=() ok=1
  for img in "${pushed[@]}"; do
    want=$(expected "$img" "$fresh")
    if ! skopeo inspect --raw --tls-verify=false "docker://$addr/cluster/$img:1" >"$work/raw" 2>>"$work/skopeo.log"; then
      fail "$name: skopeo inspect --raw of cluster/$img:1 failed: $(tail -n1 "$work/skopeo.log")"; ok=0; continue
    fi
    digest=sha256:$(sha256sum <"$work/raw" | cut -d' ' -f1)
    [ "$digest" = "$want" ] || { fail "$name: cluster/$img:1 has manifest digest $digest, pushed $want"; ok=0; continue; }
    pulled=$(pulled_digest "$addr" "cluster/$img:1")
    [ "$pulled" = "$want" ] || { fail "$name: pull of cluster/$img:1 gave '$pulled', want $want: $(tail -n1 "$work/skopeo.log")"; ok=0; continue; }
    got+=("$img=${digest:7:12}")
  done
  [ "$ok" = 1 ] && pass "$name directly: inspect --raw and a verified pull of ${pushed[*]} give the pushed manifest digests (${got[*]})"
  catalog=$(curl -fsS "http://$addr/v2/_catalog?n=10000" 2>&1) || catalog="(error) $catalog"
  if jq -e '.repositories | index("cluster/small") and index("cluster/multiarch") and index("cluster/large")' <<<"$catalog" >/dev/null 2>&1; then
    pass "$name: _catalog lists cluster/small, cluster/multiarch and cluster/large ($(jq -c '.repositories' <<<"$catalog"))"
  else
    fail "$name: _catalog does not list cluster/small, cluster/multiarch and cluster/large: $(head -c 300 <<<"$catalog")"
  fi
done

# --- 2. the compat kit through haproxy -----------------------------------------------------------
mark=$(log_mark)
stot_before=()
for name in "${CLUSTER_NODES[@]}"; do stot_before+=("$(haproxy_stat "$name" stot)"); done
out=$(compat_kit "$LB" --tls-verify=false --images "$images")
echo "$out" | sed 's/^/  kit: /'
summary=$(tail -n1 <<<"$out")
if grep -qE '^compat: 27 passed, 0 failed$' <<<"$summary"; then
  pass "compat kit through haproxy in front of three nodes: $summary"
elif grep -qE '^compat: [0-9]+ passed, 0 failed$' <<<"$summary" && grep -q '^SKIP' <<<"$out" && [ "${CI:-}" != "true" ]; then
  echo "SKIP some kit checks were skipped (containerd needs root): $summary"
else
  fail "compat kit through haproxy: $summary"
fi

# --- 3. the kit's requests were spread over the three nodes ---------------------------------------
total=0 counts=() writes=()
for i in 0 1 2; do
  counts+=("$(node_requests "$i" "$mark")")
  writes+=("$(node_requests "$i" "$mark" 'POST|PATCH|PUT|DELETE')")
  total=$((total + counts[i]))
done
detail="" spread_ok=1
for i in 0 1 2; do
  share=$((total > 0 ? 100 * counts[i] / total : 0))
  stot=$(($(haproxy_stat "${CLUSTER_NODES[$i]}" stot) - stot_before[i]))
  detail+="${CLUSTER_NODES[$i]} ${counts[i]} (${share}%, ${writes[i]} writes; haproxy: $stot), "
  # Round robin gives each about a third; a tenth is the floor that proves real spreading.
  [ "$((10 * counts[i]))" -ge "$total" ] && [ "${writes[i]}" -gt 0 ] || spread_ok=0
done
for i in 0 1 2; do echo "  ${CLUSTER_NODES[$i]} during the kit: $(node_methods "$i" "$mark")"; done
if [ "$total" -gt 0 ] && [ "$spread_ok" = 1 ]; then
  pass "the kit's $total API requests spread over the nodes (access logs): ${detail%, }"
else
  fail "the kit's requests were not spread (each node needs >= 10% and some writes): ${detail%, }"
fi

# --- 4. uploads, tags and deletes across nodes, each request sent to a node directly -------------
A=${CLUSTER_ADDRS[0]} B=${CLUSTER_ADDRS[1]} C=${CLUSTER_ADDRS[2]}
path_of() { sed -E 's#^https?://[^/]+##'; } # a Location header, absolute or relative, as a path
header() { tr -d '\r' <"$1" | awk -v h="$2" -F': ' 'tolower($1) == tolower(h) { print $2 }' | tail -n1; }
upload_step() { # upload_step WANT_CODE ADDR METHOD PATH [curl args]: sets CODE, LOC (a path)
  local want=$1 addr=$2 method=$3 path=$4; shift 4
  CODE=$(curl -sS -X "$method" -D "$work/h" -o "$work/b" -w '%{http_code}' "$@" "http://$addr$path") || CODE=000
  LOC=$(header "$work/h" location | path_of)
  [ "$CODE" = "$want" ] || { echo "$method $path on $addr -> $CODE: $(head -c 300 "$work/b")"; return 1; }
}
# chunked_upload REPO POST_ADDR "PATCH_ADDR..." PUT_ADDR MANIFEST_ADDR "READ_ADDR...": a random
# blob of one 6 MiB chunk per PATCH_ADDR plus 1 MiB sent with the final PUT, each request to the
# address named for it; then a manifest using it PUT as REPO:1; the blob and the manifest are
# read back from every READ_ADDR. Prints what it uploaded, or what went wrong.
chunked_upload() {
  local repo=$1 post=$2 patches=($3) put=$4 mput=$5 readers=($6)
  local part=$((6 * 1024 * 1024)) blob=$work/chunked.bin digest off=0 addr
  head -c $((${#patches[@]} * part + 1024 * 1024)) /dev/urandom >"$blob"
  digest=sha256:$(sha256sum <"$blob" | cut -d' ' -f1)
  upload_step 202 "$post" POST "/v2/$repo/blobs/uploads/" -H 'Content-Length: 0' || return 1
  for addr in "${patches[@]}"; do
    tail -c +$((off + 1)) "$blob" | head -c "$part" >"$work/chunk"
    upload_step 202 "$addr" PATCH "$LOC" -H 'Content-Type: application/octet-stream' \
      -H "Content-Range: $off-$((off + part - 1))" --data-binary "@$work/chunk" || return 1
    off=$((off + part))
    [ "$(header "$work/h" range)" = "0-$((off - 1))" ] || { echo "PATCH on $addr: Range $(header "$work/h" range), want 0-$((off - 1))"; return 1; }
  done
  tail -c +$((off + 1)) "$blob" >"$work/chunk"
  local sep='?'; [[ $LOC == *\?* ]] && sep='&'
  upload_step 201 "$put" PUT "$LOC${sep}digest=$digest" -H 'Content-Type: application/octet-stream' \
    --data-binary "@$work/chunk" || return 1
  [ "$(header "$work/h" docker-content-digest)" = "$digest" ] || { echo "PUT on $put: Docker-Content-Digest '$(header "$work/h" docker-content-digest)'"; return 1; }
  for addr in "${readers[@]}"; do
    [ "$(curl -sS "http://$addr/v2/$repo/blobs/$digest" | sha256sum | cut -d' ' -f1)" = "${digest#sha256:}" ] \
      || { echo "GET of the blob from $addr: wrong content"; return 1; }
  done
  local config='{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}' cdigest manifest mdigest
  cdigest=sha256:$(printf '%s' "$config" | sha256sum | cut -d' ' -f1)
  upload_step 201 "$mput" POST "/v2/$repo/blobs/uploads/?digest=$cdigest" -H 'Content-Type: application/octet-stream' \
    --data-binary "$config" || return 1
  manifest=$(jq -cn --arg c "$cdigest" --argjson cs "${#config}" --arg l "$digest" --argjson ls "$(stat -c %s "$blob")" \
    '{schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]}')
  mdigest=sha256:$(printf '%s' "$manifest" | sha256sum | cut -d' ' -f1)
  upload_step 201 "$mput" PUT "/v2/$repo/manifests/1" -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "$manifest" || return 1
  for addr in "${readers[@]}"; do
    [ "$(curl -sS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$addr/v2/$repo/manifests/1" | sha256sum | cut -d' ' -f1)" = "${mdigest#sha256:}" ] \
      || { echo "GET of manifest $repo:1 from $addr: not $mdigest"; return 1; }
  done
  echo "$(stat -c %s "$blob") bytes, blob ${digest:0:19}, manifest ${mdigest:0:19}"
}
if msg=$(chunked_upload cluster/chunked "$A" "$B $C $A" "$B" "$C" "$A $B $C"); then
  pass "chunked upload across the nodes (POST node-a; PATCH node-b, node-c, node-a; PUT node-b; manifest PUT node-c), blob and manifest read back from all three: $msg"
else
  fail "chunked upload across the nodes: $msg"
fi

# A tag moved and a manifest deleted through one node: the very next read on each other node
# sees it (cluster nodes keep no tag or revision cache: docs/storage.md, "Caches"), even though
# those nodes read the old state just before.
manifest_digest() { # manifest_digest ADDR PATH: the digest a node answers (HEAD), or its status
  local code
  code=$(curl -sS -o /dev/null -D "$work/mh" -w '%{http_code}' -I \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' \
    "http://$1/v2/$2") || code=000
  if [ "$code" = 200 ]; then header "$work/mh" docker-content-digest; else echo "status $code"; fi
}
small=$(expected small) multi=$(expected multiarch)
skopeo_push "$A" "$images" small cluster/moving:1 || fail "push of cluster/moving:1 to node-a"
for addr in "$B" "$C"; do
  [ "$(manifest_digest "$addr" cluster/moving/manifests/1)" = "$small" ] || fail "cluster/moving:1 is not $small on $addr"
done
skopeo_push "$A" "$images" multiarch cluster/moving:1 || fail "push of multiarch over cluster/moving:1 to node-a"
gb=$(manifest_digest "$B" cluster/moving/manifests/1) gc=$(manifest_digest "$C" cluster/moving/manifests/1)
if [ "$gb" = "$multi" ] && [ "$gc" = "$multi" ]; then
  pass "tag cluster/moving:1 moved on node-a (small -> multiarch): the next read on node-b and on node-c gives the new digest"
else
  fail "tag cluster/moving:1 moved on node-a to $multi: the next read on node-b gives $gb, on node-c $gc"
fi
for addr in "$B" "$C"; do
  [ "$(manifest_digest "$addr" "cluster/moving/manifests/$multi")" = "$multi" ] || fail "cluster/moving@$multi not found on $addr"
done
code=$(curl -sS -o "$work/b" -w '%{http_code}' -X DELETE "http://$A/v2/cluster/moving/manifests/$multi") || code=000
gb=$(manifest_digest "$B" "cluster/moving/manifests/$multi") gc=$(manifest_digest "$C" "cluster/moving/manifests/$multi")
if [ "$code" = 202 ] && [ "$gb" = "status 404" ] && [ "$gc" = "status 404" ]; then
  pass "manifest cluster/moving@${multi:0:19} deleted on node-a: the next read on node-b and on node-c is a 404"
else
  fail "manifest $multi deleted on node-a (DELETE -> $code): the next read on node-b gives $gb, on node-c $gc"
fi

# Which node runs the background jobs (informational: what the nodes logged at startup).
runners=()
for name in "${CLUSTER_NODES[@]}"; do
  grep -qE 'runs_here=true|this node now runs the background jobs|background jobs run on this node' "$work/$name.log" \
    && runners+=("$name")
done
echo "  background jobs (from the nodes' logs): run by ${runners[*]:-no node that said so}"

# --- 5. one node killed (SIGKILL) in the middle of a series of pulls -------------------------------
victim=1 pulls=12
victim_name=${CLUSTER_NODES[$victim]}
(
  for n in $(seq 1 "$pulls"); do
    if [ "$(pulled_digest "$LB" cluster/multiarch:1)" = "$multi" ] \
      && skopeo inspect --raw --tls-verify=false "docker://$LB/cluster/small:1" 2>>"$work/skopeo.log" | cmp -s - "$images/small/blobs/sha256/${small#sha256:}"; then
      echo "ok $n"
    else
      echo "failed $n"
    fi
  done >"$work/pulls.out"
) &
PULLS_PID=$!
for _ in $(seq 1 600); do grep -q '^ok 3$' "$work/pulls.out" 2>/dev/null && break; sleep 0.05; done
# (In a group with stderr closed: bash reports a job killed by a signal on its stderr.)
{ kill -9 "${CLUSTER_PIDS[$victim]}"; wait "${CLUSTER_PIDS[$victim]}"; } 2>/dev/null || true
killed_at=$EPOCHREALTIME
echo "  killed $victim_name (PID ${CLUSTER_PIDS[$victim]}) with SIGKILL after pull $(grep -c '^ok' "$work/pulls.out" || true) of $pulls"
down=""
for _ in $(seq 1 100); do
  [ "$(haproxy_stat "$victim_name" status)" = DOWN ] && { down=$(awk -v a="$killed_at" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'); break; }
  sleep 0.1
done
wait "$PULLS_PID" || true
PULLS_PID=0
ok=$(grep -c '^ok' "$work/pulls.out" || true)
if [ "$ok" -eq "$pulls" ]; then
  pass "$pulls pulls through haproxy (multiarch copy --all, small manifest), $victim_name killed -9 after the" \
    "third: all succeeded with the right digests (haproxy re-sent $(haproxy_stat "$victim_name" wredis) requests to another node)"
else
  fail "pulls through haproxy while $victim_name was killed: $ok of $pulls succeeded" \
    "($(grep -v '^ok' "$work/pulls.out" | tr '\n' ' ')); $(tail -n2 "$work/skopeo.log" | tr '\n' ' ')"
fi
if [ -n "$down" ]; then
  pass "haproxy marked $victim_name DOWN ${down}s after the kill ($(haproxy_servers_up) of 3 servers UP)"
else
  fail "haproxy did not mark $victim_name DOWN within 10 s: status $(haproxy_stat "$victim_name" status)"
fi

# With the node down: new data pushed through haproxy, read back through haproxy and from the
# two nodes left.
after=$(log_mark)
want=$(expected large "$work/images-24")
if skopeo_push "$LB" "$work/images-24" large cluster/after-kill:1; then
  ok=1
  for addr in "$LB" "$A" "$C"; do
    pulled=$(pulled_digest "$addr" cluster/after-kill:1)
    [ "$pulled" = "$want" ] || {
      ok=0
      fail "with $victim_name down: pull of cluster/after-kill:1 from $addr gave '$pulled', want $want: $(tail -n1 "$work/skopeo.log")"
    }
  done
  [ "$ok" = 1 ] && pass "with $victim_name down: a new image (24 MiB layer) pushed through haproxy pulls intact through" \
    "haproxy, from node-a and from node-c (node-a served $(node_requests 0 "$after") requests, node-c $(node_requests 2 "$after"))"
else
  fail "with $victim_name down: push through haproxy: $(tail -n2 "$work/skopeo.log" | tr '\n' ' ')"
fi
if msg=$(chunked_upload cluster/after-kill-chunked "$LB" "$LB $LB $LB $LB" "$LB" "$LB" "$LB $A $C"); then
  pass "with $victim_name down: chunked upload through haproxy (4 PATCHes), read back through haproxy, from node-a and node-c: $msg"
else
  fail "with $victim_name down: chunked upload through haproxy: $msg"
fi

if [ "$failed" -ne 0 ]; then
  for name in "${CLUSTER_NODES[@]}"; do
    echo "--- $name log: errors and warnings"
    grep -E 'level=(error|warn)' "$work/$name.log" | grep -v 'unknown config key' | tail -n 15 || true
  done
  echo "--- haproxy log: 5xx answers and aborted requests (not skopeo's TLS probe)"
  awk '/^127\.0\.0\.1:/ && ($6 >= 500 || $10 != "----") && !/<BADREQ>/' "$work/haproxy.log" | tail -n 15 || true
fi
finish
