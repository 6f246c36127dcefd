import { randomBytes } from 'node:crypto'
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  copyFileSync
} from 'node:fs'
import { hostname } from 'node:os'
import path from 'node:path'
import { UserError } from '../core/errors'
import { sanitizeLine } from '../core/sanitize'
import { sha256File } from './archive'
import {
  type Manifest,
  type ManifestEntry,
  MANIFEST_MAX_BYTES,
  MANIFEST_SCHEMA,
  isBackupId,
  manifestProblems,
  manifestShapeProblem,
  sealManifest,
  sealProblem,
  unlistedReferences,
  withoutSeal
} from '../core/manifest'

/**
 * A backup's manifest.json: the manifest, why it cannot be used (too large, not JSON, malformed), or undefined when
 * there is none (a directory being deleted, or not a backup).
 */
function readManifest(file: string): Manifest | string | undefined {
  let size: number
  try {
    size = statSync(file).size
  } catch {
    return undefined
  }
  if (size > MANIFEST_MAX_BYTES)
    return `is ${(size / 1048576).toFixed(1)} MiB, more than the ${MANIFEST_MAX_BYTES / 1048576} MiB a manifest may be — not read`
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'))
  } catch (e) {
    return `is not valid JSON (${e instanceof Error ? e.message : String(e)}; truncated or edited)`
  }
  return manifestShapeProblem(parsed) ?? (parsed as Manifest)
}

/**
 * Where the key that seals manifests comes from: backups.sealKey when set (one key shared by the hosts that restore
 * each other's backups), else a key generated on first use into `file` (state.dir/seal.key, mode 0600) — outside
 * the backup directory, so whoever can edit a backup cannot reseal its manifest.
 */
export interface SealKeySource {
  key?: string
  file: string
}

export interface BackupInfo {
  id: string
  dir: string
  manifest: Manifest
  sizeBytes: number
}

export { sha256File }

function walk(dir: string, base = dir): string[] {
  const out: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name)
    if (entry.isDirectory()) out.push(...walk(full, base))
    else if (entry.isFile()) out.push(path.relative(base, full))
  }
  return out.sort()
}

/** A backup being written: files go into `<id>.partial/`, which becomes `<id>/` only at commit. */
export interface BackupWriter {
  id: string
  /** The directory to write files into. */
  dir: string
  writeText(relPath: string, text: string): void
  copyIn(relPath: string, source: string): void
  /**
   * Records the size and sha256 of a file already written into the backup by a stream that hashed it as it wrote
   * (tarZstd, zstdFile), so that commit() need not read it again. commit() still checks the size on disk and
   * hashes the file itself when it differs; a file that was never recorded is hashed at commit.
   */
  addHashed(relPath: string, hashed: { size: number; sha256: string }): void
  /**
   * Writes manifest.json last (size and sha256 of every file: as recorded by addHashed, else read and hashed now),
   * then renames the directory into place.
   */
  commit(meta: Omit<Manifest, 'schema' | 'id' | 'host' | 'files' | 'createdAt'>): Promise<BackupInfo>
  abort(): void
}

/** `<id>.partial` directories this process is writing now: never taken for a killed snapshot's leftovers. */
const writing = new Set<string>()

/** The backup directory: one directory per backup id, each complete only once its manifest exists. */
export class BackupStore {
  /** Without a seal source, manifests are neither sealed nor checked for a seal (a store opened by a library user). */
  constructor(
    readonly root: string,
    private readonly sealSource?: SealKeySource,
    /** The service the backups must be of (a manifest of another service is not trusted). */
    private readonly service?: string
  ) {}

  /** The seal key; with create, generated (and kept) when there is none yet. */
  private sealKey(create: boolean): string | undefined {
    const src = this.sealSource
    if (!src) return undefined
    if (src.key) return src.key
    if (existsSync(src.file)) return readFileSync(src.file, 'utf8').trim() || undefined
    if (!create) return undefined
    mkdirSync(path.dirname(src.file), { recursive: true })
    try {
      writeFileSync(src.file, randomBytes(32).toString('hex') + '\n', { mode: 0o600, flag: 'wx' })
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e
    }
    return readFileSync(src.file, 'utf8').trim()
  }

  /** manifest.json with a fresh seal (when sealing is on), written to a temp name and renamed over the old one. */
  private writeManifest(dir: string, manifest: Manifest): Manifest {
    const key = this.sealKey(true)
    const rest = withoutSeal(manifest)
    const sealed: Manifest = key ? { ...rest, seal: sealManifest(rest, key) } : rest
    const file = path.join(dir, 'manifest.json')
    writeFileSync(`${file}.tmp`, JSON.stringify(sealed, null, 2) + '\n')
    renameSync(`${file}.tmp`, file)
    return sealed
  }

