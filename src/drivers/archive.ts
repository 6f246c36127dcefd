import { spawn, type ChildProcess } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createReadStream, createWriteStream, existsSync, mkdirSync, statSync } from 'node:fs'
import { mkdir, open, rename, rm, statfs } from 'node:fs/promises'
import path from 'node:path'
import { Transform, type TransformCallback, type Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { OperationError } from '../core/errors'
import { withStepSignal } from './step-signal'

/**
 * Streaming archive helpers: tar | zstd into one file, with the sha256 and size of the output computed while it
 * is written (no second read). Every output goes to a temporary name next to the target and is renamed into
 * place only when complete and synced, so a failure — a full disk included — never leaves a partial file.
 */

/** What was written: the file, its size in bytes and its sha256, hashed while streaming. */
export interface WrittenFile {
  file: string
  size: number
  sha256: string
  durationMs: number
}

export interface ZstdOptions {
  /** zstd compression level (default 3: fast, ~the ratio of gzip -6 at several times its speed). */
  level?: number
  /** zstd worker threads (default 2). */
  threads?: number
  signal?: AbortSignal
}

export interface TarOptions extends ZstdOptions {
  /**
   * GNU tar exits 1 when a file changed while it was read. That archive is not a consistent copy, so by default
   * it is an error; set this for a directory that is known to be written to and where that is acceptable.
   */
  tolerateChangedFiles?: boolean
}

/** The disk that was to hold a file is full. The partial file has been removed. */
export class DiskFullError extends OperationError {
  override readonly name = 'DiskFullError'
  constructor(
    message: string,
    readonly dir: string
  ) {
    super(message, 'disk_full')
  }
}

/** Free and total bytes of the filesystem holding dir (or its nearest existing parent). */
export async function freeSpace(dir: string): Promise<{ freeBytes: number; totalBytes: number }> {
  let probe = path.resolve(dir)
  while (!existsSync(probe) && path.dirname(probe) !== probe) probe = path.dirname(probe)
  const s = await statfs(probe)
  return { freeBytes: s.bavail * s.bsize, totalBytes: s.blocks * s.bsize }
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let v = n
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
}

/** sha256 of a file, streamed. */
export function sha256File(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    createReadStream(file)
      .on('data', chunk => hash.update(chunk))
      .on('error', (e: NodeJS.ErrnoException) =>
        reject(new Error(`cannot read ${file} to checksum it: ${e.message}`))
      )
      .on('end', () => resolve(hash.digest('hex')))
  })
}

/** A pass-through stream that hashes and counts what flows through it. */
class HashCounter extends Transform {
  private readonly hash = createHash('sha256')
  bytes = 0
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk)
    this.bytes += chunk.length
    done(null, chunk)
  }
  digest(): string {
    return this.hash.digest('hex')
  }
}

/** A child process in a pipeline: its exit becomes a promise that rejects, with its stderr, on failure. */
interface Stage {
  child: ChildProcess
  /** Undefined when the stage reads straight from the previous stage's output (`from`). */
  stdin: Writable | undefined
  stdout: Readable
  exited: Promise<void>
}

/**
 * Spawns one stage. With `from`, the previous stage's stdout becomes this one's stdin directly (the kernel pipe is
 * handed over and the parent's end closed): the bytes between two tools never pass through this process.
 */
function stage(
  argv: readonly string[],
  what: string,
  options: { okCodes?: number[]; signal?: AbortSignal; from?: Stage } = {}
): Stage {
  const [file, ...args] = argv
  if (!file) throw new Error('stage: empty argument list')
  const from = options.from?.stdout
  const child = spawn(file, args, {
    stdio: [from ?? 'pipe', 'pipe', 'pipe'],
    signal: withStepSignal(options.signal)
  })
  // The child holds its own copy of the pipe; ours must not read from it (nor be resumed when the writer exits).
  from?.destroy()
  const err: Buffer[] = []
  let errBytes = 0
  child.stderr?.on('data', (b: Buffer) => {
    if (errBytes < 64 * 1024) err.push(b)
    errBytes += b.length
  })
  const exited = new Promise<void>((resolve, reject) => {
    child.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT')
        reject(new Error(`required tool not found: ${file} — install it or put it on PATH`))
      else reject(new Error(`${what}: ${e.message}`))
    })
    child.on('close', (code, signal) => {
      const ok = options.okCodes ?? [0]
      if (code !== null && ok.includes(code)) return resolve()
      const tail = Buffer.concat(err).toString('utf8').trim().split('\n').slice(-5).join('\n')
      reject(
        new Error(
          `${what}: ${argv.join(' ')} ${signal ? `killed by ${signal}` : `exited ${code}`}${tail ? `: ${tail}` : ''}`
        )
      )
    })
  })
  // A stage that stops reading early makes the writer see EPIPE; the stage's own exit status tells the story.
  child.stdin?.on('error', () => undefined)
  return { child, stdin: child.stdin ?? undefined, stdout: child.stdout!, exited }
}

