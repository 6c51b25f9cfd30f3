#!/usr/bin/env bash
# The recipes of docs/copy-sync.md ("## Recipes") run as written. Every ```sh block of that
# section is extracted and run in order with bash (set -euo pipefail) in one work directory,
# with the variables the section defines at its top pointed at loopback servers:
#   SOURCE   Debian's docker-registry 2.8 playing docker.io, seeded with small images named as
#            in the recipes (library/node:20-alpine, library/ubuntu:22.04, library/alpine:latest,
#            and library/alpine:3.19 / 3.20 for the cleanup)
#   REGISTRY a `berth serve` with the doc's `scan:` section in its configuration
#   SERVICE  `systemctl` here is a stand-in on PATH that stops and starts that berth by PID
#   trivy    a stand-in on PATH (no vulnerability database can be downloaded) that takes
#            Trivy's command line and writes a minimal valid SARIF report to --output
# and the outcome of each recipe is checked: manifests at the target with the digest they have
# at the source, the cleanup's deleted tags, manifests and blobs gone and the rest kept, the
# air-gapped round trip's digests equal, the scan reports listed by Berth's referrers API.
# Everything binds 127.0.0.1; every process is stopped by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# lib.sh defaults BERTH_BIN to the release binary; without one, the debug build.
if [ -z "${BERTH_BIN:-}" ] && [ ! -x "$here/../target/release/berth" ]; then
  BERTH_BIN=$here/../target/debug/berth
fi
source "$here/lib.sh"
BERTH_BIN=$(realpath "$BERTH_BIN")
"$BERTH_BIN" copy --help >/dev/null 2>&1 || { echo "copy-recipes: $BERTH_BIN has no copy command" >&2; exit 1; }
doc=$REPO_ROOT/docs/copy-sync.md

