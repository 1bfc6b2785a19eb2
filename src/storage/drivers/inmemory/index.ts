// In-memory driver: a tree of directories and files held in process memory. For tests and
// throwaway registries; everything is lost when the process exits.
import { Readable } from 'node:stream';
import {
  InvalidOffsetError,
  PathNotFoundError,
  childPath,
  compareNames,
  paginate,
  walkByListing,
  type FileInfo,
  type FileWriter,
  type ListPage,
  type StorageDriver,
  type WalkControl,
} from '../../driver.js';

interface FileNode {
  kind: 'file';
  chunks: Buffer[];
  size: number;
  modTime: Date;
}
interface DirNode {
  kind: 'dir';
  children: Map<string, Node>;
  modTime: Date;
}
type Node = FileNode | DirNode;

const NAME = 'inmemory';

function segments(path: string): string[] {
  return path === '/' ? [] : path.slice(1).split('/');
}

function contents(file: FileNode): Buffer {
  if (file.chunks.length > 1) file.chunks = [Buffer.concat(file.chunks, file.size)];
  return file.chunks[0] ?? Buffer.alloc(0);
}

export class InMemoryDriver implements StorageDriver {
  readonly name = NAME;
  private root: DirNode = { kind: 'dir', children: new Map(), modTime: new Date() };

  private find(path: string): Node | undefined {
    let node: Node = this.root;
    for (const seg of segments(path)) {
      if (node.kind !== 'dir') return undefined;
      const next = node.children.get(seg);
      if (!next) return undefined;
      node = next;
    }
    return node;
  }

  private file(path: string): FileNode {
    const node = this.find(path);
    if (!node || node.kind !== 'file') throw new PathNotFoundError(path, NAME);
    return node;
  }

  /** Creates parent directories and (re)places a file node at path. */
  private place(path: string, file: FileNode): void {
    const segs = segments(path);
    let dir = this.root;
    for (const seg of segs.slice(0, -1)) {
      let next = dir.children.get(seg);
      if (!next || next.kind !== 'dir') {
        next = { kind: 'dir', children: new Map(), modTime: new Date() };
        dir.children.set(seg, next);
      }
      dir = next;
    }
    dir.children.set(segs[segs.length - 1]!, file);
  }

  async getContent(path: string): Promise<Buffer> {
    return Buffer.from(contents(this.file(path)));
  }

  async putContent(path: string, content: Buffer | string): Promise<void> {
    const buf = Buffer.from(content);
    this.place(path, { kind: 'file', chunks: [buf], size: buf.length, modTime: new Date() });
  }

  async reader(path: string, offset = 0): Promise<Readable> {
    const file = this.file(path);
    if (offset > file.size) throw new InvalidOffsetError(path, NAME, offset);
    return Readable.from([contents(file).subarray(offset)], { objectMode: false });
  }

  async writer(path: string, options: { append: boolean }): Promise<FileWriter> {
    const existing = this.find(path);
    let file: FileNode;
    if (options.append && existing?.kind === 'file') {
      file = existing;
    } else {
      file = { kind: 'file', chunks: [], size: 0, modTime: new Date() };
      this.place(path, file);
    }
    let done = false;
    const self = this;
    const ensureOpen = () => {
      if (done) throw new Error(`${NAME}: writer for ${path} already closed`);
    };
    return {
      get size() {
        return file.size;
      },
      async write(chunk: Buffer) {
        ensureOpen();
        file.chunks.push(Buffer.from(chunk));
        file.size += chunk.length;
        file.modTime = new Date();
      },
      async close() {
        done = true;
      },
      async commit() {
        ensureOpen();
        done = true;
      },
      async cancel() {
        done = true;
        if (self.find(path) === file) await self.delete(path).catch(() => {});
      },
    };
  }

  async stat(path: string): Promise<FileInfo> {
    const node = this.find(path);
    if (!node) throw new PathNotFoundError(path, NAME);
    return { path, size: node.kind === 'file' ? node.size : 0, modTime: node.modTime, isDir: node.kind === 'dir' };
  }

  async list(path: string, page?: { limit?: number; after?: string }): Promise<ListPage> {
    const node = this.find(path);
    if (!node || node.kind !== 'dir') throw new PathNotFoundError(path, NAME);
    const names = [...node.children.keys()].sort(compareNames).map((n) => childPath(path, n));
    return paginate(names, page);
  }

  async move(source: string, dest: string): Promise<void> {
    const file = this.file(source);
    await this.delete(source);
    this.place(dest, file);
  }

  async delete(path: string): Promise<void> {
    const segs = segments(path);
    const parent = this.find('/' + segs.slice(0, -1).join('/')) ?? (segs.length === 1 ? this.root : undefined);
    const name = segs[segs.length - 1]!;
    if (!parent || parent.kind !== 'dir' || !parent.children.delete(name)) throw new PathNotFoundError(path, NAME);
  }

  walk(path: string, visit: (info: FileInfo) => Promise<WalkControl> | WalkControl): Promise<void> {
    return walkByListing(this, path, visit);
  }
}
