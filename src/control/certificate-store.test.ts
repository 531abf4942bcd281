// CertificateStore on real files in a temp dir: startup refusals, hot reload of pairs replaced by rename or symlink
// swap (broken and half-written pairs refused, the old pair serving), a config reload's prepare/commit, ticket keys.
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CertificateStore } from './certificate-store.ts';
import type { CertificateReloadEvent } from './certificate-store.ts';
import { CertificateError } from '../listen/certificates.ts';
import type { CertificateFiles } from '../listen/certificates.ts';
import { corruptPem, makeCa, makeCertificate } from '../../test/support/certs.ts';
import type { Ca, MadeCertificate } from '../../test/support/certs.ts';
import { until } from '../../test/support/harness.ts';

let root: string;
let ca: Ca;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'meridian-certificate-store-'));
  ca = makeCa(root);
});
afterAll(() => rm(root, { recursive: true, force: true }));

let store: CertificateStore | undefined;
afterEach(() => {
  store?.close();
  store = undefined;
});

let dirs = 0;
async function freshDir(): Promise<string> {
  const dir = join(root, `case-${++dirs}`);
  await mkdir(dir);
  return dir;
}

/** A pair written as `site.crt` and `site.key` in `dir`, the paths a config names. */
function sitePair(dir: string, names: string[]): { files: CertificateFiles; made: MadeCertificate } {
  const made = makeCertificate(dir, { names, ca, fileName: 'site' });
  return { files: { cert: made.certFile, key: made.keyFile }, made };
}

/** Another pair for the same names, made aside, whose text replaces a pair's files. */
const renewal = (dir: string, names: string[]): MadeCertificate => makeCertificate(dir, { names, ca });

/** Replaces a file the way certbot and lego do: write a sibling, then rename it over the original. */
async function replace(path: string, text: string): Promise<void> {
  await writeFile(`${path}.tmp`, text);
  await rename(`${path}.tmp`, path);
}

/** Opens a store that records what it reports and publishes. */
async function openRecorded(list: CertificateFiles[], ticketKeyRotationMs?: number) {
  const events: CertificateReloadEvent[] = [];
  let published = 0;
  store = await CertificateStore.open(list, {
    onReload: (event) => events.push(event),
    onPublish: () => published++,
    ticketKeyRotationMs,
  });
  return {
    store,
    events,
    get published() {
      return published;
    },
  };
}

async function rejection(promise: Promise<unknown>): Promise<CertificateError> {
  const error = await promise.then(
    () => undefined,
    (failure: unknown) => failure,
  );
  expect(error).toBeInstanceOf(CertificateError);
  return error as CertificateError;
}

describe('open', () => {
  it('reads and checks every pair, in config order', async () => {
    const one = sitePair(await freshDir(), ['one.test']);
    const two = sitePair(await freshDir(), ['two.test']);
    const { store } = await openRecorded([two.files, one.files]);
    expect(store.certificates.map((certificate) => certificate.label)).toEqual(['two.test', 'one.test']);
    expect(Object.isFrozen(store.certificates)).toBe(true);
  });

  it('rejects naming the file when a pair is bad or a file is missing', async () => {
    const good = sitePair(await freshDir(), ['good.test']);
    const bad = sitePair(await freshDir(), ['bad.test']);
    await writeFile(bad.files.key, 'garbage');
    const garbage = await rejection(CertificateStore.open([good.files, bad.files], {}));
    expect(garbage.file).toBe(bad.files.key);
    expect(garbage.message).toContain(bad.files.key);

    const missing = { cert: join(root, 'nowhere.crt'), key: good.files.key };
    const absent = await rejection(CertificateStore.open([good.files, missing], {}));
    expect(absent.file).toBe(missing.cert);
    expect(absent.problem).toBe('cannot be read: ENOENT: no such file or directory');
  });
});

