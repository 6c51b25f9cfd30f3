#!/usr/bin/env python3
"""The disk work of a durable registry:2-layout push and nothing else: the ceiling of push.

For each image (one blob of --size bytes, a small manifest, a tag), with --concurrency
threads, on a fresh directory under --dir, this does what any registry that keeps the
registry:2 layout and acknowledges a push only once it is on disk must do at the least:

  blob       write a temporary file 8 MiB at a time, each piece hashed with SHA-256 first
             (as a registry hashes while it receives) and a background fdatasync started
             after it (one at a time: the disk works while the rest arrives, as in Berth),
             fdatasync, mkdir blobs/sha256/xx/<hex>, rename to data, fsync the directory
  layer link mkdir repositories/<repo>/_layers/sha256/<hex>, write link (temp, fdatasync,
             rename), fsync the directory
  manifest   the same as a blob, with the manifest's bytes; its revision link as a layer link
  tag        tags/<tag>/current/link and tags/<tag>/index/sha256/<hex>/link, each as a link

That is 6 fdatasync and 6 directory fsync per image, Berth's count (docs/performance.md). No
HTTP and no request parsing (the names are digests of a counter): a registry doing the
same syncs cannot push faster than this on this disk. Each blob is hashed with SHA-256 too, as
a registry must to verify the digest it is given (--no-hash leaves that out). With --no-sync
the syncs are left out, which is what docker-registry 2.8.2 does (it never syncs).

With --parts N each blob is written as Berth wrote a chunked upload on a filesystem until
2026-12-06 (and as it still does on object stores): N unsynced part files, copied in the kernel
into the blob file, which is synced and renamed. Berth now writes chunks at their offsets into
one file that is synced and renamed, which is what the default (--parts 1) measures.

Prints one JSON line: {"images", "size", "concurrency", "sync", "hash", "parts",
"early_writeback", "seconds",
"mib_per_s"}.
"""

import argparse
import concurrent.futures
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time


STEP = 8 << 20


def write_blob_file(path, data, sync, hash_blob, early_writeback):
    """A file written to a temporary name beside path, synced, renamed into place, its
    directory synced. A blob comes as a registry receives it: STEP bytes at a time, each
    hashed and then written; with early_writeback a background fdatasync of what is written
    so far starts after each piece (one at a time), as Berth does, so the final fdatasync
    waits for the tail only."""
    tmp = f"{path}.tmp{os.getpid()}-{time.monotonic_ns()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    hasher = hashlib.sha256() if hash_blob else None
    background = None
    try:
        view = memoryview(data)
        while view:
            piece, view = view[:STEP], view[STEP:]
            if hasher:
                hasher.update(piece)
            while piece:
                n = os.write(fd, piece)
                piece = piece[n:]
            if sync and early_writeback and (background is None or not background.is_alive()):
                background = threading.Thread(target=os.fdatasync, args=(fd,))
                background.start()
        if background:
            background.join()
        if sync:
            os.fdatasync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, path)
    if sync:
        dfd = os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def write_file(path, data, sync):
    """A small file (a link, a manifest): written to a temporary name, synced, renamed."""
    write_blob_file(path, data, sync, hash_blob=False, early_writeback=False)


def put_blob(root, hexd, data, sync, hash_blob=False, early_writeback=False):
    d = os.path.join(root, "blobs", "sha256", hexd[:2], hexd)
    os.makedirs(d, exist_ok=True)
    write_blob_file(os.path.join(d, "data"), data, sync, hash_blob, early_writeback)


def put_blob_in_parts(root, hexd, data, parts, sync):
    """Berth's chunked upload on a filesystem: each chunk an unsynced part file, then the
    parts copied in the kernel (copy_file_range) into a temporary file that is synced and
    renamed into place, and the parts deleted."""
    up = os.path.join(root, "_uploads", hexd)
    os.makedirs(up, exist_ok=True)
    size = len(data) // parts
    names = []
    for i in range(parts):
        name = os.path.join(up, f"part{i}")
        with open(name, "wb") as f:
            f.write(data[i * size:(i + 1) * size] if i < parts - 1 else data[i * size:])
        names.append(name)
    d = os.path.join(root, "blobs", "sha256", hexd[:2], hexd)
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, "data.tmp")
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for name in names:
            src = os.open(name, os.O_RDONLY)
            try:
                left = os.fstat(src).st_size
                while left > 0:
                    n = os.copy_file_range(src, out, left)
                    if n == 0:
                        break
                    left -= n
            finally:
                os.close(src)
        if sync:
            os.fdatasync(out)
    finally:
        os.close(out)
    os.rename(tmp, os.path.join(d, "data"))
    if sync:
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    shutil.rmtree(up)


def put_link(root, rel, hexd, sync):
    d = os.path.join(root, "repositories", "bench", "small", rel)
    os.makedirs(d, exist_ok=True)
    write_file(os.path.join(d, "link"), f"sha256:{hexd}".encode(), sync)


def push_image(root, i, blob, sync, hash_blobs, parts, early_writeback):
    layer = f"{i:064x}"
    manifest_hex = f"{i + 10**9:064x}"
    manifest = json.dumps({"schemaVersion": 2, "layers": [{"digest": layer}]}).encode() * 8
    if parts > 1:
        if hash_blobs:
            hashlib.sha256(blob).hexdigest()
        put_blob_in_parts(root, layer, blob, parts, sync)
    else:
        put_blob(root, layer, blob, sync, hash_blobs, early_writeback)
    put_link(root, f"_layers/sha256/{layer}", layer, sync)
    put_blob(root, manifest_hex, manifest, sync)
    put_link(root, f"_manifests/revisions/sha256/{manifest_hex}", manifest_hex, sync)
    put_link(root, f"_manifests/tags/t{i}/current", manifest_hex, sync)
    put_link(root, f"_manifests/tags/t{i}/index/sha256/{manifest_hex}", manifest_hex, sync)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default=None, help="parent directory (default: $TMPDIR)")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--size", type=int, default=1 << 20)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--no-sync", action="store_true")
    p.add_argument("--no-hash", action="store_true")
    p.add_argument("--no-early-writeback", action="store_true",
                   help="sync each blob only once it is complete (Berth before 2026-12-06)")
    p.add_argument("--parts", type=int, default=1,
                   help="write each blob as this many unsynced parts, composed at the end")
    a = p.parse_args()
    sync = not a.no_sync
    root = tempfile.mkdtemp(prefix="push-ceiling.", dir=a.dir)
    try:
        blobs = [os.urandom(a.size) for _ in range(a.images)]
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(a.concurrency) as pool:
            for f in [pool.submit(push_image, root, i, blobs[i], sync, not a.no_hash, a.parts,
                                   not a.no_early_writeback) for i in range(a.images)]:
                f.result()
        seconds = time.monotonic() - started
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({
        "images": a.images, "size": a.size, "concurrency": a.concurrency, "sync": sync,
        "hash": not a.no_hash, "parts": a.parts, "early_writeback": not a.no_early_writeback,
        "seconds": round(seconds, 3),
        "mib_per_s": round(a.images * a.size / (1 << 20) / seconds, 1),
    }))


if __name__ == "__main__":
    main()
