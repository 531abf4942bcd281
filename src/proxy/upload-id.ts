// The id of a new Appwrite upload, read from the start of its first chunk's answer (the File JSON) as the bytes pass
// through to the client: nothing is buffered or delayed, and at most a small prefix is looked at.

/** Appwrite writes `$id` first; a prefix this long holds it with room to spare, or the answer is not a File. */
const PREFIX_BYTES = 1_024;
/** Appwrite ids are at most 36 characters of a-z, A-Z, 0-9, period, hyphen and underscore. */
const ID = /"\$id"\s*:\s*"([A-Za-z0-9._-]{1,36})"/;

export class UploadIdReader {
  #prefix = '';
  #done = false;

  /** True once the id was found or the prefix passed without one: the caller may drop the reader. */
  get finished(): boolean {
    return this.#done;
  }

  /** The answer's next bytes; returns the id when it is found in them, else undefined. */
  read(chunk: Buffer): string | undefined {
    if (this.#done) return undefined;
    const room = PREFIX_BYTES - this.#prefix.length;
    // latin1 maps each byte to one character, so a multi-byte character cut at a chunk's edge cannot break the match.
    this.#prefix += chunk.toString('latin1', 0, Math.min(chunk.length, room));
    const match = ID.exec(this.#prefix);
    if (match !== null || this.#prefix.length >= PREFIX_BYTES) {
      this.#done = true;
      this.#prefix = '';
    }
    return match?.[1];
  }
}

/** Only a successful JSON answer to a first chunk names the upload. */
export function namesUpload(statusCode: number, contentType: string | string[] | undefined): boolean {
  return statusCode >= 200 && statusCode < 300 && typeof contentType === 'string' && contentType.includes('json');
}
