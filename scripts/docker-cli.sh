#!/usr/bin/env bash
# The Docker CLI against Berth: Debian's dockerd with its own data root, exec root, socket and
# pidfile (nothing shared with a system daemon), loaded with a test image from the compat kit.
#   - docker push / rmi / pull round trip, by image ID and repo digest;
#   - berth copy of a `docker save` archive into Berth and back out to `docker load`;
#   - registry-mirrors: `docker pull mirrortest:1` (docker.io) is served by Berth.
# dockerd gets an empty config file and a dead loopback proxy, so its fallback to docker.io
# fails at once instead of leaving the machine.
# BERTH_TEST_STORAGE=garage runs it with Berth on S3 (a single-node Garage).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

for tool in dockerd docker skopeo jq; do
  command -v "$tool" >/dev/null || { echo "docker-cli.sh: missing $tool (apt-get install docker.io skopeo jq)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/berth-docker.XXXXXX)
DOCKERD_PID=0
cleanup() {
  stop_pid "$DOCKERD_PID"
  stop_pid "${BERTH_PID:-0}"
  stop_s3 "$work"
  # vfs layers can be read-only copies; make them removable.
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

passed=0 failed=0
pass() { echo "PASS $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }

"$SHARED/compat/make-images.sh" "$work/images" >"$work/make-images.log" 2>&1
skopeo copy --quiet "oci:$work/images/small:1" "docker-archive:$work/small.tar:berth-test/small:1"
write_config "$work/config.yml" "$work/data"
berth_storage "$work/config.yml" "$work"
start_berth "$work/config.yml" "$work/berth.log"

start_dockerd "$work" --registry-mirror "http://$BERTH_ADDR" \
  || { echo "dockerd did not start:"; tail -20 "$work/dockerd.log"; exit 1; }

docker load -q -i "$work/small.tar" >/dev/null
image_id=$(docker image inspect -f '{{.Id}}' berth-test/small:1)
ref=$BERTH_ADDR/team/app:1
docker tag berth-test/small:1 "$ref"
if docker push "$ref" >"$work/push.log" 2>&1; then
  pass "docker push $ref"
else
  fail "docker push $ref: $(tail -3 "$work/push.log")"
fi
docker rmi "$ref" berth-test/small:1 >/dev/null
if docker pull "$ref" >"$work/pull.log" 2>&1 && [ "$(docker image inspect -f '{{.Id}}' "$ref")" = "$image_id" ]; then
  pass "docker pull $ref gives back image $image_id"
else
  fail "docker pull $ref: $(tail -3 "$work/pull.log")"
fi
digest=$(curl -fsSI -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' "http://$BERTH_ADDR/v2/team/app/manifests/1" | tr -d '\r' | awk -F': ' 'tolower($1)=="docker-content-digest"{print $2}')
if docker pull "$BERTH_ADDR/team/app@$digest" >/dev/null 2>&1; then
  pass "docker pull by digest $digest"
else
  fail "docker pull by digest $digest"
fi

# berth copy with docker save and docker load (docs/copy-sync.md): what `docker save` wrote goes
# into Berth, keeping the image (its ID is the config digest), and comes back out as a
# docker-archive that `docker load` loads as the same image.
docker save -o "$work/saved.tar" "$ref"
copied=$BERTH_ADDR/copied/small:1
if "$BERTH_BIN" copy "docker-archive:$work/saved.tar" "docker://$copied" >"$work/copy.log" 2>&1 \
  && [ "$(skopeo inspect --raw --tls-verify=false "docker://$copied" | jq -r .config.digest)" = "$image_id" ]; then
  pass "berth copy docker-archive (docker save) -> Berth keeps image $image_id"
else
  fail "berth copy from docker save: $(tail -3 "$work/copy.log")"
fi
if "$BERTH_BIN" copy "docker://$copied" "docker-archive:$work/out.tar:roundtrip/small:1" >>"$work/copy.log" 2>&1 \
  && docker load -q -i "$work/out.tar" >/dev/null \
  && [ "$(docker image inspect -f '{{.Id}}' roundtrip/small:1)" = "$image_id" ]; then
  pass "berth copy Berth -> docker-archive, docker load gives back image $image_id"
else
  fail "berth copy to docker-archive and docker load: $(tail -3 "$work/copy.log")"
fi

# registry-mirrors: docker.io/library/mirrortest:1 must come from Berth (docker.io itself is
# unreachable through the dead proxy, so a successful pull of the right digest proves it).
skopeo copy --quiet --dest-tls-verify=false "oci:$work/images/small:1" "docker://$BERTH_ADDR/library/mirrortest:1"
want=$(jq -r .small.digest "$work/images/images.json")
if docker pull mirrortest:1 >"$work/mirror.log" 2>&1 && grep -q "Digest: $want" "$work/mirror.log"; then
  pass "docker pull mirrortest:1 served by Berth through registry-mirrors"
else
  fail "docker pull through registry-mirrors: $(tail -3 "$work/mirror.log")"
fi

if [ "$failed" -ne 0 ]; then
  echo "--- berth log tail"; tail -n 20 "$work/berth.log"
  echo "--- dockerd log tail"; tail -n 20 "$work/dockerd.log"
fi
echo "docker-cli: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
