import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { UserError, messageOf } from '../core/errors'
import type { ManifestData } from '../core/manifest'
import { formatBackupId, type RunRecord } from '../core/run-record'
import { DiskFullError, formatBytes, freeSpace, isNoSpace, tarZstd } from '../drivers/archive'
import type { BackupInfo } from '../drivers/backup-store'
import { runCommand } from '../drivers/exec'
import { acquireLock } from '../drivers/lock'
import { processesUsing, stopProcesses } from '../drivers/orphans'
import { captureDatabase, liveDatabaseBytes } from './database-backup'
import type { Step } from './run-steps'
import { activeColor, answeredBy, probeThroughNginx, type Service } from './service'
import { sleep } from '../drivers/sleep'

/** The path a captured config file takes inside a backup: config/ + its absolute path. */
export function configEntryPath(file: string): string {
  return path.join('config', path.resolve(file).replace(/^\/+/, ''))
}

async function du(dir: string): Promise<number> {
  const res = await runCommand(['du', '-sb', dir])
  return res.code === 0 ? Number(res.stdout.split('\t')[0]) : 0
}

export interface SnapshotOptions {
  /** A safety backup, taken before a rollback: rollback-safety-<id>, and light (see takeSnapshot). */
  safety: boolean
  /**
   * Level 3's emergency snapshot of the bad state: a safety backup that records, rather than fails on, a database
   * that cannot be captured (the restore keeps the broken original aside anyway).
   */
  emergency?: boolean
  signal?: AbortSignal
}

/**
 * Takes a backup of the service as it is now: the state of both targets (containers.json), the versions
 * (images.txt), every config file and the nginx upstream, the data directories (data/<name>.tar.zst), the
 * database (PostgreSQL: database/dump.tar.zst always, database/base.tar.zst where the cluster's data directory is
 * reachable; SQLite: database/app.db by the online backup API), schema_version.txt, timestamp.txt, and
 * manifest.json last. Before writing, the free disk is checked against an estimate.
 *
 * A safety backup (taken before any rollback) is named rollback-safety-<id>, recorded in
 * state/last_safety_backup, and "light" as the runbook says: everything above except the physical base backup —
 * the logical dump is what a forensic look or a Level 2 fallback needs, and the base backup is the slow, large part.
 * Retention (pruneBackups) runs after every snapshot.
 */
export async function takeSnapshot(service: Service, options: SnapshotOptions): Promise<BackupInfo> {
  // The service lock (reentrant: a rollback's safety backup runs under the rollback's): one snapshot at a time, and
  // none while a rollback changes things. A second one exits 3.
  const { config, log } = service
  const lock = acquireLock(
    config.state.dir,
    config.service,
    options.safety ? 'safety snapshot' : 'snapshot',
    h =>
      log.warn(
        `took over a stale lock${h ? ` left by PID ${h.pid} on ${h.host} (${h.operation}, started ${h.startedAt})` : ''}`
      )
  )
  try {
    await removeLeftovers(service)
    return await snapshotUnderLock(service, options)
  } finally {
    lock.release()
  }
}

/**
 * What killed snapshots left: their `<id>.partial` directories, and whatever still writes into one (an orphan
 * pg_basebackup, tar, zstd) — stopped first. Runs under the lock, so no live snapshot owns them.
 */
export async function removeLeftovers(service: Service): Promise<string[]> {
  const removed: string[] = []
  for (const dir of service.store.partials()) {
    const pids = processesUsing(dir)
    if (pids.length) {
      await stopProcesses(pids)
      service.log.warn(
        `stopped ${pids.length} process(es) still writing into ${dir} (PID ${pids.join(', ')}), left by a killed snapshot`
      )
    }
    rmSync(dir, { recursive: true, force: true })
    service.log.warn(`removed ${dir}, left by a snapshot that did not finish`)
    removed.push(dir)
  }
  return removed
}

