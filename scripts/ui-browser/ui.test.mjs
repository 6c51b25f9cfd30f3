// Berth's web UI in a real browser (scripts/ui-browser.sh starts the servers and seeds them):
// Debian's chromium through playwright-core; what a person sees and does, checked on each
// target (the root and an http.prefix); axe-core on every page, light and dark; screenshots.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';

const targets = JSON.parse(process.env.UI_TARGETS);
const seed = JSON.parse(readFileSync(process.env.UI_SEED, 'utf8'));
const USER = process.env.UI_USER;
const PASSWORD = process.env.UI_PASSWORD;
const SHOT_DIR = process.env.UI_SHOT_DIR;
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const axeTotals = [];

// axe-core on the page as it is, in light then dark; fails on serious or critical violations.
async function axe(page, name, target) {
  for (const scheme of ['light', 'dark']) {
    await page.emulateMedia({ colorScheme: scheme });
    const result = await new AxeBuilder({ page }).analyze();
    const byImpact = { minor: 0, moderate: 0, serious: 0, critical: 0 };
    for (const v of result.violations) byImpact[v.impact] = (byImpact[v.impact] || 0) + v.nodes.length;
    const line = `axe ${target.name} ${name} ${scheme}: ${result.passes.length} rules passed, violations ` +
      `critical ${byImpact.critical}, serious ${byImpact.serious}, moderate ${byImpact.moderate}, minor ${byImpact.minor}`;
    console.log(line);
    axeTotals.push(line);
    const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    assert.equal(bad.length, 0, `${line}\n` + bad.map((v) =>
      `${v.impact} ${v.id}: ${v.help}\n  ` + v.nodes.map((n) => n.target.join(' ') + ' ' + n.failureSummary).join('\n  ')).join('\n'));
    if (target.shots) {
      mkdirSync(SHOT_DIR, { recursive: true });
      await page.screenshot({ path: join(SHOT_DIR, `${name}-${scheme}.png`), fullPage: false });
    }
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

// A fresh headless chromium with its own profile; script errors on a page fail the test.
async function launch() {
  mkdirSync(process.env.UI_PROFILE_DIR, { recursive: true });
  const profile = mkdtempSync(join(process.env.UI_PROFILE_DIR, 'profile-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium', headless: true, args: ARGS,
    viewport: { width: 1280, height: 900 }, colorScheme: 'light',
  });
  context.setDefaultTimeout(5000);
  const page = context.pages()[0] ?? await context.newPage();
  page.on('pageerror', (e) => assert.fail(`script error on ${page.url()}: ${e}`));
  return { context, page };
}

for (const target of targets) {
  describe(`web UI at ${target.url}`, () => {
    const ui = target.url + 'ui/';
    let context, page;
    before(async () => { ({ context, page } = await launch()); });
    after(async () => { await context?.close(); });

    test('anonymous: a login link and no repositories', async () => {
      const r = await page.goto(ui);
      assert.equal(r.status(), 200);
      await page.getByRole('link', { name: 'Log in' }).first().waitFor();
      assert.equal(await page.getByRole('link', { name: 'team/app', exact: true }).count(), 0);
      assert.equal(await page.getByRole('button', { name: 'Log out' }).count(), 0);
    });

    test('login page: accessible and as it looks', async () => {
      await page.goto(ui + 'login');
      await page.getByRole('heading', { name: 'Log in' }).waitFor();
      await axe(page, 'login', target);
    });

    test('a wrong password is refused on the form', async () => {
      await page.goto(ui + 'login');
      await page.getByLabel('User name').fill(USER);
      await page.getByLabel('Password').fill('not the password');
      await page.getByLabel('Password').press('Enter');
      await page.getByRole('heading', { name: 'Log in' }).waitFor();
      assert.equal(await page.getByRole('button', { name: 'Log out' }).count(), 0);
      assert.match(await page.locator('main').innerText(), /wrong|invalid|incorrect|failed/i);
    });

    test('keyboard-only login: Tab to the fields, type, Enter', async () => {
      await page.goto(ui + 'login');
      // From the top of the page, Tab until the user name field has the focus.
      let tabs = 0;
      while ((await page.evaluate(() => document.activeElement?.id)) !== 'username') {
        assert.ok(++tabs <= 10, 'the user name field is not reached with Tab');
        await page.keyboard.press('Tab');
      }
      await page.keyboard.type(USER);
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'password');
      await page.keyboard.type(PASSWORD);
      await Promise.all([page.waitForURL(ui), page.keyboard.press('Enter')]);
      await page.getByRole('button', { name: 'Log out' }).waitFor();
      assert.match(await page.locator('header').innerText(), new RegExp(USER));
    });

    test('the repository list counts every seeded repository and shows the first 200', async () => {
      await page.goto(ui + '?n=200');
      for (const repo of seed.repos.slice(0, 200)) {
        await page.getByRole('link', { name: repo, exact: true }).waitFor();
      }
      assert.match(await page.locator('.pager').innerText(), new RegExp(`1–200 of ${seed.repos.length}`));
      await page.goto(ui);
      await axe(page, 'repositories', target);
    });

    test('search: typing in the search box narrows the list', async () => {
      await page.goto(ui);
      await page.getByRole('searchbox').or(page.locator('#q')).first().fill('tool-001');
      await Promise.all([page.waitForURL(/\?q=tool-001/), page.locator('#q').press('Enter')]);
      const links = await page.locator('main table a').allInnerTexts();
      const expected = seed.repos.filter((r) => r.includes('tool-001')).sort();
      assert.equal(expected.length, 10);
      assert.deepEqual(links.filter((t) => t.includes('/')).sort(), expected);
      assert.equal(await page.getByRole('link', { name: 'team/app', exact: true }).count(), 0);
    });

    test('paging the repository list: Next and Previous', async () => {
      await page.goto(ui + '?n=5');
      const first = await page.locator('main table tbody a').allInnerTexts();
      assert.equal(first.length, 5);
      assert.match(await page.locator('.pager').innerText(), new RegExp(`1–5 of ${seed.repos.length}`));
      await Promise.all([page.waitForURL(/start=5/), page.getByRole('link', { name: 'Next' }).click()]);
      const second = await page.locator('main table tbody a').allInnerTexts();
      assert.equal(second.length, 5);
      assert.ok(second.every((r) => !first.includes(r)), `${first} / ${second}`);
      await Promise.all([page.waitForURL((u) => !/start=5/.test(u.search)), page.getByRole('link', { name: 'Previous' }).click()]);
      assert.deepEqual(await page.locator('main table tbody a').allInnerTexts(), first);
    });

    test('the repository page: tags, the folded .sig, a few hundred tags paged', async () => {
      await page.goto(ui);
      await Promise.all([page.waitForURL(/\/r\/team\/app$/), page.getByRole('link', { name: 'team/app', exact: true }).click()]);
      await page.getByRole('heading', { name: 'team/app' }).waitFor();
      const rows = page.locator('main table tbody tr');
      const text = await rows.allInnerTexts();
      for (const tag of ['latest', '1.0', 'v1']) {
        assert.ok(text.some((t) => t.startsWith(tag + '\t') || t.split('\t')[0].trim() === tag), `tag ${tag} in ${text}`);
      }
      // The .sig tag is not a row of its own: a "sig" badge on the index's tags, and a note.
      assert.ok(!text.some((t) => t.includes('.sig')), `the .sig tag is listed as a tag: ${text}`);
      const latest = rows.filter({ has: page.getByRole('link', { name: 'latest', exact: true }) });
      assert.match(await latest.innerText(), /linux\/amd64, linux\/arm64/);
      assert.equal(await latest.locator('.badge', { hasText: 'sig' }).count(), 1);
      assert.match(await page.locator('main').innerText(), /1 cosign signature/);
      await axe(page, 'repository', target);

      await page.goto(ui + 'r/team/many');
      assert.match(await page.locator('.pager').first().innerText(), new RegExp(`of ${seed.manyTags}`));
      const pageOne = await page.locator('main table tbody tr').count();
      assert.ok(pageOne > 0 && pageOne < seed.manyTags, `${pageOne} rows on the first page`);
      await Promise.all([page.waitForURL(/start=/), page.getByRole('link', { name: 'Next' }).first().click()]);
      assert.match(await page.locator('main table tbody tr').first().innerText(), /^t-\d{4}/);
      await page.locator('#q').fill('t-029');
      await Promise.all([page.waitForURL(/q=t-029/), page.locator('#q').press('Enter')]);
      const found = (await page.locator('main table tbody tr').allInnerTexts()).map((t) => t.split('\t')[0].trim());
      assert.deepEqual(found, Array.from({ length: 10 }, (_, i) => `t-029${i}`));
    });

    test('the image page: platforms, referrers, pull commands with the digest, copy buttons', async () => {
      await page.goto(ui + 'r/team/app');
      await Promise.all([page.waitForURL(/\/-\/latest$/), page.getByRole('link', { name: 'latest', exact: true }).click()]);
      const main = page.locator('main');
      const platforms = page.locator('table').filter({ hasText: 'linux/arm64' });
      await platforms.first().waitFor();
      const ptext = await platforms.first().innerText();
      assert.match(ptext, /linux\/amd64/);
      assert.match(ptext, new RegExp(seed.arm64.slice(7, 19)));
      const all = await main.innerText();
      assert.match(all, /application\/spdx\+json/, 'the SBOM referrer');
      assert.ok(all.includes(seed.sigTag) || /\bsig\b/.test(all), 'the cosign tag');
      const host = new URL(target.url).host;
      assert.ok(all.includes(`${host}/team/app@${seed.index}`), `a pull command pinned by digest in ${all}`);
      assert.ok(all.includes(`${host}/team/app:latest`), 'a pull command by tag');
      const copies = page.getByRole('button', { name: 'Copy' });
      assert.ok((await copies.count()) >= 2, 'copy buttons');
      const pinned = await page.locator('button[data-copy*="@sha256:"]').first().getAttribute('data-copy');
      assert.ok(pinned.includes(seed.index), pinned);
      await axe(page, 'image-index', target);

      // A platform's own page from the table: the config with labels, env, history.
      await Promise.all([page.waitForURL(new RegExp(seed.arm64)),
        platforms.first().locator(`a[href*="${seed.arm64}"]`).first().click()]);
      const img = await main.innerText();
      for (const s of ['APP_ARCH=arm64', 'com.example.team', 'platform', 'COPY server /app/server', 'linux/arm64']) {
        assert.ok(img.includes(s), `${s} on the arm64 image page`);
      }
      await axe(page, 'image', target);
    });

    test('sorting the repository list by size and by last push', async () => {
      await page.goto(ui);
      await Promise.all([page.waitForURL(/sort=size/), page.locator('nav.sort').getByRole('link', { name: 'Size' }).click()]);
      // The usage report may still be counting on the very first visit: reload until it is in.
      for (let i = 0; i < 20 && !/as of/.test(await page.locator('main').innerText()); i++) {
        await page.waitForTimeout(250);
        await page.reload();
      }
      assert.match(await page.locator('main').innerText(), /Tags, sizes and push dates as of/);
      const bytes = (t) => {
        const [n, unit] = t.trim().split(' ');
        return Number(n) * ({ B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[unit] ?? 0);
      };
      const sizes = (await page.locator('main table').first().locator('tbody tr td:nth-child(3)').allInnerTexts()).map(bytes);
      assert.ok(sizes.length > 3 && sizes.every((s, i) => i === 0 || sizes[i - 1] >= s), `largest first: ${sizes}`);
      assert.equal(await page.locator('nav.sort [aria-current]').innerText(), 'Size');
      await Promise.all([page.waitForURL(/sort=pushed/), page.locator('nav.sort').getByRole('link', { name: 'Last push' }).click()]);
      // The repository the seed pushed last comes first.
      assert.equal((await page.locator('main table tbody tr a').first().innerText()).trim(), 'team/scratch');
      await axe(page, 'repositories-sorted', target);
    });

    test('keyboard-only delete of a tag, after a page listing the tags that stay', async () => {
      const gone = target.name === 'root' ? 'gone-root' : 'gone-prefix';
      await page.goto(ui + `r/team/scratch/-/${gone}`);
      const label = `Delete tag ${gone}`;
      let tabs = 0;
      while ((await page.evaluate(() => document.activeElement?.textContent?.trim())) !== label) {
        assert.ok(++tabs <= 60, `"${label}" is not reached with Tab`);
        await page.keyboard.press('Tab');
      }
      await Promise.all([page.waitForURL(/\/delete$/), page.keyboard.press('Enter')]);
      const confirm = await page.locator('main').innerText();
      assert.match(confirm, /Only the tag is removed/);
      assert.ok(confirm.includes('keep'), `the other tags are listed: ${confirm}`);
      await axe(page, 'delete-tag', target);
      tabs = 0;
      while ((await page.evaluate(() => document.activeElement?.textContent?.trim())) !== label) {
        assert.ok(++tabs <= 60, `the "${label}" button is not reached with Tab`);
        await page.keyboard.press('Tab');
      }
      await Promise.all([page.waitForLoadState('load'), page.keyboard.press('Enter')]);
      await page.getByRole('heading', { name: 'Deleted' }).waitFor();
      await page.goto(ui + 'r/team/scratch');
      const tags = (await page.locator('main table tbody tr').allInnerTexts()).map((t) => t.split('\t')[0].trim());
      assert.ok(!tags.includes(gone) && tags.includes('keep'), `${tags}`);
    });

    test('the registry page: storage, maintenance, a garbage collection preview', async () => {
      await page.goto(ui);
      await Promise.all([page.waitForURL(/\/admin$/), page.locator('header').getByRole('link', { name: 'Registry' }).click()]);
      for (const h of ['Registry', 'Storage', 'Maintenance', 'Configuration']) {
        await page.getByRole('heading', { name: h, exact: true }).waitFor();
      }
      const main = await page.locator('main').innerText();
      assert.match(main, /garbage collection/);
      await axe(page, 'registry', target);
      await Promise.all([page.waitForURL(/admin\/gc$/), page.getByRole('link', { name: 'Preview garbage collection' }).click()]);
      assert.match(await page.locator('main').innerText(), /dry run: \d+ blobs in use/);
      await page.getByRole('button', { name: 'Run garbage collection now' }).waitFor();
      await axe(page, 'gc-preview', target);
    });

    // Figures for docs/performance.md, printed, never asserted (targets live in benchmarks):
    // the server's own time (Server-Timing) and the browser's load time of each page, the
    // second visit (the first fills the usage report and the tag-facts cache).
    test('timings: server and browser, 2,000 repositories and 10,000 tags', async () => {
      const pages = ['', '?sort=size', '?sort=pushed', '?q=tool-19', 'r/team/many', 'r/team/many?sort=pushed',
        'r/team/many?sort=size', 'r/team/many?start=9950', 'r/team/app/-/latest', 'admin'];
      for (const path of pages) {
        const times = [];
        for (let i = 0; i < 3; i++) {
          const r = await page.goto(ui + path);
          const server = Number(/dur=([\d.]+)/.exec(r.headers()['server-timing'] ?? '')?.[1]);
          const load = await page.evaluate(() => {
            const n = performance.getEntriesByType('navigation')[0];
            return n.loadEventEnd - n.startTime;
          });
          times.push([server, load]);
        }
        const [server, load] = times[times.length - 1];
        console.log(`timing ${target.name} /ui/${path}: server ${server.toFixed(1)} ms, browser load ${load.toFixed(0)} ms` +
          ` (first visit: server ${times[0][0].toFixed(1)} ms, load ${times[0][1].toFixed(0)} ms)`);
      }
    });

    test('logout: back to anonymous', async () => {
      await page.goto(ui);
      await Promise.all([page.waitForURL(ui), page.getByRole('button', { name: 'Log out' }).click()]);
      await page.getByRole('link', { name: 'Log in' }).first().waitFor();
      assert.equal(await page.getByRole('link', { name: 'team/app', exact: true }).count(), 0);
      const r = await page.goto(ui + 'r/team/app');
      assert.equal(r.status(), 404);
    });
  });
}

// The other login modes, on servers sharing the same storage, and a pull-through cache.
const modes = JSON.parse(process.env.UI_MODES);
describe('web UI in the other login modes and as a pull-through cache', () => {
  let context, page;
  before(async () => { ({ context, page } = await launch()); });
  after(async () => { await context?.close(); });
  const target = { name: 'modes', shots: 0 };

  test('no auth: everything listed without a login, no login link, the registry page', async () => {
    await page.goto(modes.open + 'ui/');
    await page.getByRole('link', { name: 'team/app', exact: true }).waitFor();
    assert.equal(await page.getByRole('link', { name: 'Log in' }).count(), 0);
    assert.match(await page.locator('.pager').first().innerText(), new RegExp(`of ${seed.repos.length}`));
    await page.locator('header').getByRole('link', { name: 'Registry' }).click();
    await page.getByRole('heading', { name: 'Maintenance' }).waitFor();
    await axe(page, 'open-registry', target);
  });

  async function tokenLogin(user, password) {
    await page.goto(modes.token + 'ui/login');
    await page.getByLabel('User name').fill(user);
    await page.getByLabel('Password').fill(password);
    await Promise.all([page.waitForURL(modes.token + 'ui/'), page.getByLabel('Password').press('Enter')]);
    await page.getByRole('button', { name: 'Log out' }).waitFor();
  }

  test('built-in token server: a user sees what its rules let it pull; only admins see the registry page', async () => {
    await page.goto(modes.token + 'ui/');
    assert.equal(await page.getByRole('link', { name: 'team/app', exact: true }).count(), 0);
    await tokenLogin('alice', 'alice-pw');
    const links = (await page.locator('main table tbody a').allInnerTexts()).map((t) => t.trim());
    assert.deepEqual(links, ['team/app']);
    assert.equal(await page.locator('header').getByRole('link', { name: 'Registry' }).count(), 0);
    assert.equal((await page.goto(modes.token + 'ui/admin')).status(), 404);
    assert.equal((await page.goto(modes.token + 'ui/r/team/many')).status(), 404);
    await page.goto(modes.token + 'ui/r/team/app/-/latest');
    await page.getByRole('heading', { name: 'Platforms' }).waitFor();
    assert.equal(await page.getByRole('link', { name: /^Delete/ }).count(), 0, 'alice may only pull');
    await axe(page, 'token-image', target);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.getByRole('link', { name: 'Log in' }).first().waitFor();
    await tokenLogin('root', 'root-pw');
    assert.match(await page.locator('.pager').first().innerText(), new RegExp(`of ${seed.repos.length}`));
    await page.locator('header').getByRole('link', { name: 'Registry' }).click();
    await page.getByRole('heading', { name: 'Maintenance' }).waitFor();
  });

  test('pull-through cache: the cached image grouped under its upstream, its page, no delete', async () => {
    await page.goto(modes.mirror + 'ui/');
    await page.getByRole('heading', { name: 'Cached from upstream.test' }).waitFor();
    await Promise.all([page.waitForURL(/upstream\.test\/team\/app$/),
      page.getByRole('link', { name: seed.cached, exact: true }).click()]);
    await page.getByRole('link', { name: 'v1', exact: true }).click();
    await page.getByRole('heading', { name: 'Layers' }).waitFor();
    assert.equal(await page.getByRole('link', { name: /^Delete/ }).count(), 0);
    const r = await page.goto(modes.mirror + `ui/r/${seed.cached}/-delete`);
    assert.equal(r.status(), 403);
    assert.match(await page.locator('main').innerText(), /pull-through cache/);
    await page.goto(modes.mirror + 'ui/admin');
    const cache = await page.locator('table').filter({ hasText: 'Hit rate' }).innerText();
    assert.match(cache, /upstream\.test\s+\d+ %/, `a hit rate for the upstream: ${cache}`);
    await axe(page, 'mirror-registry', target);
  });
});

describe('single sign-on with an OIDC provider (oidc-provider from npm)', () => {
  let context, page;
  before(async () => { ({ context, page } = await launch()); });
  after(async () => { await context?.close(); });
  const target = { name: 'oidc', shots: 0 };

  test('sign in through the provider, see what the group may pull, create an access token, log out', async () => {
    await page.goto(modes.oidc + 'ui/login');
    await axe(page, 'oidc-login', target);
    await page.getByRole('link', { name: 'Sign in with Test IdP' }).click();
    // The provider's own login page.
    await page.locator('input[name=login]').fill('alice');
    await page.locator('input[name=password]').fill('alice-pw');
    // Back at Berth: the "Signed in" page, which moves on to the repositories by itself.
    await Promise.all([page.waitForURL(modes.oidc + 'ui/', { timeout: 10000 }),
      page.getByRole('button', { name: 'Sign in' }).click()]);
    await page.getByRole('button', { name: 'Log out' }).waitFor({ timeout: 10000 });
    assert.match(await page.locator('header').innerText(), /alice/);
    await page.goto(modes.oidc + 'ui/');
    const links = (await page.locator('main table tbody a').allInnerTexts()).map((t) => t.trim());
    assert.deepEqual(links, ['team/app'], 'team-a may pull team/app only');
    assert.equal((await page.goto(modes.oidc + 'ui/r/team/many')).status(), 404);

    await page.goto(modes.oidc + 'ui/');
    await page.locator('header').getByRole('link', { name: 'Access tokens' }).click();
    await page.getByLabel('Name').fill('ci');
    await page.getByLabel('Scope').selectOption('push');
    await Promise.all([page.waitForLoadState('load'), page.getByRole('button', { name: 'Create token' }).click()]);
    const token = (await page.locator('code.token').innerText()).trim();
    assert.ok(token.length >= 20, `a token is shown once: ${token}`);
    writeFileSync(process.env.UI_TOKEN_FILE, token);
    assert.match(await page.locator('main').innerText(), /\bci\b/);
    await axe(page, 'oidc-tokens', target);

    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForLoadState('load');
    const r = await page.goto(modes.oidc + 'ui/r/team/app');
    assert.equal(r.status(), 404, 'signed out');
  });
});

after(() => {
  console.log(`axe summary (${axeTotals.length} page checks):\n` + axeTotals.join('\n'));
});