work=$(mktemp -d /tmp/berth-copy-recipes.XXXXXX)
R2_PID=0
cleanup() {
  stop_pid "$R2_PID"
  [ -f "$work/berth.pid" ] && stop_pid "$(cat "$work/berth.pid")"
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bin" "$work/run" "$work/blocks"

passed=0 failed=0
ok() { echo "ok   $*"; passed=$((passed + 1)); }
fail() { echo "FAIL $*"; failed=$((failed + 1)); }
check() { # check DESCRIPTION COMMAND...
  local what=$1; shift
  if "$@"; then ok "$what"; else fail "$what"; fi
}

ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
digest_of() { # digest_of ADDR REPO REF: the Docker-Content-Digest of a manifest HEAD, or nothing
  curl -sS -o /dev/null -D - -I -H "Accept: $ACCEPT" "http://$1/v2/$2/manifests/$3" 2>/dev/null |
    tr -d '\r' | awk 'tolower($1) == "docker-content-digest:" {print $2}' | tail -n1
}
status_of() { # status_of URL: the HTTP status of a HEAD
  curl -s -o /dev/null -w '%{http_code}' -I -H "Accept: $ACCEPT" "$1"
}
config_of() { # config_of ADDR REPO REF: the config digest of an image manifest
  curl -fsS -H "Accept: $ACCEPT" "http://$1/v2/$2/manifests/$3" | jq -r .config.digest
}
blob_file() { local d=${1#sha256:}; echo "$work/berth-data/docker/registry/v2/blobs/sha256/${d:0:2}/$d/data"; }

# --- the doc: variables, the scan: section, the ```sh blocks --------------------------------
python3 - "$doc" "$work" <<'PY'
import json, re, sys
doc, work = sys.argv[1], sys.argv[2]
lines = open(doc).read().split("\n")
start = lines.index("## Recipes")
end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
section, heading, blocks, others, i = lines[start:end], "", [], [], 0
while i < len(section):
    line = section[i]
    if line.startswith("### "):
        heading = line[4:]
    if line.startswith("```"):
        fence = line[3:].strip()
        j = i + 1
        while section[j] != "```":
            j += 1
        body = "\n".join(section[i + 1:j]) + "\n"
        (blocks if fence == "sh" else others).append({"heading": heading, "fence": fence, "body": body})
        i = j
    i += 1
names = []
for b in others:
    if b["fence"] == "text" and re.search(r"^export REGISTRY=", b["body"], re.M):
        names = re.findall(r"^export (\w+)=", b["body"], re.M)
scan = next((b["body"] for b in others if b["fence"] == "yaml" and b["body"].startswith("scan:")), "")
used = sorted({v for b in blocks for v in re.findall(r"\$\{?([A-Z][A-Z0-9_]*)", b["body"])})
for n, b in enumerate(blocks):
    open(f"{work}/blocks/{n}.sh", "w").write(b["body"])
json.dump({"names": names, "used": used, "scan": scan,
           "headings": [b["heading"] for b in blocks]}, open(f"{work}/doc.json", "w"))
PY
nblocks=$(jq '.headings | length' "$work/doc.json")
expected_vars="CONFIG KEEP_LAST OLDER_THAN REGISTRY SERVICE SOURCE USB"
doc_vars=$(jq -r '.names | sort | join(" ")' "$work/doc.json")
check "the doc defines the variables this script sets ($doc_vars)" [ "$doc_vars" = "$expected_vars" ]
undefined=$(jq -r --arg d " $doc_vars " '[.used[] | . as $v | select(($d | contains(" " + $v + " ")) | not)] | join(" ")' "$work/doc.json")
check "the recipes use no variable the doc does not define${undefined:+ (uses $undefined)}" [ -z "$undefined" ]
check "the doc has sh-fenced recipes under ## Recipes ($nblocks) and a scan: yaml block" \
  [ "$nblocks" -ge 6 -a -n "$(jq -r .scan "$work/doc.json")" ]

# --- the upstream: docker-registry seeded with small images ----------------------------------
python3 - "$work/seed" <<'PY'
import gzip, hashlib, io, json, os, sys, tarfile
root = sys.argv[1]
images = {"node": ["20-alpine"], "ubuntu": ["22.04"], "alpine": ["3.19", "3.20", "latest"]}
out = {}
def blob(layout, data):
    d = hashlib.sha256(data).hexdigest()
    os.makedirs(f"{layout}/blobs/sha256", exist_ok=True)
    open(f"{layout}/blobs/sha256/{d}", "wb").write(data)
    return "sha256:" + d
for name, tags in images.items():
    layout = f"{root}/{name}"
    os.makedirs(layout, exist_ok=True)
    open(f"{layout}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
    entries = []
    for tag in tags:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
            content = f"{name}:{tag} for the copy-sync recipes\n".encode()
            info = tarfile.TarInfo(f"etc/{name}-release")
            info.size, info.mtime, info.mode = len(content), 0, 0o644
            t.addfile(info, io.BytesIO(content))
        tar = buf.getvalue()
        gz = gzip.compress(tar, mtime=0)
        layer = blob(layout, gz)
        config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/usr/bin:/bin"]},
                             "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(tar).hexdigest()]}},
                            separators=(",", ":")).encode()
        cfg = blob(layout, config)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                               "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": len(config)},
                               "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": len(gz)}]},
                              separators=(",", ":")).encode()
        m = blob(layout, manifest)
        entries.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": m, "size": len(manifest),
                        "annotations": {"org.opencontainers.image.ref.name": tag}})
        out[f"{name}:{tag}"] = {"manifest": m, "config": cfg, "layer": layer}
    json.dump({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries},
              open(f"{layout}/index.json", "w"))
json.dump(out, open(f"{root}/images.json", "w"), indent=1)
PY
want() { jq -r --arg k "$1" --arg f "${2:-manifest}" '.[$k][$f]' "$work/seed/images.json"; }

