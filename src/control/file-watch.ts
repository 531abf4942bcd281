// Watching the files the control plane serves from (geo databases, certificates): their directories are watched,
// because updaters replace files by rename or symlink swap, and each change is reported once the burst settles.
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname } from 'node:path';

export interface FileWatchOptions {
  /** Quiet time after the last event before `changed` runs: updaters write, rename and chmod in a burst. */
  readonly debounceMs: number;
  /** A file of entry `index` changed (or may have). */
  readonly changed: (index: number) => void;
  /** A directory could not be watched, or its watcher died: its entries keep serving, unwatched. */
  readonly failed: (indexes: readonly number[], error: Error) => void;
}

export class FileWatch {
  readonly #watchers: FSWatcher[] = [];
  readonly #timers = new Map<number, NodeJS.Timeout>();
  readonly #options: FileWatchOptions;

  /** `entries[i]` lists the files of entry i (a database, or a certificate and its key). */
  constructor(entries: readonly (readonly string[])[], options: FileWatchOptions) {
    this.#options = options;
    // Directory → base name → the entries that use a file by that name there.
    const directories = new Map<string, Map<string, number[]>>();
    entries.forEach((files, index) => {
      for (const file of new Set(files)) {
        const names = directories.get(dirname(file)) ?? new Map<string, number[]>();
        directories.set(dirname(file), names);
        names.set(basename(file), [...(names.get(basename(file)) ?? []), index]);
      }
    });
    for (const [directory, names] of directories) {
      const all = [...new Set([...names.values()].flat())];
      let watcher: FSWatcher;
      try {
        watcher = watch(directory, { persistent: false }, (_event, file) => {
          // Kubernetes swaps a volume's `..data` symlink, not the files that point through it; some platforms give
          // no name at all. Either way every entry in the directory is read again.
          const touched = file === null || file.startsWith('..') ? all : names.get(file);
          for (const index of touched ?? []) this.touch(index);
        });
      } catch (error) {
        // Out of inotify watches, say: the operator hears of it.
        options.failed(all, error as Error);
        continue;
      }
      // A watcher dies with its directory.
      watcher.on('error', (error) => options.failed(all, error));
      this.#watchers.push(watcher);
    }
  }

  /** Report entry `index` as changed once the debounce passes, as if one of its files had changed. */
  touch(index: number): void {
    clearTimeout(this.#timers.get(index));
    const timer = setTimeout(() => {
      this.#timers.delete(index);
      this.#options.changed(index);
    }, this.#options.debounceMs);
    this.#timers.set(index, timer.unref());
  }

  /** Stops watching and drops the changes still waiting out their debounce. */
  close(): void {
    for (const watcher of this.#watchers.splice(0)) watcher.close();
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
  }
}
