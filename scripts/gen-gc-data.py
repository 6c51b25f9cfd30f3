#!/usr/bin/env python3
"""Writes a registry:2 data directory for the garbage-collection benchmark, straight into the
on-disk layout (what `docker push` into registry:2 would leave, without pushing 50,000 blobs
through HTTP): REPOS repositories with MANIFESTS image manifests in all, each with its own
config and 3 layers drawn from a shared pool, most of them tagged, plus orphan blobs that no
manifest uses, so that the sweep has work to do.

Usage: gen-gc-data.py ROOT [--manifests 10000] [--blobs 50000] [--repos 200] [--seed 1]
Prints a one-line JSON summary (counts, and how many blobs a collection must remove).
"""
import argparse
import hashlib
import json
import os
import random

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--manifests", type=int, default=10000)
    ap.add_argument("--blobs", type=int, default=50000)
    ap.add_argument("--repos", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    v2 = os.path.join(a.root, "docker", "registry", "v2")

    def blob(data):
        hexd = hashlib.sha256(data).hexdigest()
        write(os.path.join(v2, "blobs", "sha256", hexd[:2], hexd, "data"), data)
        return hexd

    def link(repo, *parts, hexd):
        write(os.path.join(v2, "repositories", repo, *parts, "link"), f"sha256:{hexd}".encode())

    # Blob budget: one manifest and one config per image, the rest split between a shared
    # layer pool and orphans (10% of the total).
    orphans = a.blobs // 10
    pool_size = a.blobs - 2 * a.manifests - orphans
    assert pool_size > 3, "not enough blobs for that many manifests"
    pool = [blob(rnd.randbytes(48)) for _ in range(pool_size)]
    for _ in range(orphans):
        blob(rnd.randbytes(48))

    per_repo = a.manifests // a.repos
    untagged = 0
    for r in range(a.repos):
        repo = f"bench/app{r:04d}"
        for m in range(per_repo):
            config = rnd.randbytes(40)
            config_hex = blob(config)
            layers = rnd.sample(pool, 3)
            body = json.dumps({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": f"sha256:{config_hex}", "size": len(config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": f"sha256:{h}", "size": 48} for h in layers],
            }, separators=(",", ":")).encode()
            manifest_hex = blob(body)
            for h in [config_hex, *layers]:
                link(repo, "_layers", "sha256", h, hexd=h)
            link(repo, "_manifests", "revisions", "sha256", manifest_hex, hexd=manifest_hex)
            if m % 5 == 4:  # every fifth image is untagged (pushed by digest, or re-tagged away)
                untagged += 1
                continue
            tag = f"v{m}"
            link(repo, "_manifests", "tags", tag, "current", hexd=manifest_hex)
            link(repo, "_manifests", "tags", tag, "index", "sha256", manifest_hex, hexd=manifest_hex)
    manifests = per_repo * a.repos
    print(json.dumps({
        "repositories": a.repos, "manifests": manifests, "untagged_manifests": untagged,
        "blobs": pool_size + orphans + 2 * manifests, "orphan_blobs": orphans,
    }))


if __name__ == "__main__":
    main()