write_config "$work/r2.yml" "$work/r2-data"
start_registry2 "$work/r2.yml" "$work/r2.log"
seeded=0
for image in node:20-alpine ubuntu:22.04 alpine:3.19 alpine:3.20 alpine:latest; do
  "$BERTH_BIN" copy -q "oci:$work/seed/${image%%:*}:${image#*:}" "docker://$R2_ADDR/library/$image" >>"$work/seed.log" 2>&1 &&
    [ "$(digest_of "$R2_ADDR" "library/${image%%:*}" "${image#*:}")" = "$(want "$image")" ] && seeded=$((seeded + 1))
done
check "docker-registry (the upstream, $R2_ADDR) seeded with 5 images" [ "$seeded" = 5 ]

# --- the target: berth serve, and the stand-ins on PATH --------------------------------------
port=$(free_port)
write_config "$work/berth.yml" "$work/berth-data"
sed -i "s/addr: 127.0.0.1:0/addr: 127.0.0.1:$port/" "$work/berth.yml"
jq -r .scan "$work/doc.json" >>"$work/berth.yml"
REGISTRY_ADDR=127.0.0.1:$port
ln -s "$BERTH_BIN" "$work/bin/berth"

cat >"$work/bin/systemctl" <<EOF
#!/usr/bin/env bash
# systemctl stand-in for the recipes: "stop berth" / "start berth" stop and start the loopback
# berth serve $work/berth.yml by PID (in $work/berth.pid).
set -euo pipefail
echo "systemctl \$*" >>"$work/systemctl.log"
[ "\${2:-}" = berth ] || { echo "systemctl stand-in: unknown unit \${2:-}" >&2; exit 5; }
case "\${1:-}" in
  stop)
    pid=\$(cat "$work/berth.pid")
    kill -TERM "\$pid" 2>/dev/null || exit 0
    for _ in \$(seq 1 150); do kill -0 "\$pid" 2>/dev/null || exit 0; sleep 0.1; done
    kill -KILL "\$pid" ;;
  start)
    "$work/bin/berth" serve "$work/berth.yml" >>"$work/berth.log" 2>&1 </dev/null &
    echo \$! >"$work/berth.pid"
    for _ in \$(seq 1 200); do
      curl -fsS -o /dev/null "http://$REGISTRY_ADDR/v2/" 2>/dev/null && exit 0
      kill -0 "\$(cat "$work/berth.pid")" 2>/dev/null || break
      sleep 0.1
    done
    echo "berth did not start" >&2; exit 1 ;;
  *) echo "systemctl stand-in: \${1:-} not handled" >&2; exit 2 ;;
esac
EOF
cat >"$work/bin/trivy" <<EOF
#!/usr/bin/env bash
# trivy stand-in: Trivy's command line (image --format F --output FILE REF); writes a minimal
# valid SARIF 2.1.0 report with no results (no vulnerability database can be downloaded here).
set -euo pipefail
echo "trivy \$*" >>"$work/trivy.log"
[ "\${1:-}" = image ] || { echo "trivy stand-in: only 'image'" >&2; exit 2; }
shift
out="" format=table
while [ \$# -gt 0 ]; do
  case "\$1" in
    --output|-o) out=\$2; shift 2 ;;
    --format|-f) format=\$2; shift 2 ;;
    -*) shift ;;
    *) ref=\$1; shift ;;
  esac
done
[ "\$format" = sarif ] && [ -n "\$out" ] || { echo "trivy stand-in: needs --format sarif --output FILE" >&2; exit 2; }
cat >"\$out" <<SARIF
{"version":"2.1.0","\\\$schema":"https://json.schemastore.org/sarif-2.1.0.json","runs":[{"tool":{"driver":{"name":"Trivy","informationUri":"https://github.com/aquasecurity/trivy","fullName":"Trivy Vulnerability Scanner","version":"0.0.0-stand-in","rules":[]}},"results":[],"properties":{"imageName":"\$ref"}}]}
SARIF
EOF
chmod +x "$work/bin/systemctl" "$work/bin/trivy"
export PATH=$work/bin:$PATH
check "berth serve (the target, $REGISTRY_ADDR) started with the doc's scan: section" systemctl start berth