async function snapshotUnderLock(service: Service, options: SnapshotOptions): Promise<BackupInfo> {
  const { config, runtime, store, nginx } = service
  const light = options.safety
  await checkDiskForSnapshot(service, light)
  let now = new Date()
  let id = `${options.safety ? 'rollback-safety-' : ''}${formatBackupId(now)}`
  // Ids have one-second resolution: wait for the next second rather than collide.
  while (existsSync(store.pathOf(id)) || existsSync(`${store.pathOf(id)}.partial`)) {
    await sleep(1000 - (Date.now() % 1000) + 5)
    now = new Date()
    id = `${options.safety ? 'rollback-safety-' : ''}${formatBackupId(now)}`
  }
  const writer = store.begin(id)
  try {
    const live = await probeThroughNginx(config)
    const liveColor = answeredBy(config, live) ?? activeColor(service)
    const state = {
      runtime: runtime.kind,
      active: activeColor(service) ?? null,
      upstream: nginx.activeUpstream() ?? null,
      targets: {
        blue: { version: config.targets.blue.version, ...(await runtime.state('blue')) },
        green: { version: config.targets.green.version, ...(await runtime.state('green')) }
      }
    }
    writer.writeText('containers.json', JSON.stringify(state, null, 2) + '\n')
    // One line per target: `<service>-<color>:<version>`, then, for container runtimes, one line per image
    // with the digest or image id that pins it (Level 2 deploys exactly that image).
    const imageLines: string[] = []
    for (const c of ['blue', 'green'] as const) {
      const tag = `${config.service}-${c}:${config.targets[c].version}`
      const images = runtime.images ? await runtime.images(c) : []
      if (!images.length) imageLines.push(tag)
      for (const img of images) imageLines.push(`${tag} ${img.service} ${img.image} ${img.pin}`)
    }
    writer.writeText('images.txt', imageLines.join('\n') + '\n')
    writer.writeText('timestamp.txt', `${Math.floor(now.getTime() / 1000)}\n`)
    for (const file of [...config.configFiles, config.nginx.upstreamFile]) {
      if (existsSync(file)) writer.copyIn(configEntryPath(file), file)
    }
    const data: ManifestData[] = []
    for (const d of config.data) {
      if (!existsSync(d.path)) {
        service.log.warn(`data directory ${d.name} (${d.path}) does not exist: not in this backup`)
        continue
      }
      const file = `data/${d.name}.tar.zst`
      const bytes = await du(d.path)
      const written = await tarZstd(d.path, path.join(writer.dir, file), {
        tolerateChangedFiles: options.safety,
        signal: options.signal
      })
      writer.addHashed(file, written)
      const marker = config.corruptionMarker
      const inside = marker !== undefined && path.resolve(marker).startsWith(path.resolve(d.path) + path.sep)
      data.push({
        name: d.name,
        path: d.path,
        file,
        bytes,
        ...(inside ? { corruptionMarker: existsSync(marker) } : {})
      })
    }
    const database = await captureDatabase(service, writer.dir, {
      light,
      tolerateFailure: options.emergency,
      signal: options.signal,
      hashed: (rel, written) => writer.addHashed(rel, written)
    })
    if (database?.schemaVersion) writer.writeText('schema_version.txt', `${database.schemaVersion}\n`)
    const info = await writer.commit({
      service: config.service,
      kind: options.safety ? 'safety' : 'snapshot',
      versions: {
        live: liveColor ? config.targets[liveColor].version : undefined,
        blue: config.targets.blue.version,
        green: config.targets.green.version
      },
      ...(database?.schemaVersion ? { schemaVersion: database.schemaVersion } : {}),
      ...(database?.rowCounts ? { rowCounts: database.rowCounts } : {}),
      ...(light ? { light } : {}),
      data,
      ...(database ? { database } : {})
    })
    if (options.safety) {
      mkdirSync(config.state.dir, { recursive: true })
      writeFileSync(path.join(config.state.dir, 'last_safety_backup'), `${info.dir}\n`)
    }
    try {
      const pruned = pruneBackups(service)
      if (pruned.deleted.length) service.log.info(`retention: deleted ${pruned.deleted.join(', ')}`)
    } catch (e) {
      service.log.warn(`retention: ${messageOf(e)}`)
    }
    return info
  } catch (e) {
    writer.abort()
    if (isNoSpace(e)) {
      const { freeBytes } = await freeSpace(config.backups.dir).catch(() => ({ freeBytes: -1 }))
      throw new DiskFullError(
        `no space left on device in ${config.backups.dir} while writing backup ${id}` +
          (freeBytes >= 0
            ? ` (${formatBytes(freeBytes)} free now that the partial backup was removed)`
            : '') +
          `: nothing was listed and the service was not touched. ${pruneAdvice(service)} (${messageOf(e)})`,
        config.backups.dir
      )
    }
    throw e
  }
}

/** What the operator may delete to make room: the backups retention would delete, then the oldest unprotected. */
function pruneAdvice(service: Service): string {
  const { config } = service
  const plan = retentionPlan(service)
  const candidates = [...plan.deleted, ...plan.prunable.filter(id => !plan.deleted.includes(id)).slice(0, 5)]
  return (
    (candidates.length
      ? `Backups that may be pruned: ${candidates.join(', ')} — delete them (rm -r ${config.backups.dir}/<id>) or lower backups.keep / backups.keepDays`
      : 'No backup may be pruned (only the newest good snapshot and the newest safety backup are left)') +
    ', or point backups.dir at a larger disk.'
  )
}

