// The control plane's certificate files: read and checked at start and on a config reload, watched and reloaded
// when they change on disk, and published with the shared TLS session-ticket keys as plain data for the data planes.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { CertificateError, checkCertificate } from '../listen/certificates.ts';
import type { CertificateFiles, CheckedCertificate } from '../listen/certificates.ts';
import { FileWatch } from './file-watch.ts';

export interface CertificateReloadEvent {
  /** On success the pair's cert file; on failure the file at fault. */
  readonly file: string;
  readonly ok: boolean;
  readonly error?: Error;
}

export interface CertificateStoreOptions {
  /** Every hot reload's outcome, for the log: a rejected file keeps its previous pair serving. */
  onReload?: (event: CertificateReloadEvent) => void;
  /**
   * Called after a hot reload or a ticket-key rotation changed what the data planes serve, for the control plane
   * to post `certificates` and `ticketKeys` to them. A config reload's commit calls nothing: its caller publishes.
   */
  onPublish?: () => void;
  /** Rotates the session-ticket keys this often; 0 or absent, never. */
  ticketKeyRotationMs?: number;
}

// certbot and lego write the cert and then the key, each by rename or a symlink swap: one reread follows the burst.
const RELOAD_DEBOUNCE_MS = 150;
// What Node's TLS takes for ticket keys: 16 bytes of key name, 16 of HMAC secret, 16 of AES key.
const TICKET_KEY_BYTES = 48;

const sameFiles = (a: CertificateFiles | undefined, b: CertificateFiles): boolean => a?.cert === b.cert && a.key === b.key;

/** Reads a pair and checks it; an unreadable file is a CertificateError naming it like any other fault. */
export async function readPair(files: CertificateFiles): Promise<CheckedCertificate> {
  const read = (file: string): Promise<string> =>
    readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
      // The message repeats the path after a comma ("ENOENT: no such file or directory, open '/x'"); the error names it once.
      throw new CertificateError(file, `cannot be read: ${error.message.replace(/, \w+ '.*'$/, '')}`, error);
    });
  const [cert, key] = await Promise.all([read(files.cert), read(files.key)]);
  return checkCertificate(files, cert, key);
}

/** Reads and checks every pair, in order; rejects with the first one's error in list order. */
async function readAll(list: readonly CertificateFiles[]): Promise<CheckedCertificate[]> {
  const results = await Promise.allSettled(list.map(readPair));
  const failed = results.find((result) => result.status === 'rejected');
  if (failed) throw failed.reason;
  return results.map((result) => (result as PromiseFulfilledResult<CheckedCertificate>).value);
}

export class CertificateStore {
  readonly #onReload: ((event: CertificateReloadEvent) => void) | undefined;
  readonly #onPublish: (() => void) | undefined;
  #list: readonly CertificateFiles[];
  #certificates: readonly CheckedCertificate[];
  #generation = 0;
  #ticketKeys = randomBytes(TICKET_KEY_BYTES);
  // Hot reloads swapped in so far, so a config reload's commit can tell that a file changed after it read the files.
  #hotSwaps = 0;
  // Pairs whose last reread was refused, so the one that succeeds is reported even when it changes nothing.
  readonly #failing = new Set<number>();
  #reloads: Promise<unknown> = Promise.resolve();
  /** The pairs' files' watch, while watching. */
  #watch: FileWatch | null = null;
  #rotation: NodeJS.Timeout | undefined;

  private constructor(list: readonly CertificateFiles[], certificates: readonly CheckedCertificate[], options: CertificateStoreOptions) {
    this.#list = Object.freeze([...list]);
    this.#certificates = Object.freeze([...certificates]);
    this.#onReload = options.onReload;
    this.#onPublish = options.onPublish;
    const period = options.ticketKeyRotationMs ?? 0;
    if (period > 0) this.#rotation = setInterval(() => this.rotateTicketKeys(), period).unref();
  }

  /** Reads and checks every pair; a bad one rejects with its CertificateError, so startup fails naming the file. */
  static async open(list: readonly CertificateFiles[], options: CertificateStoreOptions = {}): Promise<CertificateStore> {
    return new CertificateStore(list, await readAll(list), options);
  }

  /** The pairs serving now, in config order: one frozen array, replaced whole on every change. */
  get certificates(): readonly CheckedCertificate[] {
    return this.#certificates;
  }

  /** Bumps on every change the data planes must hear of: a pair reloaded, a config reload committed, keys rotated. */
  get generation(): number {
    return this.#generation;
  }