# Older tags for the cleanup to find: pushed before the mirror recipe runs.
for image in alpine:3.19 alpine:3.20; do
  "$BERTH_BIN" copy -q "docker://$R2_ADDR/library/$image" "docker://$REGISTRY_ADDR/mirror/$image" >>"$work/seed.log" 2>&1 ||
    fail "pre-seeding mirror/$image"
done
# Made 40 days old, as a weekly cleanup would find them: the tags' push times and the manifest
# revisions (retention keeps untagged revisions younger than an hour), after berth serve's scan
# hook has attached their reports.
for image in alpine:3.19 alpine:3.20; do
  for _ in $(seq 1 100); do
    curl -fsS "http://$REGISTRY_ADDR/v2/mirror/alpine/referrers/$(want "$image")" 2>/dev/null | jq -e '.manifests | length > 0' >/dev/null && break
    sleep 0.1
  done
done
find "$work/berth-data/docker/registry/v2/repositories/mirror/alpine" -exec touch -h -d '40 days ago' {} +

# --- run the recipes -------------------------------------------------------------------------
export REGISTRY=$REGISTRY_ADDR SOURCE=$R2_ADDR CONFIG=$work/berth.yml SERVICE=berth \
  KEEP_LAST=1 OLDER_THAN=30d USB=$work/usb
for n in $(seq 0 $((nblocks - 1))); do
  heading=$(jq -r --argjson n "$n" '.headings[$n]' "$work/doc.json")
  { echo "set -euo pipefail"; cat "$work/blocks/$n.sh"; } >"$work/blocks/$n.run"
  if (cd "$work/run" && bash "$work/blocks/$n.run") >"$work/blocks/$n.log" 2>&1; then
    ok "recipe $((n + 1)) ($heading: $(head -n1 "$work/blocks/$n.sh" | cut -c1-60)) runs"
  else
    fail "recipe $((n + 1)) ($heading) exited $?; its output:"
    sed 's/^/    /' "$work/blocks/$n.log" | tail -n 20
  fi
done

