// Seeds a running Berth over the registry API (plain HTTP on loopback, Basic auth), for
// ui.test.mjs. Usage: node seed.mjs BASE_URL USER PASSWORD OUT.json [MIRROR_URL]
//   team/app   a multi-arch OCI index (linux/amd64 + linux/arm64) tagged latest and 1.0; the
//              amd64 image tagged v1 too; image configs with labels, env, entrypoint and
//              history; an SBOM artifact whose subject is the index; a cosign-style
//              sha256-<hex>.sig tag for the index
//   team/many  one image under MANY_TAGS tags (t-0000 ..., 10,000 by default)
//   tools/tool-0000 ...  TOOL_REPOS small repositories (2,000 by default) sharing one layer
//   team/scratch  one image under three tags, for the delete tests
// With MIRROR_URL (a pull-through cache whose upstream upstream.test serves the same storage),
// pulls team/app's amd64 image through it, so the mirror holds a cached repository.
// Writes the digests the tests check to OUT.json.
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';

const [base, user, password, out, mirror] = process.argv.slice(2);
const MANY_TAGS = Number(process.env.MANY_TAGS || 10000);
const TOOL_REPOS = Number(process.env.TOOL_REPOS || 2000);
// Requests in flight while seeding the many tags and repositories.
const PARALLEL = 16;
const auth = 'Basic ' + Buffer.from(`${user}:${password}`).toString('base64');
const sha = (buf) => 'sha256:' + createHash('sha256').update(buf).digest('hex');
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

async function req(method, url, body, headers = {}) {
  const r = await fetch(new URL(url, base), { method, body, headers: { authorization: auth, ...headers } });
  if (r.status >= 300) throw new Error(`${method} ${url}: ${r.status} ${await r.text()}`);
  return r;
}

async function blob(repo, data) {
  const buf = Buffer.isBuffer(data) ? data : Buffer.from(typeof data === 'string' ? data : JSON.stringify(data));
  const digest = sha(buf);
  const started = await req('POST', `v2/${repo}/blobs/uploads/`);
  const loc = new URL(started.headers.get('location'), new URL(base));
  loc.searchParams.set('digest', digest);
  await req('PUT', loc.toString(), buf, { 'content-type': 'application/octet-stream' });
  return { digest, size: buf.length };
}

async function manifest(repo, ref, obj) {
  const buf = Buffer.from(JSON.stringify(obj));
  const digest = sha(buf);
  await req('PUT', `v2/${repo}/manifests/${ref ?? digest}`, buf, { 'content-type': obj.mediaType });
  return { mediaType: obj.mediaType, digest, size: buf.length };
}

async function image(repo, arch, extra = {}) {
  const layer = await blob(repo, Buffer.from(`layer of ${repo} for ${arch}\n`.repeat(64)));
  const config = await blob(repo, {
    created: '2026-01-02T03:04:05Z',
    architecture: arch,
    os: 'linux',
    config: {
      Env: ['PATH=/usr/local/bin:/usr/bin:/bin', `APP_ARCH=${arch}`],
      Entrypoint: ['/app/server'],
      Cmd: ['--listen', ':8080'],
      WorkingDir: '/app',
      User: '1000:1000',
      Labels: {
        'org.opencontainers.image.title': 'Berth UI test app',
        'org.opencontainers.image.source': 'https://example.com/berth-ui-test',
        'com.example.team': 'platform',
        ...extra,
      },
    },
    rootfs: { type: 'layers', diff_ids: [sha(Buffer.from('uncompressed ' + arch))] },
    history: [
      { created: '2026-01-02T03:00:00Z', created_by: '/bin/sh -c #(nop) ADD file:rootfs in /' },
      { created: '2026-01-02T03:04:05Z', created_by: 'COPY server /app/server # buildkit' },
    ],
  });
  return {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...layer }],
  };
}

