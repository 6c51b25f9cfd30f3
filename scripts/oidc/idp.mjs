// A real OpenID Provider for Berth's OIDC tests: oidc-provider (a certified implementation) on
// 127.0.0.1, port 0. Prints one JSON line {"issuer": ...} on stdout once it listens; stops on
// SIGTERM. Loopback only.
//
// - Users (password login form at /interaction/<uid>, consent granted without asking, as for a
//   first-party client): alice / alice-pw in group team-a, bob / bob-pw in team-b.
// - Client: OIDC_CLIENT_ID (default berth) with OIDC_CLIENT_SECRET (default
//   berth-test-secret), redirect URIs http://127.0.0.1/ui/oidc/callback and
//   http://127.0.0.1/reg/ui/oidc/callback (a native client: any loopback port, RFC 8252 7.3),
//   PKCE required. ID tokens carry preferred_username and groups, signed with RS256; the client
//   `<client id>-es256` (same secret and URIs) gets them signed with ES256. The first client
//   gets a refresh token at every sign-in (as Keycloak gives one; Authentik and Authelia do
//   with the offline_access scope), the ES256 one never (a provider without them); refresh
//   tokens are revocable (RFC 7009) and rotate on use.
// - POST /test/user with JSON {"user": ..., "groups": [...]} or {"user": ..., "disabled": true}
//   changes a user as an administrator of the provider would; GET /test/revocations tells how
//   many tokens were revoked at the revocation endpoint.
// - POST /test/tamper with a mode (the body) makes the provider alter the ID token of its next
//   token response, so the relying party's refusals can be tested against a real provider:
//   `nonce` (re-signed with the provider's key, another nonce), `audience` (re-signed, another
//   client), `forged` (signed by another key under the provider's key id), `unknown-kid`
//   (another key and key id).
import { createServer } from 'node:http';
import { generateKeyPairSync, sign } from 'node:crypto';

import Provider from 'oidc-provider';

const USERS = {
  alice: { password: 'alice-pw', groups: ['team-a'], email: 'alice@example.test' },
  bob: { password: 'bob-pw', groups: ['team-b'], email: 'bob@example.test' },
};
const CLIENT_ID = process.env.OIDC_CLIENT_ID || 'berth';
const CLIENT_SECRET = process.env.OIDC_CLIENT_SECRET || 'berth-test-secret';
const KID = 'idp-rs256';

const rsa = () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
const idpKey = rsa();
const foreignKey = rsa();
const jwk = { ...idpKey.export({ format: 'jwk' }), kid: KID, alg: 'RS256', use: 'sig' };
const ecKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const ecJwk = { ...ecKey.export({ format: 'jwk' }), kid: 'idp-es256', alg: 'ES256', use: 'sig' };

const b64 = (x) => Buffer.from(x).toString('base64url');
const signJwt = (key, kid, claims) => {
  const input = `${b64(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid }))}.${b64(JSON.stringify(claims))}`;
  return `${input}.${sign('RSA-SHA256', Buffer.from(input), key).toString('base64url')}`;
};