/** A full disk, however it surfaced: a DiskFullError, an ENOSPC errno, or a tool's stderr (pg_dump, tar, zstd). */
export function isNoSpace(e: unknown): boolean {
  if (e instanceof DiskFullError || isErrno(e, 'ENOSPC')) return true
  return e instanceof Error && /no space left on device|ENOSPC/i.test(e.message)
}

function isErrno(e: unknown, code: string): boolean {
  return typeof e === 'object' && e !== null && (e as NodeJS.ErrnoException).code === code
}

async function diskFull(outFile: string, cause: unknown): Promise<DiskFullError> {
  const dir = path.dirname(path.resolve(outFile))
  let space = ''
  try {
    const s = await freeSpace(dir)
    space = ` (${formatBytes(s.freeBytes)} free of ${formatBytes(s.totalBytes)})`
  } catch {
    space = ''
  }
  const why = cause instanceof Error ? cause.message : String(cause)
  return new DiskFullError(
    `no space left on device in ${dir}${space} while writing ${path.basename(outFile)} — the partial file was ` +
      `removed. Free space there: prune old backups (backout list shows them, the retention settings keep ` +
      `N backups or D days), old WAL archives or *.replaced-* data directories, or point backups.dir at a larger ` +
      `disk. (${why})`,
    dir
  )
}

/** A temporary name next to the target, so the final rename stays on one filesystem. */
function tempNameFor(outFile: string): string {
  return path.join(path.dirname(outFile), `.${path.basename(outFile)}.partial-${process.pid}-${Date.now()}`)
}

/**
 * Runs producer stages piped into each other, the last one's output hashed and written to outFile via a temp
 * file, renamed into place after fsync. On any failure the temp file is removed and the most telling error
 * (a full disk first, then the first failing stage) is thrown.
 */