const seeded = {};
// team/app: the multi-arch index, its images, an artifact with a subject, a cosign .sig tag.
const amd64 = await manifest('team/app', 'v1', await image('team/app', 'amd64'));
const arm64 = await manifest('team/app', null, await image('team/app', 'arm64'));
const index = {
  schemaVersion: 2,
  mediaType: OCI_INDEX,
  manifests: [
    { ...amd64, platform: { os: 'linux', architecture: 'amd64' } },
    { ...arm64, platform: { os: 'linux', architecture: 'arm64' } },
  ],
  annotations: { 'org.opencontainers.image.description': 'multi-arch test image' },
};
const idx = await manifest('team/app', 'latest', index);
await manifest('team/app', '1.0', index);
const empty = await blob('team/app', '{}');
const sbomLayer = await blob('team/app', { spdxVersion: 'SPDX-2.3', name: 'team/app' });
const sbom = await manifest('team/app', null, {
  schemaVersion: 2,
  mediaType: OCI_MANIFEST,
  artifactType: 'application/spdx+json',
  config: { mediaType: 'application/vnd.oci.empty.v1+json', ...empty },
  layers: [{ mediaType: 'application/spdx+json', ...sbomLayer }],
  subject: { mediaType: OCI_INDEX, digest: idx.digest, size: idx.size },
});
const sigLayer = await blob('team/app', {
  critical: { identity: { 'docker-reference': 'team/app' }, image: { 'docker-manifest-digest': idx.digest }, type: 'cosign container image signature' },
  optional: null,
});
const sigTag = `sha256-${idx.digest.slice('sha256:'.length)}.sig`;
const sigConfig = await blob('team/app', { architecture: '', os: '', config: {}, rootfs: { type: 'layers', diff_ids: [sigLayer.digest] } });
await manifest('team/app', sigTag, {
  schemaVersion: 2,
  mediaType: OCI_MANIFEST,
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...sigConfig },
  layers: [{
    mediaType: 'application/vnd.dev.cosign.simplesigning.v1+json', ...sigLayer,
    annotations: { 'dev.cosignproject.cosign/signature': 'MEUCIQDtest' },
  }],
});
Object.assign(seeded, { index: idx.digest, amd64: amd64.digest, arm64: arm64.digest, sbom: sbom.digest, sigTag });

// Runs `task` on every item, PARALLEL at a time.
async function each(items, task) {
  let next = 0;
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    while (next < items.length) await task(items[next++]);
  }));
}

// team/many: one image, MANY_TAGS tags.
const many = await image('team/many', 'amd64');
const tags = Array.from({ length: MANY_TAGS }, (_, i) => `t-${String(i).padStart(4, '0')}`);
await each(tags, (t) => manifest('team/many', t, many));
seeded.manyTags = MANY_TAGS;

// tools/tool-NNNN: small repositories; each has its own config, all share one layer, mounted.
const toolRepos = Array.from({ length: TOOL_REPOS }, (_, i) => `tools/tool-${String(i).padStart(4, '0')}`);
const shared = await blob('tools/base', Buffer.from('shared tool layer\n'.repeat(64)));
await each(toolRepos, async (repo) => {
  await req('POST', `v2/${repo}/blobs/uploads/?mount=${shared.digest}&from=tools/base`);
  const config = await blob(repo, { architecture: 'amd64', os: 'linux', config: { Labels: { repo } },
    rootfs: { type: 'layers', diff_ids: [shared.digest] } });
  await manifest(repo, 'stable', {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...shared }],
  });
});
// team/scratch: one image under three tags; each target deletes one of them in the tests.
const scratch = await image('team/scratch', 'amd64');
for (const t of ['keep', 'gone-root', 'gone-prefix']) await manifest('team/scratch', t, scratch);
seeded.repos = ['team/app', 'team/many', 'team/scratch', ...toolRepos];

// Through the pull-through cache: team/app's amd64 image (manifest, config, layer), as a
// client pulls it, so the mirror stores it under upstream.test/team/app.
if (mirror) {
  const pull = async (path) => {
    const r = await fetch(new URL(path, mirror), { headers: { accept: OCI_MANIFEST } });
    if (r.status !== 200) throw new Error(`GET ${path} through the mirror: ${r.status} ${await r.text()}`);
    return r;
  };
  const m = await (await pull(`v2/upstream.test/team/app/manifests/v1`)).json();
  for (const d of [m.config, ...m.layers]) await (await pull(`v2/upstream.test/team/app/blobs/${d.digest}`)).arrayBuffer();
  seeded.cached = 'upstream.test/team/app';
}
writeFileSync(out, JSON.stringify(seeded, null, 2));
console.log(`seeded ${seeded.repos.length} repositories, ${MANY_TAGS} tags in team/many, index ${idx.digest}`);