  /** A path inside the store for an id, refusing anything that is not a backup id (no traversal). */
  pathOf(id: string): string {
    if (!isBackupId(id))
      throw new UserError(
        `"${id.slice(0, 80)}" is not a backup id — expected YYYYMMDD-HHMMSS or rollback-safety-YYYYMMDD-HHMMSS (backout list shows them)`,
        'bad_target'
      )
    return path.join(this.root, id)
  }

  begin(id: string): BackupWriter {
    const final = this.pathOf(id)
    if (existsSync(final)) throw new UserError(`backup ${id} already exists in ${this.root}`, 'backup_exists')
    const dir = `${final}.partial`
    rmSync(dir, { recursive: true, force: true })
    mkdirSync(dir, { recursive: true })
    writing.add(dir)
    const hashed = new Map<string, { size: number; sha256: string }>()
    return {
      id,
      dir,
      writeText(rel, text) {
        const file = path.join(dir, rel)
        mkdirSync(path.dirname(file), { recursive: true })
        writeFileSync(file, text)
        hashed.delete(path.normalize(rel))
      },
      copyIn(rel, source) {
        const file = path.join(dir, rel)
        mkdirSync(path.dirname(file), { recursive: true })
        copyFileSync(source, file)
        hashed.delete(path.normalize(rel))
      },
      addHashed(rel, h) {
        if (!/^[0-9a-f]{64}$/.test(h.sha256) || !Number.isSafeInteger(h.size) || h.size < 0)
          throw new Error(`addHashed ${rel}: not a size and sha256`)
        hashed.set(path.normalize(rel), { size: h.size, sha256: h.sha256 })
      },
      commit: async meta => {
        const files: ManifestEntry[] = []
        for (const rel of walk(dir)) {
          const full = path.join(dir, rel)
          const size = statSync(full).size
          const known = hashed.get(rel)
          // Hashed while it was written (and fsynced, renamed into place): trusted when the size still agrees.
          const sha256 = known && known.size === size ? known.sha256 : await sha256File(full)
          files.push({ path: rel, size, sha256 })
        }
        const manifest = this.writeManifest(dir, {
          schema: MANIFEST_SCHEMA,
          id,
          host: hostname(),
          createdAt: new Date().toISOString(),
          ...meta,
          files
        })
        renameSync(dir, final)
        writing.delete(dir)
        return { id, dir: final, manifest, sizeBytes: files.reduce((s, f) => s + f.size, 0) }
      },
      abort() {
        writing.delete(dir)
        rmSync(dir, { recursive: true, force: true })
      }
    }
  }

  /**
   * Every backup directory with a manifest.json: the well-formed ones (whether or not their seal holds) and the
   * ones whose manifest cannot be used (too large, not JSON, not the shape of a manifest), with why.
   */
  private scan(): { found: BackupInfo[]; bad: { id: string; why: string }[] } {
    const found: BackupInfo[] = []
    const bad: { id: string; why: string }[] = []
    if (!existsSync(this.root)) return { found, bad }
    for (const name of readdirSync(this.root).filter(isBackupId).sort()) {
      const dir = path.join(this.root, name)
      const read = readManifest(path.join(dir, 'manifest.json'))
      if (read === undefined) continue
      if (typeof read === 'string') bad.push({ id: name, why: `manifest.json ${read}` })
      else
        found.push({ id: name, dir, manifest: read, sizeBytes: read.files.reduce((s, f) => s + f.size, 0) })
    }
    found.sort((a, b) => Date.parse(b.manifest.createdAt) - Date.parse(a.manifest.createdAt))
    return { found, bad }
  }

  /**
   * Why a well-formed backup cannot be trusted (undefined when it can): its manifest names another backup id (a
   * backup copied over another), another service, or its seal does not hold (when sealing is on).
   */
  private trustProblem(info: BackupInfo): string | undefined {
    const m = info.manifest
    const accept = `if you trust it, \`backout seal ${info.id}\` checks its files and seals it as ${info.id}`
    if (m.id !== info.id)
      return `manifest.json: says it is backup ${m.id}, but it is in ${info.dir} — a backup copied under another id; ${accept}`
    if (this.service !== undefined && m.service !== this.service)
      return `manifest.json: a backup of service ${sanitizeLine(m.service).slice(0, 64)}, not ${this.service}; ${accept}`
    return this.sealSource ? sealProblem(m, this.sealKey(false)) : undefined
  }

  /**
   * Complete, well-formed and trusted (sealed, when sealing is on) backups, newest first: the only ones retention,
   * default targets and listings use. Partial ones are never listed; the others are named by unreadable().
   */
  list(): BackupInfo[] {
    return this.scan().found.filter(b => this.trustProblem(b) === undefined)
  }