describe('hot reload', () => {
  it('picks up a cert and key renamed over the old ones, with no call, and publishes', async () => {
    const dir = await freshDir();
    const { files } = sitePair(dir, ['www.example.com']);
    const recorded = await openRecorded([files]);
    const before = recorded.store.certificates[0];
    recorded.store.watch();

    const next = renewal(dir, ['www.example.com']);
    await replace(files.cert, next.cert);
    await replace(files.key, next.key);
    await until(() => recorded.store.certificates[0].fingerprint !== before.fingerprint, 'the renewed pair to serve');
    expect(recorded.store.generation).toBeGreaterThan(0);
    expect(recorded.store.certificates[0].cert).toBe(next.cert);
    expect(recorded.events.at(-1)).toEqual({ file: files.cert, ok: true });
    expect(recorded.published).toBeGreaterThan(0);
  });

  it('keeps the old pair when a corrupt file replaces one, reports it, and hears when it is put back', async () => {
    const dir = await freshDir();
    const { files, made } = sitePair(dir, ['corrupt.test']);
    const recorded = await openRecorded([files]);
    const before = recorded.store.certificates;
    recorded.store.watch();

    await replace(files.cert, corruptPem(made.cert));
    const refused = await until(() => recorded.events.find((event) => !event.ok), 'the corrupt file to be refused');
    expect(refused.file).toBe(files.cert);
    expect(refused.error).toBeInstanceOf(CertificateError);
    expect(refused.error?.message).toContain(files.cert);
    expect(recorded.store.certificates).toBe(before);
    expect(recorded.store.generation).toBe(0);
    expect(recorded.published).toBe(0);

    await replace(files.cert, made.cert);
    await until(() => recorded.events.at(-1)?.ok, 'the restored file to be reported');
    expect(recorded.store.certificates).toBe(before);
    expect(recorded.store.generation).toBe(0);
  });

  it('refuses a cert whose key is not written yet, then serves the pair once the key follows', async () => {
    const dir = await freshDir();
    const { files } = sitePair(dir, ['halfway.test']);
    const recorded = await openRecorded([files]);
    const before = recorded.store.certificates;
    recorded.store.watch();

    const next = renewal(dir, ['halfway.test']);
    await replace(files.cert, next.cert);
    const refused = await until(() => recorded.events.find((event) => !event.ok), 'the mismatched pair to be refused');
    expect(refused.file).toBe(files.key);
    expect(recorded.store.certificates).toBe(before);

    await replace(files.key, next.key);
    await until(() => recorded.events.at(-1)?.ok, 'the completed pair to be accepted');
    expect(recorded.store.certificates[0].fingerprint).not.toBe(before[0].fingerprint);
    expect(recorded.store.certificates[0].key).toBe(next.key);
    expect(recorded.store.generation).toBe(1);
  });

  it('follows a certbot-style symlink swap in a live directory', async () => {
    const dir = await freshDir();
    const archive = join(dir, 'archive');
    const live = join(dir, 'live');
    await mkdir(archive);
    await mkdir(live);
    const first = makeCertificate(archive, { names: ['linked.test'], ca, fileName: 'cert1' });
    const files = { cert: join(live, 'fullchain.pem'), key: join(live, 'privkey.pem') };
    await symlink(first.certFile, files.cert);
    await symlink(first.keyFile, files.key);
    const recorded = await openRecorded([files]);
    const before = recorded.store.certificates[0].fingerprint;
    recorded.store.watch();

    const second = makeCertificate(archive, { names: ['linked.test'], ca, fileName: 'cert2' });
    for (const [link, target] of [
      [files.cert, second.certFile],
      [files.key, second.keyFile],
    ]) {
      await symlink(target, `${link}.new`);
      await rename(`${link}.new`, link);
    }
    await until(() => recorded.store.certificates[0].fingerprint !== before, 'the swapped links to serve');
    expect(recorded.store.certificates[0].cert).toBe(second.cert);
  });

  it('publishes nothing for a pair rewritten unchanged', async () => {
    const same = sitePair(await freshDir(), ['same.test']);
    const dir = await freshDir();
    const changed = sitePair(dir, ['changed.test']);
    const recorded = await openRecorded([same.files, changed.files]);
    recorded.store.watch();

    // Rereads run in the order their files changed, so by the time the second pair serves, the first was read.
    await replace(same.files.cert, same.made.cert);
    const next = renewal(dir, ['changed.test']);
    await replace(changed.files.cert, next.cert);
    await replace(changed.files.key, next.key);
    await until(() => recorded.store.certificates[1].cert === next.cert, 'the changed pair to serve');
    expect(recorded.events.filter((event) => event.file === same.files.cert || event.file === same.files.key)).toEqual([]);
    expect(recorded.events.at(-1)).toEqual({ file: changed.files.cert, ok: true });
    expect(recorded.store.generation).toBe(1);
    expect(recorded.published).toBe(1);
  });
});

describe('prepare', () => {
  it('rejects a list with a bad file, naming it, and changes nothing', async () => {
    const { files } = sitePair(await freshDir(), ['kept.test']);
    const bad = sitePair(await freshDir(), ['broken.test']);
    await writeFile(bad.files.cert, 'garbage');
    const recorded = await openRecorded([files]);
    const before = recorded.store.certificates;

    const error = await rejection(recorded.store.prepare([files, bad.files]));
    expect(error.file).toBe(bad.files.cert);
    expect(recorded.store.certificates).toBe(before);
    expect(recorded.store.generation).toBe(0);
  });

  it('changes nothing until the commit, which swaps the new list in and watches its files instead', async () => {
    const { files } = sitePair(await freshDir(), ['old.test']);
    const dir = await freshDir();
    const added = sitePair(dir, ['new.test']);
    const recorded = await openRecorded([files]);
    recorded.store.watch();

    const commit = await recorded.store.prepare([added.files, files]);
    expect(recorded.store.certificates.map((certificate) => certificate.label)).toEqual(['old.test']);
    commit();
    expect(recorded.store.certificates.map((certificate) => certificate.label)).toEqual(['new.test', 'old.test']);
    expect(recorded.store.generation).toBe(1);
    expect(recorded.published).toBe(0);

    const next = renewal(dir, ['new.test']);
    await replace(added.files.cert, next.cert);
    await replace(added.files.key, next.key);
    await until(() => recorded.store.certificates[0].cert === next.cert, 'a file of the new list to reload');
    expect(recorded.store.generation).toBe(2);
  });
});

describe('ticket keys', () => {
  it('are 48 random bytes that rotate on the timer, each rotation published', async () => {
    const { files } = sitePair(await freshDir(), ['tickets.test']);
    const recorded = await openRecorded([files], 20);
    const first = recorded.store.ticketKeys;
    expect(first).toHaveLength(48);
    await until(() => recorded.store.generation >= 2, 'two rotations');
    expect(recorded.store.ticketKeys).toHaveLength(48);
    expect(recorded.store.ticketKeys.equals(first)).toBe(false);
    expect(recorded.published).toBeGreaterThanOrEqual(2);
  });

  it('rotate on demand', async () => {
    const { files } = sitePair(await freshDir(), ['manual.test']);
    const recorded = await openRecorded([files]);
    const first = recorded.store.ticketKeys;
    recorded.store.rotateTicketKeys();
    expect(recorded.store.ticketKeys.equals(first)).toBe(false);
    expect(recorded.store.generation).toBe(1);
    expect(recorded.published).toBe(1);
  });
});