let tamper = null;
let revocations = 0;

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [CLIENT_ID, `${CLIENT_ID}-es256`].map((id) => ({
      client_id: id,
      client_secret: CLIENT_SECRET,
      application_type: 'native',
      redirect_uris: ['http://127.0.0.1/ui/oidc/callback', 'http://127.0.0.1/reg/ui/oidc/callback'],
      grant_types: id === CLIENT_ID ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: id === CLIENT_ID ? 'RS256' : 'ES256',
    })),
    jwks: { keys: [jwk, ecJwk] },
    pkce: { required: () => true, methods: ['S256'] },
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    rotateRefreshToken: true,
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email'],
      groups: ['groups'],
    },
    scopes: ['openid', 'profile', 'email', 'groups'],
    // The claims go in the ID token itself (the relying party reads no userinfo).
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: false }, revocation: { enabled: true } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: async (ctx, id) => (USERS[id] && !USERS[id].disabled ? {
      accountId: id,
      claims: async () => ({
        sub: id, preferred_username: id, name: id, email: USERS[id].email, groups: USERS[id].groups,
      }),
    } : undefined),
    cookies: { keys: ['berth-test-cookie-key'] },
  });
  provider.proxy = false;
  provider.on('server_error', (ctx, err) => console.error('idp server_error', err));

  // Alters the next token response's ID token when a tamper mode is set.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'revocation' && ctx.status === 200) revocations += 1;
    if (ctx.oidc?.route !== 'token' || !tamper || !ctx.body?.id_token) return;
    const mode = tamper;
    tamper = null;
    const claims = JSON.parse(Buffer.from(ctx.body.id_token.split('.')[1], 'base64url'));
    let token;
    if (mode === 'nonce') token = signJwt(idpKey, KID, { ...claims, nonce: 'not-this-sign-in' });
    else if (mode === 'audience') token = signJwt(idpKey, KID, { ...claims, aud: 'another-client' });
    else if (mode === 'forged') token = signJwt(foreignKey, KID, { ...claims, groups: ['team-a', 'team-b'] });
    else if (mode === 'unknown-kid') token = signJwt(foreignKey, 'not-listed', claims);
    else return;
    ctx.body = { ...ctx.body, id_token: token };
  });

  const callback = provider.callback();
  const readBody = (req) => new Promise((resolve) => {
    let data = '';
    req.on('data', (c) => { data += c; if (data.length > 65536) req.destroy(); });
    req.on('end', () => resolve(data));
  });
  const page = (res, status, html) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
    res.end(`<!doctype html><title>Test IdP</title>${html}`);
  };
  const loginForm = (uid, error) => `<h1>Sign in to the test IdP</h1>${error ? `<p class="error">${error}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<input name="login" autocomplete="username"><input name="password" type="password"><button>Sign in</button></form>`;

  server.on('request', async (req, res) => {
    try {
      const url = new URL(req.url, issuer);
      if (req.method === 'POST' && url.pathname === '/test/user') {
        const change = JSON.parse(await readBody(req));
        const user = USERS[change.user];
        if (!user) return page(res, 404, '<p>no such user</p>');
        if (Array.isArray(change.groups)) user.groups = change.groups.map(String);
        if (typeof change.disabled === 'boolean') user.disabled = change.disabled;
        res.writeHead(204).end();
        return;
      }
      if (req.method === 'GET' && url.pathname === '/test/revocations') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ revocations }));
        return;
      }
      if (req.method === 'POST' && url.pathname === '/test/tamper') {
        tamper = (await readBody(req)).trim() || null;
        res.writeHead(204).end();
        return;
      }
      const m = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
      if (m) {
        const details = await provider.interactionDetails(req, res);
        if (details.uid !== m[1]) return page(res, 400, '<p>wrong interaction</p>');
        if (details.prompt.name === 'login') {
          if (req.method === 'POST' && m[2]) {
            const form = new URLSearchParams(await readBody(req));
            const user = USERS[form.get('login')];
            if (!user || user.password !== form.get('password')) {
              return page(res, 401, loginForm(details.uid, 'Invalid user name or password.'));
            }
            return await provider.interactionFinished(req, res, {
              login: { accountId: form.get('login') },
            }, { mergeWithLastSubmission: false });
          }
          return page(res, 200, loginForm(details.uid));
        }
        if (details.prompt.name === 'consent') {
          const grant = details.grantId
            ? await provider.Grant.find(details.grantId)
            : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
          const missing = details.prompt.details;
          if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
          if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
          return await provider.interactionFinished(req, res, {
            consent: { grantId: await grant.save() },
          }, { mergeWithLastSubmission: true });
        }
        return page(res, 501, '<p>unknown prompt</p>');
      }
      return callback(req, res);
    } catch (err) {
      console.error('idp error', err);
      if (!res.headersSent) page(res, 500, '<p>error</p>');
    }
  });
  console.log(JSON.stringify({ issuer }));
});

process.on('SIGTERM', () => server.close(() => process.exit(0)));