/** What a snapshot will roughly take before compression: the data dirs and the database (base backup unless light). */
export async function estimateSnapshotBytes(
  service: Service,
  light: boolean
): Promise<{ total: number; data: number; dump: number; base: number }> {
  let data = 0
  for (const d of service.config.data) if (existsSync(d.path)) data += await du(d.path)
  const db = await liveDatabaseBytes(service.config)
  const base = light ? 0 : db.base
  return { total: data + db.dump + base, data, dump: db.dump, base }
}

/**
 * Refuses (UserError, nothing written) when backups.dir lacks room for the estimate plus 10 %, naming the
 * backups that retention would delete and the oldest others that could go.
 */
async function checkDiskForSnapshot(service: Service, light: boolean): Promise<void> {
  const { config } = service
  const need = await estimateSnapshotBytes(service, light)
  const { freeBytes } = await freeSpace(config.backups.dir)
  if (need.total * 1.1 <= freeBytes) return
  throw new UserError(
    `not enough disk for a ${light ? 'safety ' : ''}backup in ${config.backups.dir}: about ${formatBytes(need.total * 1.1)} ` +
      `needed (data dirs ${formatBytes(need.data)}, database ${formatBytes(need.dump)}` +
      `${need.base ? `, base backup ${formatBytes(need.base)}` : ''}), ${formatBytes(freeBytes)} free. ` +
      pruneAdvice(service),
    'disk_full'
  )
}

export interface RetentionPlan {
  /** What retention deletes: beyond the newest backups.keep and older than backups.keepDays. */
  deleted: string[]
  /** Every backup that is not protected, oldest first: what an operator may delete when the disk is short. */
  prunable: string[]
  /** Never deleted: the newest snapshot, the newest safety backup, and one an interrupted Level 3 still needs. */
  protected: string[]
}

function inUseByLevel3(service: Service): string[] {
  const file = path.join(service.config.state.dir, 'level3-journal.json')
  if (!existsSync(file)) return []
  try {
    const j = JSON.parse(readFileSync(file, 'utf8')) as { backupId?: string; safetyBackupId?: string }
    return [j.backupId, j.safetyBackupId].filter((x): x is string => typeof x === 'string')
  } catch {
    return []
  }
}

export function retentionPlan(service: Service, now = new Date()): RetentionPlan {
  const { keep, keepDays } = service.config.backups
  const all = service.store.list() // newest first
  const newestSnapshot = all.find(b => b.manifest.kind === 'snapshot')?.id
  const newestSafety = all.find(b => b.manifest.kind === 'safety')?.id
  const prot = new Set(
    [newestSnapshot, newestSafety, ...inUseByLevel3(service)].filter((x): x is string => !!x)
  )
  const cutoff = now.getTime() - keepDays * 86_400_000
  const deleted: string[] = []
  const prunable: string[] = []
  all.forEach((b, i) => {
    if (prot.has(b.id)) return
    prunable.push(b.id)
    if (i >= keep && Date.parse(b.manifest.createdAt) < cutoff) deleted.push(b.id)
  })
  return { deleted: deleted.reverse(), prunable: prunable.reverse(), protected: [...prot] }
}

/**
 * Retention: deletes the backups beyond the newest backups.keep that are also older than backups.keepDays — a
 * backup stays while either rule keeps it — but never the newest snapshot, the newest safety backup, nor one an
 * interrupted Level 3 still needs. The manifest goes first, so a half-deleted backup is never listed.
 */
export function pruneBackups(service: Service, now = new Date()): { deleted: string[]; kept: number } {
  const plan = retentionPlan(service, now)
  for (const id of plan.deleted) {
    const dir = service.store.pathOf(id)
    rmSync(path.join(dir, 'manifest.json'), { force: true })
    rmSync(dir, { recursive: true, force: true })
  }
  return { deleted: plan.deleted, kept: service.store.list().length }
}

/**
 * The runbook's "Safety backup" step, shared by the levels: a rollback-safety-<id> backup of the state as
 * it is, before anything changes. budgetSeconds is the level's share for it.
 */
export function safetyBackupStep(service: Service, record: RunRecord, budgetSeconds: number): Step {
  return {
    name: 'Safety backup',
    kind: 'write',
    budgetSeconds,
    describe: () =>
      `write a safety backup of the current state to ${service.config.backups.dir}/rollback-safety-<id>`,
    async run() {
      const info = await takeSnapshot(service, { safety: true })
      record.safetyBackupId = info.id
      return `${info.id} (${info.manifest.files.length} files, ${info.sizeBytes} bytes, checksummed)`
    }
  }
}