  /**
   * The backup with this id — trusted or not: verify() says what is wrong with an untrusted one — or a UserError
   * that lists the ones there are (the runbook's common issue).
   */
  get(id: string): BackupInfo {
    const dir = this.pathOf(id)
    const { found: all, bad } = this.scan()
    const found = all.find(b => b.id === id)
    if (found) return found
    const damaged = bad.find(b => b.id === id)
    if (damaged)
      throw new UserError(
        `backup ${id} is damaged: ${dir}/${damaged.why}, so none of its files can be verified — pick ` +
          `another backup (backout list)`,
        'backup_corrupt'
      )
    const there = this.list()
      .slice(0, 10)
      .map(b => `  ${b.id}  (${b.manifest.kind}, ${b.manifest.versions.live ?? '?'})`)
    throw new UserError(
      `backup not found: ${id} (looked for ${dir}/manifest.json).\n` +
        (there.length
          ? `Backups in ${this.root}:\n${there.join('\n')}`
          : `There are no backups in ${this.root}.`) +
        '\nPick one of these, or set backups.dir in backout.yml if the backups live elsewhere.',
      'backup_not_found'
    )
  }

  /**
   * Backup directories that are not listed, with why: a manifest.json that cannot be read or is malformed, or one
   * that cannot be trusted (unsealed, sealed by another key, copied under another id). Never used for anything.
   */
  unreadable(): { id: string; why: string }[] {
    const { found, bad } = this.scan()
    const untrusted = found.flatMap(b => {
      const why = this.trustProblem(b)
      return why ? [{ id: b.id, why }] : []
    })
    return [...bad, ...untrusted].sort((a, b) => a.id.localeCompare(b.id))
  }

  /**
   * The path of `rel` inside a backup when its manifest lists it, else undefined: what a restore may take from the
   * backup directory — a file planted there afterwards is not in the (sealed) manifest, so it is never restored.
   */
  manifestFile(backup: BackupInfo, rel: string): string | undefined {
    const want = path.normalize(rel)
    return backup.manifest.files.some(f => path.normalize(f.path) === want)
      ? path.join(backup.dir, want)
      : undefined
  }

  /** `<id>.partial` directories left by snapshots that were killed (only ever there while a snapshot runs). */
  partials(): string[] {
    if (!existsSync(this.root)) return []
    return readdirSync(this.root)
      .filter(n => n.endsWith('.partial') && isBackupId(n.slice(0, -'.partial'.length)))
      .map(n => path.join(this.root, n))
      .filter(dir => !writing.has(dir))
  }

  private async fileProblems(info: BackupInfo, hashed?: ReadonlyMap<string, string>): Promise<string[]> {
    const actual = new Map<string, ManifestEntry | undefined>()
    for (const want of info.manifest.files) {
      const full = path.join(info.dir, want.path)
      if (!existsSync(full)) continue
      const sha256 = hashed?.get(want.path) ?? (await sha256File(full))
      actual.set(want.path, { path: want.path, size: statSync(full).size, sha256 })
    }
    return manifestProblems(info.manifest, actual)
  }

  /**
   * Checks the manifest's seal (when sealing is on) and every file against the manifest; returns the problems
   * (empty when the backup is intact). `hashed`: sha256 of files already read in full since (by a check that
   * streamed them through a hash, e.g. while extracting), so they are not read again.
   */
  async verify(id: string, options: { hashed?: ReadonlyMap<string, string> } = {}): Promise<string[]> {
    const info = this.get(id)
    const trust = this.trustProblem(info)
    return [
      ...(trust ? [trust] : []),
      ...unlistedReferences(info.manifest),
      ...(await this.fileProblems(info, options.hashed))
    ]
  }

  /**
   * Seals a backup's manifest with this host's key, after checking every file against it: how an operator accepts a
   * backup made elsewhere (or a manifest they edited). Refuses a backup whose files do not match.
   */
  async seal(id: string): Promise<BackupInfo> {
    if (!this.sealSource) throw new Error('this backup store has no seal key source')
    const info = this.get(id)
    const problems = await this.fileProblems(info)
    if (problems.length)
      throw new UserError(
        `backup ${id} is damaged, not sealed: ${problems.slice(0, 5).join('; ')} — pick another backup`,
        'backup_corrupt'
      )
    const accepted: Manifest = {
      ...info.manifest,
      id: info.id,
      ...(this.service !== undefined ? { service: this.service } : {}),
      host: info.manifest.host ?? hostname()
    }
    return { ...info, manifest: this.writeManifest(info.dir, accepted) }
  }
}