# --- what the recipes did --------------------------------------------------------------------
same_digest() { # same_digest REPO_AT_TARGET TAG IMAGE_AT_SOURCE
  local got; got=$(digest_of "$REGISTRY_ADDR" "$1" "$2")
  [ -n "$got" ] && [ "$got" = "$(want "$3")" ] && [ "$got" = "$(digest_of "$R2_ADDR" "library/${3%%:*}" "${3#*:}")" ]
}
for image in node:20-alpine ubuntu:22.04 alpine:latest; do
  check "mirror-images.sh: mirror/$image at the target, same digest as the source's library/$image" same_digest "mirror/${image%%:*}" "${image#*:}" "$image"
  check "berth sync: synced/$image at the target, same digest as the source's" same_digest "synced/${image%%:*}" "${image#*:}" "$image"
done

tags=$(curl -fsS "http://$REGISTRY_ADDR/v2/mirror/alpine/tags/list" | jq -r '.tags | sort | join(" ")')
check "cleanup: mirror/alpine keeps only its newest tag (tags: $tags)" [ "$tags" = latest ]
for image in alpine:3.19 alpine:3.20; do
  check "cleanup: the manifest of deleted mirror/$image is gone (404 by digest)" \
    [ "$(status_of "http://$REGISTRY_ADDR/v2/mirror/alpine/manifests/$(want "$image")")" = 404 ]
  check "cleanup: garbage collection removed its layer and config from the storage" \
    [ ! -e "$(blob_file "$(want "$image" layer)")" -a ! -e "$(blob_file "$(want "$image" config)")" ]
done
check "cleanup: kept images' blobs are still stored" [ -e "$(blob_file "$(want alpine:latest layer)")" -a -e "$(blob_file "$(want node:20-alpine layer)")" ]
check "cleanup: the registry was stopped for the collection and started again" \
  [ "$(tr '\n' ' ' <"$work/systemctl.log" 2>/dev/null)" = "systemctl start berth systemctl stop berth systemctl start berth " ]
check "cleanup: mirror/node:20-alpine, ubuntu:22.04, alpine:latest still served after the restart" \
  bash -c "$(declare -f digest_of want); ACCEPT='$ACCEPT'; work='$work'; \
    [ \"\$(digest_of $REGISTRY_ADDR mirror/node 20-alpine)\" = \"\$(want node:20-alpine)\" ] && \
    [ \"\$(digest_of $REGISTRY_ADDR mirror/ubuntu 22.04)\" = \"\$(want ubuntu:22.04)\" ] && \
    [ \"\$(digest_of $REGISTRY_ADDR mirror/alpine latest)\" = \"\$(want alpine:latest)\" ]"

for image in node:20-alpine ubuntu:22.04 alpine:latest; do
  name=${image%%:*} tag=${image#*:}
  check "air-gapped: layout $name on the disk holds $tag with the source's digest" \
    [ "$(jq -r --arg t "$tag" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$work/usb/$name/index.json" 2>/dev/null)" = "$(want "$image")" ]
  check "air-gapped: $name:$tag at the target, same digest as at the source" same_digest "$name" "$tag" "$image"
done
check "air-gapped: docker archive on the disk (manifest.json, RepoTags alpine:latest)" \
  [ "$(tar -xOf "$work/usb/alpine.tar" manifest.json 2>/dev/null | jq -r '.[0].RepoTags[0]')" = alpine:latest ]
check "air-gapped: alpine-archive:latest from the archive has the source's config digest (image ID)" \
  [ "$(config_of "$REGISTRY_ADDR" alpine-archive latest 2>/dev/null)" = "$(want alpine:latest config)" ]

scanned=0
for image in node:20-alpine ubuntu:22.04 alpine:latest; do
  name=${image%%:*}
  referrer=$(jq -r --arg i "$REGISTRY_ADDR/mirror/$image" 'select(.image == $i) | .referrer' "$work/run/scan.json" 2>/dev/null)
  subject=$(jq -r --arg i "$REGISTRY_ADDR/mirror/$image" 'select(.image == $i) | .subject' "$work/run/scan.json" 2>/dev/null)
  listed=$(curl -fsS "http://$REGISTRY_ADDR/v2/mirror/$name/referrers/$(want "$image")" 2>/dev/null |
    jq -r --arg r "$referrer" '.manifests[] | select(.digest == $r) | .artifactType')
  check "berth scan: mirror/$image scanned by digest, its SARIF report $referrer listed by the referrers API" \
    [ "$subject" = "$(want "$image")" -a "$listed" = application/sarif+json ]
  grep -q "^trivy image --format sarif --output [^ ]* $REGISTRY_ADDR/mirror/$name@$(want "$image")\$" "$work/trivy.log" 2>/dev/null &&
    scanned=$((scanned + 1))
done
check "berth scan: trivy called with Trivy's command line for the three images" [ "$scanned" = 3 ]
hook=""
for _ in $(seq 1 100); do
  hook=$(curl -fsS "http://$REGISTRY_ADDR/v2/synced/alpine/referrers/$(want alpine:latest)" 2>/dev/null |
    jq -r '[.manifests[] | select(.artifactType == "application/sarif+json")] | length')
  [ "${hook:-0}" -ge 1 ] && break
  sleep 0.1
done
check "scan.enabled: the push of synced/alpine:latest was scanned by berth serve, its report listed" [ "${hook:-0}" -ge 1 ]

echo "copy-recipes: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