  /**
   * The session-ticket keys every worker's TLS contexts share, so a session resumes on whichever worker the kernel
   * hands the next connection to. Replaced on rotation, never changed in place: a holder keeps the bytes it read.
   */
  get ticketKeys(): Buffer {
    return this.#ticketKeys;
  }

  /**
   * New ticket keys. Why rotate: a TLS 1.2 ticket carries its session's master secret sealed under these keys, so
   * whoever obtains the keys later (a memory dump, a compromised host) can open tickets recorded off the wire and
   * decrypt those sessions, the full handshake that issued the ticket included: ECDHE's forward secrecy holds only
   * once the key that sealed the ticket is gone. (TLS 1.3 resumption adds a fresh key exchange, so less is exposed
   * there.) Rotating bounds the exposure to one period's tickets. The cost: Node's TLS holds one key set, with no
   * grace for the previous one, so every ticket issued before a rotation stops resuming, and its client does one full
   * handshake and gets a ticket under the new keys.
   */
  rotateTicketKeys(): void {
    this.#ticketKeys = randomBytes(TICKET_KEY_BYTES);
    this.#generation++;
    this.#onPublish?.();
  }

  /**
   * Readies a config reload's list: reads and checks every pair, and rejects naming the file if any fails, with
   * nothing changed. Resolves with the commit, which cannot fail: it swaps the new pairs in, watches their files
   * instead if the store watches, and bumps the generation. The caller publishes.
   */
  async prepare(list: readonly CertificateFiles[]): Promise<() => void> {
    const hotSwaps = this.#hotSwaps;
    const certificates = Object.freeze(await readAll(list));
    const frozenList = Object.freeze([...list]);
    return () => {
      // A pending reread was scheduled by an index of the old list: closing the watch drops it.
      const watching = this.#watch !== null;
      this.#watch?.close();
      this.#watch = null;
      this.#failing.clear();
      this.#list = frozenList;
      this.#certificates = certificates;
      this.#generation++;
      if (watching) this.watch();
      // A file changed on disk and was swapped in after this reload read it: read again, so the newer file serves.
      if (hotSwaps !== this.#hotSwaps) this.#rereadAll();
    };
  }

  /** Rereads the pair at `index` shortly after one of its files changes. Directories are watched: files are replaced by rename. */
  watch(): void {
    if (this.#watch !== null) return;
    const list = this.#list;
    this.#watch = new FileWatch(
      list.map((files) => [files.cert, files.key]),
      {
        debounceMs: RELOAD_DEBOUNCE_MS,
        changed: (index) => void this.#reload(index),
        // The pairs serve all the same, only unwatched, and the operator hears of it.
        failed: (indexes, error) => {
          for (const index of indexes) this.#onReload?.({ file: list[index].cert, ok: false, error });
        },
      },
    );
  }

  #rereadAll(): void {
    for (let index = 0; index < this.#list.length; index++) this.#watch?.touch(index);
  }

  // Reloads run one at a time, so the files read last are the ones that serve.
  #reload(index: number): Promise<void> {
    const files = this.#list[index];
    if (files === undefined) return Promise.resolve();
    const reload = this.#reloads.then(async () => {
      try {
        const checked = await readPair(files);
        // A config reload changed the list while the files were read: the new list is what serves.
        if (!sameFiles(this.#list[index], files)) return;
        const current = this.#certificates[index];
        const recovered = this.#failing.delete(index);
        // A touch, or a broken file put back as it was: nothing new to publish, though a refusal earlier is answered.
        if (current.cert === checked.cert && current.key === checked.key) {
          if (recovered) this.#onReload?.({ file: files.cert, ok: true });
          return;
        }
        this.#certificates = Object.freeze(this.#certificates.with(index, checked));
        this.#hotSwaps++;
        this.#generation++;
        this.#onReload?.({ file: files.cert, ok: true });
        this.#onPublish?.();
      } catch (error) {
        // A pair caught between its two writes is refused too; the write of the other file brings another reread.
        if (sameFiles(this.#list[index], files)) this.#failing.add(index);
        const file = error instanceof CertificateError ? error.file : files.cert;
        this.#onReload?.({ file, ok: false, error: error as Error });
      }
    });
    this.#reloads = reload;
    return reload;
  }

  /** Stops watching and rotating; the pairs and ticket keys keep serving. */
  close(): void {
    this.#watch?.close();
    this.#watch = null;
    clearInterval(this.#rotation);
    this.#rotation = undefined;
  }
}
