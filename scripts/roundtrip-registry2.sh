#!/usr/bin/env bash
# In-place round trip with Debian's docker-registry 2.8.2 (registry:2):
#   1. images pushed to docker-registry pull byte-identical from Berth started on the same
#      data directory;
#   2. images pushed to Berth pull byte-identical from docker-registry on that directory.
# Every manifest is compared by digest of the raw bytes; skopeo verifies every blob on pull.
# Usage: scripts/roundtrip-registry2.sh [filesystem|garage]: the shared storage is a data
# directory, or one bucket on a single-node Garage (both servers with registry:2's storage.s3
# keys from one config file).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

work=$(mktemp -d /tmp/berth-roundtrip.XXXXXX)
trap 'stop_pid "${BERTH_PID:-0}"; stop_pid "${R2_PID:-0}"; stop_s3 "$work"; rm -rf "$work"' EXIT
"$SHARED/compat/make-images.sh" "$work/images" >"$work/make-images.log" 2>&1
images=$work/images
write_config "$work/config.yml" "$work/data"
storage=${1:-filesystem}
case "$storage" in
  filesystem) ;;
  garage)
    start_s3 garage "$work" || { echo "roundtrip: could not start Garage" >&2; exit 1; }
    use_s3_storage "$work/config.yml" garage /roundtrip
    ;;
  *) echo "roundtrip: unknown storage $storage" >&2; exit 2 ;;
esac
echo "roundtrip: shared storage is $storage"

passed=0 failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }

src() { if [ "$1" = docker-v2s2 ]; then echo "dir:$images/docker-v2s2"; else echo "oci:$images/$1:1"; fi; }
expected() { jq -r --arg k "$1" '.[$k].digest' "$images/images.json"; }

push() { # push ADDR IMAGE REPO TAG
  skopeo copy --all --preserve-digests --retry-times 0 --dest-tls-verify=false \
    "$(src "$2")" "docker://$1/$3:$4" >>"$work/skopeo.log" 2>&1
}

check() { # check WHO ADDR IMAGE REPO TAG: raw manifest digest + full verified pull
  local who=$1 addr=$2 img=$3 repo=$4 tag=$5 want got
  want=$(expected "$img")
  if ! skopeo inspect --raw --tls-verify=false "docker://$addr/$repo:$tag" >"$work/raw" 2>>"$work/skopeo.log"; then
    fail "$who $img: inspect of $repo:$tag failed"; return
  fi
  got=sha256:$(sha256sum <"$work/raw" | cut -d' ' -f1)
  [ "$got" = "$want" ] || { fail "$who $img: manifest digest $got, want $want"; return; }
  rm -rf "$work/pull"
  if ! skopeo copy --all --retry-times 0 --src-tls-verify=false "docker://$addr/$repo:$tag" "oci:$work/pull:x" >>"$work/skopeo.log" 2>&1; then
    fail "$who $img: pull of $repo:$tag failed (see skopeo log)"; return
  fi
  pass "$who $img: $repo:$tag byte-identical ($got), all blobs verified"
}

images_list="small multiarch docker-v2s2 large"

# 1. docker-registry writes, Berth reads.
start_registry2 "$work/config.yml" "$work/r2.log"
for img in $images_list; do push "$R2_ADDR" "$img" "fromr2/$img" 1 || fail "push $img to docker-registry"; done
push "$R2_ADDR" artifact fromr2/small sbom || fail "push artifact to docker-registry"
stop_pid "$R2_PID"; R2_PID=0
start_berth "$work/config.yml" "$work/berth.log"
for img in $images_list; do check "berth reads docker-registry's" "$BERTH_ADDR" "$img" "fromr2/$img" 1; done
check "berth reads docker-registry's" "$BERTH_ADDR" artifact fromr2/small sbom
catalog=$(curl -fsS "http://$BERTH_ADDR/v2/_catalog")
if echo "$catalog" | jq -e '.repositories | index("fromr2/small") and index("fromr2/large")' >/dev/null; then
  pass "berth catalog lists docker-registry's repositories"
else
  fail "berth catalog: $catalog"
fi
referrers=$(curl -fsS "http://$BERTH_ADDR/v2/fromr2/small/referrers/$(expected small)")
if echo "$referrers" | jq -e --arg d "$(expected artifact)" '.manifests[] | select(.digest == $d)' >/dev/null; then
  pass "berth referrers API finds the artifact docker-registry stored"
else
  fail "berth referrers for docker-registry's artifact: $referrers"
fi

# 2. Berth writes, docker-registry reads: a fresh directory, so every blob, link and manifest
#    there was written by Berth (no mounts from the repositories above).
stop_pid "$BERTH_PID"; BERTH_PID=0
write_config "$work/config2.yml" "$work/data2"
start_berth "$work/config2.yml" "$work/berth.log"
for img in $images_list; do push "$BERTH_ADDR" "$img" "fromberth/$img" 1 || fail "push $img to berth"; done
push "$BERTH_ADDR" artifact fromberth/small sbom || fail "push artifact to berth"
stop_pid "$BERTH_PID"; BERTH_PID=0
start_registry2 "$work/config2.yml" "$work/r2.log"
for img in $images_list; do check "docker-registry reads berth's" "$R2_ADDR" "$img" "fromberth/$img" 1; done
check "docker-registry reads berth's" "$R2_ADDR" artifact fromberth/small sbom
tags=$(curl -fsS "http://$R2_ADDR/v2/fromberth/small/tags/list")
if echo "$tags" | jq -e '.tags | index("1") and index("sbom")' >/dev/null; then
  pass "docker-registry lists berth's tags"
else
  fail "docker-registry tags: $tags"
fi
stop_pid "$R2_PID"; R2_PID=0

if [ "$failed" -ne 0 ]; then
  echo "--- skopeo log tail"; tail -n 30 "$work/skopeo.log"
  echo "--- berth log tail"; tail -n 30 "$work/berth.log" 2>/dev/null || true
fi
echo "roundtrip: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
