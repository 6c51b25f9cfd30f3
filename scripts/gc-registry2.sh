#!/usr/bin/env bash
# Garbage collection against Debian's docker-registry 2.8.2 (registry:2) on the same data:
#   1. on a directory written by docker-registry (tagged images, a tag that moved, an orphan
#      blob), `berth garbage-collect` removes exactly the blobs and manifests that
#      `docker-registry garbage-collect` removes, with and without --delete-untagged;
#   2. --dry-run changes nothing and announces what the real run then removes;
#   3. where registry:2 is wrong (--delete-untagged deletes the children of a tagged multi-arch
#      index, and the referrers of a kept image), Berth keeps them: they still pull afterwards.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

work=$(mktemp -d /tmp/berth-gc.XXXXXX)
trap 'stop_pid "${BERTH_PID:-0}"; stop_pid "${R2_PID:-0}"; rm -rf "$work"' EXIT
"$SHARED/compat/make-images.sh" "$work/images" >"$work/make-images.log" 2>&1
images=$work/images

passed=0 failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }

src() { if [ "$1" = docker-v2s2 ]; then echo "dir:$images/docker-v2s2"; else echo "oci:$images/$1:1"; fi; }
push() { # push ADDR IMAGE REPO TAG
  skopeo copy --all --preserve-digests --retry-times 0 --dest-tls-verify=false \
    "$(src "$2")" "docker://$1/$3:$4" >>"$work/skopeo.log" 2>&1
}
# What a data directory holds: blob data files and manifest revision links, one per line.
inventory() {
  (cd "$1/docker/registry/v2" && find blobs repositories -path '*/_uploads' -prune -o \
    \( -name data -o -path '*/_manifests/revisions/*/link' \) -print | sort)
}

# A directory written by docker-registry: single-arch images only (comparable with registry:2).
write_config "$work/r2.yml" "$work/data"
start_registry2 "$work/r2.yml" "$work/r2.log"
push "$R2_ADDR" small gc/a 1
push "$R2_ADDR" docker-v2s2 gc/b 1
push "$R2_ADDR" large gc/moved 1
push "$R2_ADDR" small gc/moved 1 # the large image is now untagged in gc/moved
orphan=$(head -c 4096 /dev/urandom | tee "$work/orphan" | sha256sum | cut -d' ' -f1)
# registry:2 ignores a monolithic POST body: start a session, then PUT the blob.
location=$(curl -fsS -X POST -D - -o /dev/null "http://$R2_ADDR/v2/gc/a/blobs/uploads/" |
  tr -d '\r' | sed -n 's/^[Ll]ocation: //p')
case $location in http*) ;; *) location=http://$R2_ADDR$location ;; esac
sep='?'; case $location in *\?*) sep='&' ;; esac
curl -fsS -X PUT --data-binary @"$work/orphan" -H 'Content-Type: application/octet-stream' \
  "$location${sep}digest=sha256:$orphan" -o /dev/null
stop_pid "$R2_PID"; R2_PID=0

for mode in "" "--delete-untagged"; do
  label=${mode:-default}
  for who in r2 berth dry; do
    rm -rf "$work/$who"; cp -a "$work/data" "$work/$who"
    write_config "$work/$who.yml" "$work/$who"
  done
  if ! docker-registry garbage-collect $mode "$work/r2.yml" >"$work/r2-gc.out" 2>&1; then
    fail "$label: docker-registry garbage-collect failed: $(tail -n3 "$work/r2-gc.out")"
  fi
  if ! "$BERTH_BIN" garbage-collect $mode "$work/berth.yml" >"$work/berth-gc.out" 2>&1; then
    fail "$label: berth garbage-collect failed: $(tail -n3 "$work/berth-gc.out")"
  fi
  if diff <(inventory "$work/r2") <(inventory "$work/berth") >"$work/diff"; then
    pass "$label: berth removes what docker-registry removes ($(tail -n1 "$work/berth-gc.out"))"
  else
    fail "$label: berth and docker-registry differ (< registry:2, > berth):"; cat "$work/diff"
  fi
  before=$(inventory "$work/dry")
  "$BERTH_BIN" garbage-collect --dry-run $mode "$work/dry.yml" >"$work/dry-gc.out" 2>&1
  would=$(grep -c '^would remove blob' "$work/dry-gc.out" || true)
  did=$(grep -c '^removed blob' "$work/berth-gc.out" || true)
  if [ "$before" = "$(inventory "$work/dry")" ] && [ "$would" = "$did" ] && [ "$did" -gt 0 ]; then
    pass "$label: --dry-run changes nothing and names the $did blobs the real run removes"
  else
    fail "$label: dry run: would=$would did=$did, or the directory changed"
  fi
done

# Multi-arch and referrers, which registry:2's --delete-untagged gets wrong.
rm -rf "$work/data"
write_config "$work/r2.yml" "$work/data"
start_registry2 "$work/r2.yml" "$work/r2.log"
push "$R2_ADDR" multiarch gc/multi 1
push "$R2_ADDR" small gc/app 1
push "$R2_ADDR" artifact gc/app sbom
subject=$(jq -r '.small.digest' "$images/images.json")
artifact=$(jq -r '.artifact.digest' "$images/images.json")
# The artifact is reachable through its subject, not through a tag of its own.
curl -fsS -X DELETE "http://$R2_ADDR/v2/gc/app/manifests/sbom" -o /dev/null 2>/dev/null ||
  rm -rf "$work/data/docker/registry/v2/repositories/gc/app/_manifests/tags/sbom"
stop_pid "$R2_PID"; R2_PID=0
write_config "$work/berth.yml" "$work/data"
"$BERTH_BIN" garbage-collect --delete-untagged "$work/berth.yml" >"$work/berth-gc.out" 2>&1 ||
  fail "berth garbage-collect on multi-arch data failed: $(tail -n3 "$work/berth-gc.out")"
start_berth "$work/berth.yml" "$work/berth.log"
rm -rf "$work/pull"
if skopeo copy --all --retry-times 0 --src-tls-verify=false "docker://$BERTH_ADDR/gc/multi:1" \
  "oci:$work/pull:x" >>"$work/skopeo.log" 2>&1; then
  pass "multi-arch index and every child still pull after --delete-untagged"
else
  fail "multi-arch image lost children: $(tail -n2 "$work/skopeo.log")"
fi
if curl -fsS "http://$BERTH_ADDR/v2/gc/app/referrers/$subject" |
  jq -e --arg d "$artifact" '.manifests[] | select(.digest == $d)' >/dev/null &&
  curl -fsS -o /dev/null "http://$BERTH_ADDR/v2/gc/app/manifests/$artifact"; then
  pass "an untagged referrer of a kept image survives --delete-untagged"
else
  fail "the referrer of gc/app:1 was removed"
fi

echo "gc-registry2: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