async function writeThrough(
  stages: Stage[],
  source: Readable | undefined,
  outFile: string
): Promise<WrittenFile> {
  const started = Date.now()
  // Synchronously: the stages already run, and a child that exits before its stdout is piped loses its output
  // (Node resumes unconsumed stdio on exit) — a tar of a small directory is one write and done.
  mkdirSync(path.dirname(outFile), { recursive: true })
  const tmp = tempNameFor(outFile)
  const hasher = new HashCounter()
  const out = createWriteStream(tmp, { flags: 'wx', mode: 0o600 })
  const links: Promise<unknown>[] = []
  const first = stages[0]
  if (source && first?.stdin) links.push(pipeline(source, first.stdin))
  for (let i = 0; i + 1 < stages.length; i++) {
    const a = stages[i]
    const b = stages[i + 1]
    if (a && b?.stdin) links.push(pipeline(a.stdout, b.stdin))
  }
  const last = stages[stages.length - 1]
  const tail: Readable | undefined = last ? last.stdout : source
  if (!tail) throw new Error('writeThrough: nothing to write')
  links.push(pipeline(tail, hasher, out))
  const results = await Promise.allSettled([...links, ...stages.map(s => s.exited)])
  const failures = results
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    .map(r => r.reason as unknown)
  if (failures.length === 0) {
    try {
      const fh = await open(tmp, 'r')
      try {
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(tmp, outFile)
    } catch (e) {
      failures.push(e)
    }
  }
  if (failures.length > 0) {
    for (const s of stages) if (s.child.exitCode === null) s.child.kill('SIGTERM')
    await rm(tmp, { force: true })
    const full = failures.find(isNoSpace)
    if (full) throw await diskFull(outFile, full)
    // Prefer a process's own complaint (it has stderr) over the EPIPE its death caused downstream.
    const fromStage = failures.find(
      e =>
        e instanceof Error &&
        !isErrno(e, 'EPIPE') &&
        !/EPIPE|ERR_STREAM_PREMATURE_CLOSE/.test(String((e as NodeJS.ErrnoException).code))
    )
    const chosen = fromStage ?? failures[0]
    throw chosen instanceof Error ? chosen : new Error(String(chosen))
  }
  const size = statSync(outFile).size
  return { file: outFile, size, sha256: hasher.digest(), durationMs: Date.now() - started }
}

function zstdArgs(options: ZstdOptions): string[] {
  const level = options.level ?? 3
  const threads = options.threads ?? 2
  if (!Number.isInteger(level) || level < 1 || level > 19) throw new Error(`zstd level ${level}: use 1–19`)
  if (!Number.isInteger(threads) || threads < 0)
    throw new Error(`zstd threads ${threads}: use 0 (auto) or more`)
  return ['zstd', '-q', `-T${threads}`, `-${level}`, '-c']
}

/**
 * Archives srcDir (its contents, as ./…) into outFile as tar compressed with zstd, hashing the output as it is
 * written. Ownership and permissions are kept (GNU tar, numeric owners).
 */
export async function tarZstd(
  srcDir: string,
  outFile: string,
  options: TarOptions = {}
): Promise<WrittenFile> {
  if (!existsSync(srcDir) || !statSync(srcDir).isDirectory())
    throw new Error(`cannot archive ${srcDir}: not a directory`)
  const tar = stage(['tar', '-C', srcDir, '--numeric-owner', '-cf', '-', '.'], `archiving ${srcDir}`, {
    okCodes: options.tolerateChangedFiles ? [0, 1] : [0],
    signal: options.signal
  })
  const zstd = stage(zstdArgs(options), `compressing ${srcDir} into ${outFile}`, {
    signal: options.signal,
    from: tar
  })
  return writeThrough([tar, zstd], undefined, outFile)
}

export interface ExtractResult {
  /** sha256 and size of the archive as read (hashed while extracting). */
  sha256: string
  size: number
  durationMs: number
}

/**
 * Extracts a tar.zst archive into destDir (created if missing), hashing the archive as it is read. A corrupt
 * archive fails (zstd checks its frame checksum). Pass `members` to extract only those paths (e.g. ./toc.dat);
 * the whole archive is still read and checked.
 */
export async function untarZstd(
  file: string,
  destDir: string,
  options: { members?: string[]; signal?: AbortSignal } = {}
): Promise<ExtractResult> {
  const started = Date.now()
  if (!existsSync(file)) throw new Error(`cannot extract ${file}: no such file`)
  await mkdir(destDir, { recursive: true })
  const hasher = new HashCounter()
  const zstd = stage(['zstd', '-q', '-d', '-c'], `decompressing ${file}`, { signal: options.signal })
  const tar = stage(
    [
      'tar',
      '-C',
      destDir,
      '--numeric-owner',
      '-xf',
      '-',
      ...(options.members ? ['--', ...options.members] : [])
    ],
    `extracting ${file} into ${destDir}`,
    { signal: options.signal, from: zstd }
  )
  const input = zstd.stdin
  if (!input) throw new Error('untarZstd: zstd has no stdin')
  const results = await Promise.allSettled([
    pipeline(createReadStream(file), hasher, input),
    zstd.exited,
    tar.exited
  ])
  const failures = results
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    .map(r => r.reason as unknown)
  if (failures.length > 0) {
    for (const s of [zstd, tar]) if (s.child.exitCode === null) s.child.kill('SIGTERM')
    const full = failures.find(isNoSpace)
    if (full) throw await diskFull(path.join(destDir, path.basename(file)), full)
    const chosen =
      failures.find(e => e instanceof Error && /decompressing|extracting|not found/.test(e.message)) ??
      failures[0]
    const msg = chosen instanceof Error ? chosen.message : String(chosen)
    throw new Error(`cannot extract ${file}: ${msg}`)
  }
  return { sha256: hasher.digest(), size: hasher.bytes, durationMs: Date.now() - started }
}

/** Compresses one file with zstd into outFile (temp + rename), hashing the output while writing. */
export async function zstdFile(
  inFile: string,
  outFile: string,
  options: ZstdOptions = {}
): Promise<WrittenFile> {
  if (!existsSync(inFile)) throw new Error(`cannot compress ${inFile}: no such file`)
  const zstd = stage(zstdArgs(options), `compressing ${inFile}`, { signal: options.signal })
  return writeThrough([zstd], createReadStream(inFile), outFile)
}

/** Decompresses a .zst file into outFile (temp + rename), hashing the decompressed output while writing. */
export async function unzstdFile(
  inFile: string,
  outFile: string,
  options: { signal?: AbortSignal } = {}
): Promise<WrittenFile> {
  if (!existsSync(inFile)) throw new Error(`cannot decompress ${inFile}: no such file`)
  const zstd = stage(['zstd', '-q', '-d', '-c'], `decompressing ${inFile}`, { signal: options.signal })
  return writeThrough([zstd], createReadStream(inFile), outFile)
}
