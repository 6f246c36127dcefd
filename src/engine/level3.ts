import {
  existsSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  copyFileSync,
  mkdirSync
} from 'node:fs'
import path from 'node:path'
import { type Color, type Config, otherColor } from '../core/config'
import { OperationError, UserError, messageOf } from '../core/errors'
import { formatBackupId } from '../core/run-record'
import { formatBytes, freeSpace, untarZstd } from '../drivers/archive'
import type { BackupInfo } from '../drivers/backup-store'
import { databasePing, integrityCheck, pgQuery, tableCounts } from '../drivers/database'
import { tableCounts as sqliteTableCounts } from '../drivers/sqlite'
import { rowCounts, schemaVersion } from '../drivers/postgres-backup'
import { asSystemd, planCheckout, shortCommit, type PlannedCheckout } from './checkout'
import { confirmServedBy } from './level1'
import {
  checkDatabaseBackup,
  describeRestorePath,
  extractDrill,
  localCluster,
  convergeInterruptedRestore,
  interruptedRestorePending,
  restoreDatabase,
  restoresPhysically,
  type DatabaseRestoreResult
} from './database-backup'
import type { LevelSteps } from './rollback-request'
import type { Step } from './run-steps'
import { activeColor, targetReady, type Service } from './service'
import { configEntryPath, estimateSnapshotBytes, takeSnapshot } from './snapshot'
import { finalValidationStep } from './final-validation'
import { isPostBreach } from './security-hold'
import { sleep } from '../drivers/sleep'
import { unusedPath } from '../drivers/paths'
import { foreignBackup } from '../drivers/sqlite-identity'
import { discardExtraction, manifestSha, prepareExtraction, readyExtraction } from './prepared'

/**
 * What an interrupted Level 3 leaves in state/: the recovery point and the emergency snapshot of the bad state,
 * so that a second run restores the same backup, reuses that snapshot (the state it would capture now is half
 * restored) and measures the data-loss window from when the first run began. Removed when a run completes.
 */
interface Level3Journal {
  runId: string
  backupId: string
  toTime?: string
  safetyBackupId?: string
  startedAt: string
}

const JOURNAL = 'level3-journal.json'

function readJournal(stateDir: string): Level3Journal | undefined {
  const file = path.join(stateDir, JOURNAL)
  if (!existsSync(file)) return undefined
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Level3Journal
  } catch {
    return undefined
  }
}

function writeJournal(stateDir: string, j: Level3Journal): void {
  mkdirSync(stateDir, { recursive: true })
  const file = path.join(stateDir, JOURNAL)
  writeFileSync(`${file}.tmp`, JSON.stringify(j, null, 2) + '\n')
  renameSync(`${file}.tmp`, file)
}

function nearestExisting(p: string): string {
  let probe = path.resolve(p)
  while (!existsSync(probe) && path.dirname(probe) !== probe) probe = path.dirname(probe)
  return probe
}

/**
 * Where the pre-flight check extracts a data archive: beside the data directory (so on its filesystem), kept for
 * the restore step, which renames it into place instead of extracting the archive a second time. A scratch copy:
 * the archive in the backup is only read. `${dir}.verified` holds the archive's sha256 once it extracted whole.
 */
function preparedDataDir(dataPath: string, backupId: string): string {
  return `${dataPath}.backout-data-${backupId}`
}

/** The prepared extraction of this archive, when one is there and complete. */
function readyDataDir(dataPath: string, b: BackupInfo, file: string): string | undefined {
  return readyExtraction(preparedDataDir(dataPath, b.id), manifestSha(b, file))
}

/**
 * Extracts a data archive beside its directory (reusing a complete earlier extraction of the same archive), the
 * archive hashed as it is read and required to match the manifest's sha256. Where the directory's parent does
 * not exist yet, only proves that the archive extracts (in a temp dir, removed) and returns undefined.
 */
async function prepareDataDir(
  dataPath: string,
  b: BackupInfo,
  file: string,
  hashed?: Map<string, string>
): Promise<string | undefined> {
  const archive = path.join(b.dir, file)
  const sha = manifestSha(b, file)
  if (!sha || !existsSync(path.dirname(dataPath))) {
    await extractDrill(archive, nearestExisting(path.dirname(dataPath)))
    return undefined
  }
  let read = ''
  try {
    return await prepareExtraction(archive, preparedDataDir(dataPath, b.id), sha, {
      hashed: h => {
        read = h
        hashed?.set(file, h)
      },
      check: () =>
        read === sha
          ? Promise.resolve()
          : Promise.reject(
              new Error(`its sha256 changed since the checksums were verified (${read}, manifest ${sha})`)
            )
    })
  } catch (e) {
    throw new OperationError(`${path.basename(file)} does not extract: ${messageOf(e)}`, 'backup_corrupt')
  }
}

/** Removes what prepareDataDir left. */
export function discardPreparedData(service: Service, backupId: string): void {
  for (const d of service.config.data) discardExtraction(preparedDataDir(d.path, backupId))
}

/** Replaces `file` with `source` atomically (a temp file beside it, then rename); false when already equal. */
function replaceFile(file: string, source: string): boolean {
  if (existsSync(file) && readFileSync(file).equals(readFileSync(source))) return false
  mkdirSync(path.dirname(file), { recursive: true })
  const tmp = `${file}.backout-restoring`
  copyFileSync(source, tmp)
  renameSync(tmp, file)
  return true
}

/**
 * Level 3, point-in-time recovery: the whole service back to a backup — data directories, database (physical with
 * WAL replay where possible, else logical; SQLite by the VBRPG runbook), configuration — then started, verified,
 * and the data lost measured. Everything that can be checked is checked before anything stops: any failure there
 * is a UserError (exit 2) with the service untouched — the runbook's circuit breakers.
 */
export const level3Steps: LevelSteps = (service, record, req) => {
  const { config, runtime, nginx, store, log } = service
  const db = config.database
  const interrupted = readJournal(config.state.dir)
  let backup: BackupInfo | undefined
  let color: Color = 'blue'
  let dbResult: DatabaseRestoreResult | undefined
  const need = (): BackupInfo => {
    if (!backup) throw new OperationError('internal: no recovery point chosen')
    return backup
  }
  const label = (c: Color): string => `${c} ${config.targets[c].version}`
  const systemd = asSystemd(runtime)
  /** systemd: the target colour's checkout then (pre-flight) and the commit the recovery point recorded for it. */
  let checkout: PlannedCheckout | undefined

  /** The emergency snapshot of an interrupted run of this recovery point, when it is still there. */
  const reusableSnapshot = (b: BackupInfo): string | undefined =>
    interrupted?.backupId === b.id &&
    interrupted.safetyBackupId &&
    existsSync(store.pathOf(interrupted.safetyBackupId))
      ? interrupted.safetyBackupId
      : undefined

  const steps: Step[] = [
    {
      name: 'Emergency assessment',
      kind: 'read',
      budgetSeconds: 180,
      describe: () =>
        'assess the damage (corruption marker, database, critical tables) and pick the recovery point',
      async run() {
        const damage: string[] = []
        const active = activeColor(service)
        record.from = active ? config.targets[active].version : 'unknown'
        damage.push(`nginx → ${active ? label(active) : (nginx.activeUpstream() ?? 'nothing')}`)
        if (config.corruptionMarker && existsSync(config.corruptionMarker))
          damage.push('corruption marker PRESENT')
        if (db) {
          const ping = await databasePing(db)
          damage.push(`database ${ping.ok ? 'answers' : `DOWN (${ping.detail})`}`)
          if (ping.ok && db.criticalTables.length) {
            const counts = await tableCounts(db, db.criticalTables).catch(() => ({}))
            damage.push(
              Object.entries(counts)
                .map(([t, n]) => `${t} ${n}`)
                .join(', ')
            )
          }
        }
        const id =
          req.target ?? (interrupted && interrupted.toTime === req.toTime ? interrupted.backupId : undefined)
        if (id) backup = store.get(id)
        else {
          // The newest snapshot of this database (a SQLite backup of another one is never picked); after a security
          // breach, a backup taken since may hold what the attacker left: never the default.
          backup = undefined
          for (const b of store.list())
            if (
              b.manifest.kind === 'snapshot' &&
              !isPostBreach(config, b) &&
              !(await foreignBackup(config.database, b))
            ) {
              backup = b
              break
            }
          if (!backup)
            throw new UserError(
              `there is no snapshot in ${config.backups.dir} to recover to — Level 3 needs one (backout snapshot takes one; ` +
                'backout list shows what there is; a safety backup can be named with --target)',
              'backup_not_found'
            )
        }
        record.backupId = backup.id
        record.to = backup.manifest.versions.live ?? 'unknown'
        const age = Math.round((Date.now() - Date.parse(backup.manifest.createdAt)) / 60000)
        const resumed =
          interrupted?.backupId === backup.id ? `; resuming the interrupted run ${interrupted.runId}` : ''
        return (
          `${damage.join('; ')}. Recovery point: ${backup.id} (${backup.manifest.kind}, live ${record.to}, ` +
          `schema ${backup.manifest.schemaVersion ?? '?'}, ${age} min old)${req.toTime ? `, then WAL to ${req.toTime}` : ''}${resumed}`
        )
      }
    },
    {
      name: 'Pre-flight checks',
      kind: 'read',
      budgetSeconds: 120,
      describe: () =>
        'checksums, dump readable, base backup verifies, disk space, WAL reaches --to-time' +
        (systemd ? ", the target's checkout can move to the recorded commit" : ''),
      async run() {
        const b = need()
        // A resumed run reuses the interrupted run's emergency snapshot: the database it finds may be the one that run
        // stopped or half restored.
        // An interrupted restore's swap is put back first: until then its cluster may have no data directory, and
        // the database is not expected to answer (a dry run changes nothing, so it leaves the swap to the real run).
        const swapPending = interruptedRestorePending(config)
        if (swapPending && !req.dryRun) await convergeInterruptedRestore(service, log)
        if (!reusableSnapshot(b) && !(swapPending && req.dryRun))
          await databaseReachable(config, req.allowUncapturedDatabase === true, log)
        // The reads that take time run at once (2 vCPUs: zstd and tar in children, pg_verifybackup, the hashing in
        // this process): the data archives extracted beside their directories, and the database capture (dump
        // readable, base backup extracted and verified). Each streams its archive through sha256 on the way, so the
        // checksums that follow read only what was not read yet. The verdicts are taken in order — a checksum
        // mismatch explains whatever else failed — and anything prepared is discarded on a refusal.
        const hashed = new Map<string, string>()
        const prepareData = async (): Promise<void> => {
          for (const d of config.data) {
            const m = b.manifest.data?.find(x => x.name === d.name)
            if (!m)
              throw new UserError(
                `backup ${b.id} holds no archive of data directory ${d.name} — pick a newer backup`,
                'backup_incomplete'
              )
            if (m.corruptionMarker)
              throw new UserError(
                `backup ${b.id} already held the corruption marker in ${d.name} — pick an older backup`,
                'backup_corrupt'
              )
            try {
              await prepareDataDir(d.path, b, m.file, hashed)
            } catch (e) {
              throw new UserError(`backup ${b.id}: ${messageOf(e)} — pick another backup`, 'backup_corrupt')
            }
          }
        }
        const took: Record<string, number> = {}
        const timed = async <T>(what: string, p: () => Promise<T>): Promise<T> => {
          const t0 = performance.now()
          try {
            return await p()
          } finally {
            took[what] = (performance.now() - t0) / 1000
          }
        }
        const [data, database] = await Promise.allSettled([
          timed('data archives', prepareData),
          timed('database', () =>
            checkDatabaseBackup(service, b, {
              toTime: req.toTime,
              log,
              hashed,
              prepareLogical: true,
              readOnly: req.dryRun
            })
          )
        ])
        // (What was unpacked is removed by rollback() when the run ends without using it.)
        const problems = await timed('other checksums', () => store.verify(b.id, { hashed }))
        if (problems.length)
          throw new UserError(
            `backup ${b.id} is damaged — refusing before anything stops:\n  ${problems.slice(0, 10).join('\n  ')}\n` +
              'Pick another backup with --target (backout list, backout verify ID).',
            'backup_corrupt'
          )
        if (data.status === 'rejected') throw data.reason
        if (database.status === 'rejected') throw database.reason
        const dbDetail = database.value
        const live = b.manifest.versions.live
        const found = (['blue', 'green'] as const).find(c => config.targets[c].version === live)
        if (!found)
          throw new UserError(
            `backup ${b.id} was taken while ${live ?? 'an unknown version'} was live, and neither target runs it now ` +
              `(blue ${config.targets.blue.version}, green ${config.targets.green.version}) — deploy it to a target first`,
            'version_unavailable'
          )
        color = found
        // systemd: the code goes back with the data — the commit the backup recorded for the target's checkout.
        // Level 3 is about data, so unlike Level 2 it does not require one: a backup that recorded none (or a
        // target without targets.<colour>.systemd.gitDir) only warns and leaves the checkout as it is. A recorded
        // commit that cannot be checked out (uncommitted changes, a commit the repository lacks) is refused here,
        // before anything stops, rather than found after the data is restored.
        checkout = undefined
        let code = ''
        if (systemd) {
          const plan = await planCheckout(systemd, b, config, color, 'Level 3')
          if (plan.kind === 'none') {
            log.warn(`${plan.why}; Level 3 restores the data and leaves ${color}'s checkout as it is`)
            code = `; ${color}'s checkout stays as it is (${plan.why})`
          } else {
            checkout = { dir: plan.dir, from: plan.from, to: plan.to }
            code =
              `; ${color}'s checkout ${checkout.dir} is at ${shortCommit(checkout.from)}, the backup recorded ${shortCommit(checkout.to)}` +
              (checkout.from === checkout.to ? ' (already there)' : ` (checked out before ${color} starts)`)
          }
        }
        const disk = await checkDisk(service, b)
        const times = Object.entries(took)
          .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
          .join(', ')
        return `(at once: ${times}) ${b.manifest.files.length} checksums match; ${b.manifest.data?.length ?? 0} data archives extract; ${dbDetail}; ${disk}${code}`
      }
    },
    {
      name: 'Emergency snapshot',
      kind: 'write',
      budgetSeconds: 120,
      describe: () =>
        `capture the current (bad) state, database included, to ${config.backups.dir}/rollback-safety-<id>`,
      async run({ signal }) {
        const b = need()
        const reuse = reusableSnapshot(b)
        if (reuse) {
          record.safetyBackupId = reuse
          writeJournal(config.state.dir, { ...interrupted!, runId: record.id })
          return `kept ${reuse}, the emergency snapshot of the interrupted run ${interrupted!.runId} (the state now is partly restored)`
        }
        const info = await takeSnapshot(service, { safety: true, emergency: true, signal })
        record.safetyBackupId = info.id
        const uncaptured = info.manifest.database?.error
        if (uncaptured !== undefined && !req.allowUncapturedDatabase)
          throw new UserError(
            `the emergency snapshot ${info.id} did not capture the database (${uncaptured}): Level 3 would replace the ` +
              'database with no copy of the state it replaces, so nothing was stopped. Fix what kept it from being captured ' +
              '(free disk in backups.dir, database.url) and run again; or, if the database is beyond capture, run again ' +
              'with --allow-uncaptured-database (recorded in the run and the history)',
            'database_not_captured'
          )
        if (uncaptured !== undefined)
          log.warn(
            `--allow-uncaptured-database: going on although the emergency snapshot did not capture the database (${uncaptured})`
          )
        writeJournal(config.state.dir, {
          runId: record.id,
          backupId: b.id,
          toTime: req.toTime,
          safetyBackupId: info.id,
          startedAt: record.startedAt
        })
        const dbNote =
          uncaptured !== undefined
            ? `; database NOT captured: ${uncaptured} (going on: --allow-uncaptured-database)`
            : ''
        return `${info.id} (${info.manifest.files.length} files, ${formatBytes(info.sizeBytes)})${dbNote}`
      }
    },
    {
      name: 'Complete shutdown',
      kind: 'destructive',
      budgetSeconds: 120,
      describe: () => `stop blue and green (SIGTERM, ${config.stop.timeoutSeconds}s, then SIGKILL)`,
      async run() {
        const out: string[] = []
        for (const c of ['blue', 'green'] as const)
          out.push(`${c}: ${await runtime.stop(c, config.stop.timeoutSeconds * 1000)}`)
        for (const c of ['blue', 'green'] as const)
          if ((await runtime.state(c)).running)
            throw new OperationError(`${c} is still running after the shutdown`)
        return out.join(', ')
      }
    },
    {
      name: 'Data volume restoration',
      kind: 'destructive',
      budgetSeconds: 600,
      describe: () =>
        config.data.length
          ? `move ${config.data.map(d => d.path).join(', ')} aside (<dir>.backout-replaced-<time>) and extract the backup's archives`
          : 'no data directories configured',
      async run({ signal }) {
        const b = need()
        const out: string[] = []
        for (const d of config.data) {
          const m = b.manifest.data?.find(x => x.name === d.name)
          if (!m) continue
          // The pre-flight check's verified extraction (a scratch copy beside d.path) is renamed into place;
          // without one (e.g. the parent did not exist then), the archive is extracted into a staging dir now.
          const prepared = readyDataDir(d.path, b, m.file)
          let staging: string
          let how: string
          if (prepared) {
            rmSync(`${prepared}.verified`, { force: true })
            staging = prepared
            how = `verified extraction of the ${formatBytes(m.bytes)} directory renamed into place`
          } else {
            staging = `${d.path}.backout-restoring`
            rmSync(staging, { recursive: true, force: true })
            const res = await untarZstd(path.join(b.dir, m.file), staging, { signal })
            how = `${formatBytes(res.size)} archive extracted in ${res.durationMs} ms`
          }
          let aside = ''
          if (existsSync(d.path)) {
            aside = unusedPath(`${d.path}.backout-replaced-${formatBackupId(new Date())}`)
            renameSync(d.path, aside)
          }
          mkdirSync(path.dirname(d.path), { recursive: true })
          renameSync(staging, d.path)
          out.push(`${d.name}: ${how}${aside ? `, old dir kept as ${path.basename(aside)}` : ''}`)
        }
        return out.join('; ') || 'no data directories'
      }
    },
    {
      name: 'Database restoration',
      kind: 'destructive',
      budgetSeconds: 480,
      describe: () => {
        if (!db) return 'no database configured'
        if (db.kind === 'sqlite')
          return `move ${db.path} aside (<name>_corrupted_<time>.db) and restore the online backup`
        return (
          (backup && restoresPhysically(service, backup)
            ? `stop PostgreSQL, swap ${db.dataDir} for the base backup (the old one kept), replay WAL${req.toTime ? ` to ${req.toTime}` : ' to the backup point'}`
            : `pg_restore the dump into a side database and swap it in (the replaced one kept)`) +
          (backup ? describeRestorePath(backup) : '')
        )
      },
      async run({ signal }) {
        dbResult = await restoreDatabase(service, need(), { log, signal, toTime: req.toTime })
        return dbResult.detail
      }
    },
    {
      name: 'Transaction log replay',
      kind: 'read',
      budgetSeconds: 180,
      describe: () =>
        req.toTime
          ? `confirm WAL was replayed to ${req.toTime} and the server promoted`
          : 'report what WAL could still replay',
      async run() {
        if (!db || db.kind === 'sqlite')
          return 'SQLite keeps no transaction log to replay: the data is as of the backup'
        if (dbResult?.walReplayed) {
          const [row] = await rowCountsProbe(db.url)
          return `WAL replayed to ${req.toTime}; the server is out of recovery (${row})`
        }
        const b = need()
        if (db.walArchiveDir && b.manifest.database?.base && localCluster(db).cluster)
          return (
            `not replayed: restored to the backup point (${dbResult?.restoredTo}). The archive in ${db.walArchiveDir} ` +
            'can recover to any later time: run again with --to-time to lose less'
          )
        return 'no WAL archive: the data is as of the backup (full RPO data loss possible)'
      }
    },
    {
      name: 'Configuration restoration',
      kind: 'destructive',
      budgetSeconds: 120,
      describe: () =>
        `put back ${config.configFiles.join(', ') || 'no files'} from the backup (atomically, file by file)` +
        (checkout
          ? `; \`git -C ${checkout.dir} checkout --detach ${checkout.to}\` (now at ${shortCommit(checkout.from)})`
          : ''),
      async run() {
        const b = need()
        const changed: string[] = []
        let same = 0
        for (const file of config.configFiles) {
          if (path.resolve(file) === path.resolve(config.nginx.upstreamFile)) continue
          const source = store.manifestFile(b, configEntryPath(file)) // only what the sealed manifest lists
          if (!source || !existsSync(source)) continue
          if (replaceFile(file, source)) changed.push(path.basename(file))
          else same++
        }
        // The units are stopped (Complete shutdown): the checkout moves while nothing runs from it.
        const code =
          systemd && checkout ? `; checkout ${(await systemd.checkout(color, checkout.to)).detail}` : ''
        return `${changed.length ? `restored ${changed.join(', ')}` : 'nothing differed'}; ${same} already equal${code}`
      }
    },
    {
      name: 'Service startup',
      kind: 'destructive',
      budgetSeconds: 180,
      describe: () =>
        `start the target that ran the backup's live version, wait for health, point nginx at it; start the other ` +
        'target too when the backup recorded it running (so that a later Level 1 can switch to it)',
      async run({ signal }) {
        const started = await runtime.start(color)
        const deadline = Date.now() + config.health.waitSeconds * 1000
        let ready = await targetReady(config, color, signal)
        while (!ready.ready && Date.now() < deadline && !signal.aborted) {
          const state = await runtime.state(color)
          if (!state.running)
            throw new OperationError(
              `${label(color)} exited while starting (${started}) — see its log: ${ready.detail}`
            )
          await sleep(Math.min(config.health.intervalSeconds * 1000, 500), signal)
          ready = await targetReady(config, color, signal)
        }
        if (!ready.ready) throw new OperationError(`${label(color)} did not become healthy: ${ready.detail}`)
        const onCommit = systemd && checkout ? await systemd.gitCommit(color) : undefined
        if (checkout && onCommit !== checkout.to)
          throw new OperationError(
            `${color}'s checkout is at ${onCommit ?? '?'}, not the backup's recorded ${checkout.to}`,
            'checkout_failed'
          )
        const before = nginx.activeUpstream()
        await nginx.switchUpstream(
          config.targets[color].upstream,
          `active=${color} version=${config.targets[color].version} (level 3, run ${record.id})`
        )
        const served = await confirmServedBy(service, color, config.health.confirmRequests, signal)
        const standby = await startStandby(service, need(), otherColor(color), signal)
        return (
          `${label(color)} ${started}${onCommit ? ` on commit ${shortCommit(onCommit)} (the backup's)` : ''}, ${ready.detail}; nginx ${before === config.targets[color].upstream ? 'reloaded' : `switched from ${before ?? 'nothing'}`}; ` +
          `${config.health.confirmRequests} consecutive responses from ${color} in ${served.ms} ms; ${standby}`
        )
      }
    },
    {
      name: 'Data integrity verification',
      kind: 'read',
      budgetSeconds: 300,
      describe: () =>
        'no corruption marker, critical tables present, row counts as recorded, SQLite integrity/foreign keys',
      async run() {
        const b = need()
        const failures: string[] = []
        const notes: string[] = []
        if (config.corruptionMarker && existsSync(config.corruptionMarker))
          failures.push(`corruption marker ${config.corruptionMarker} is present`)
        else if (config.corruptionMarker) notes.push('no corruption marker')
        if (db) {
          const integrity = await integrityCheck(db)
          if (!integrity.ok) failures.push(integrity.detail)
          else notes.push(integrity.detail)
          const want = b.manifest.database?.rowCounts ?? {}
          if (!req.toTime && Object.keys(want).length) {
            const got: Record<string, number> =
              db.kind === 'postgres' ? await rowCounts(db.url) : await sqliteTableCounts(db.path)
            const diff = Object.entries(want)
              .filter(([t, n]) => got[t] !== n)
              .map(([t, n]) => `${t} ${got[t] ?? 'missing'} (recorded ${n})`)
            // A base backup ends seconds after the dump the counts come from: an application writing in between
            // makes them differ without anything being wrong. A logical or SQLite restore must match exactly.
            if (diff.length && dbResult?.method !== 'physical')
              failures.push(`row counts differ: ${diff.join(', ')}`)
            else if (diff.length)
              notes.push(
                `row counts differ from the dump's (taken just before the base backup): ${diff.join(', ')}`
              )
            else notes.push(`${Object.keys(want).length} tables' row counts equal the backup's`)
            const version = db.kind === 'postgres' ? (await schemaVersion(db.url))?.version : undefined
            if (db.kind === 'postgres' && b.manifest.schemaVersion && version !== b.manifest.schemaVersion)
              failures.push(
                `schema version ${version ?? 'none'}, the backup recorded ${b.manifest.schemaVersion}`
              )
          }
        }
        if (failures.length)
          throw new OperationError(
            `data integrity verification failed: ${failures.join('; ')}`,
            'integrity_failed'
          )
        return notes.join('; ')
      }
    },
    {
      name: 'Data-loss assessment',
      kind: 'read',
      budgetSeconds: 30,
      describe: () => 'compare the restored point with when the rollback began; record the data-loss window',
      run() {
        const b = need()
        const restoredTo = dbResult?.restoredTo ?? b.manifest.database?.capturedAt ?? b.manifest.createdAt
        const began = interrupted?.backupId === b.id ? interrupted.startedAt : record.startedAt
        const windowSeconds = Math.max(0, Math.round((Date.parse(began) - Date.parse(restoredTo)) / 1000))
        const walReplayed = dbResult?.walReplayed ?? false
        const note =
          (walReplayed
            ? `transaction logs replayed to ${restoredTo}: data loss minimised`
            : 'no transaction logs replayed: everything written after the backup point is not in the service') +
          (record.safetyBackupId ? `; the state before the recovery is kept in ${record.safetyBackupId}` : '')
        record.dataLoss = { restoredTo, windowSeconds, walReplayed, note }
        rmSync(path.join(config.state.dir, JOURNAL), { force: true })
        log.warn(
          `Potential data loss window: ${Math.round(windowSeconds / 60)} min (${windowSeconds} s) — inform stakeholders`
        )
        return Promise.resolve(
          `restored to ${restoredTo}; data-loss window ${windowSeconds} s (${Math.round(windowSeconds / 60)} min); ${note}`
        )
      }
    },
    finalValidationStep(service, record, {
      name: 'Comprehensive validation',
      budgetSeconds: 240,
      thorough: true
    })
  ]
  return steps
}

/**
 * Pre-flight: the database answers at database.url. The emergency snapshot captures it through that URL; one that
 * does not answer — the database down, or a mistake in the URL (a wrong port) while the cluster is healthy — is
 * found here, before anything stops. Going on anyway takes --allow-uncaptured-database.
 */
async function databaseReachable(config: Config, allow: boolean, log: Service['log']): Promise<void> {
  const db = config.database
  if (!db) return
  const ping = await databasePing(db)
  if (ping.ok) return
  const where = db.kind === 'postgres' ? `database.url (${redactUrl(db.url)})` : `database.path (${db.path})`
  const running = db.kind === 'postgres' ? clusterPort(db.dataDir) : undefined
  const hint =
    running !== undefined && db.kind === 'postgres'
      ? ` — the cluster in ${db.dataDir ?? '?'} is running on port ${running}: is the URL's port right?`
      : ''
  if (allow) {
    log.warn(
      `--allow-uncaptured-database: the database does not answer at ${where} (${ping.detail})${hint}; going on`
    )
    return
  }
  throw new UserError(
    `the database does not answer at ${where}: ${ping.detail}${hint}. The emergency snapshot could not capture it, ` +
      'so Level 3 would replace it with no copy of the state it replaces; nothing was stopped. Fix ' +
      `${db.kind === 'postgres' ? 'database.url' : 'database.path'} in backout.yml if it is wrong; if the database is ` +
      'really down and beyond capture, run again with --allow-uncaptured-database',
    'database_unreachable'
  )
}

/** The URL without its password. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url)
    if (u.password) u.password = '***'
    return u.toString()
  } catch {
    return '<database.url>'
  }
}

/** The port of the cluster running in dataDir (postmaster.pid's 4th line), if one runs there. */
function clusterPort(dataDir: string | undefined): number | undefined {
  if (!dataDir) return undefined
  try {
    const lines = readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')
    const port = Number(lines[3])
    return Number.isInteger(port) && port > 0 ? port : undefined
  } catch {
    return undefined
  }
}

/**
 * The runbook's Step 7 starts all services: the target that was the standby when the backup was taken is started
 * again when the backup recorded it running (containers.json), so that a later Level 1 has a target to switch to.
 */
async function startStandby(
  service: Service,
  b: BackupInfo,
  standby: Color,
  signal: AbortSignal
): Promise<string> {
  const { config, runtime } = service
  const label = `${standby} ${config.targets[standby].version}`
  let recorded: boolean | undefined
  try {
    const state = JSON.parse(readFileSync(path.join(b.dir, 'containers.json'), 'utf8')) as {
      targets?: Record<string, { running?: boolean }>
    }
    recorded = state.targets?.[standby]?.running
  } catch {
    recorded = undefined
  }
  if (recorded !== true)
    return `${label} left stopped (the backup recorded it ${recorded === false ? 'stopped' : 'in no state'})`
  const how = (await runtime.state(standby)).running ? 'already running' : await runtime.start(standby)
  const deadline = Date.now() + config.health.waitSeconds * 1000
  let ready = await targetReady(config, standby, signal)
  while (!ready.ready && Date.now() < deadline && !signal.aborted) {
    await sleep(Math.min(config.health.intervalSeconds * 1000, 500), signal)
    ready = await targetReady(config, standby, signal)
  }
  if (!ready.ready)
    throw new OperationError(
      `the standby ${label} (running when the backup was taken) did not become ready: ${ready.detail}`,
      'standby_unhealthy'
    )
  return `standby ${label} ${how}, ${ready.detail} (as the backup recorded)`
}

async function rowCountsProbe(url: string): Promise<string[]> {
  const [r] = await pgQuery<{ rec: boolean }>(url, 'SELECT pg_is_in_recovery() AS rec')
  if (r?.rec)
    throw new OperationError('PostgreSQL is still in recovery after the WAL replay', 'recovery_not_finished')
  return ['pg_is_in_recovery() = false']
}

/**
 * Free disk for everything the restore will write, summed per filesystem: the data archives extracted beside their
 * directories, the base backup staged beside the data directory (or the dump restored into the server), the
 * SQLite file, and the emergency snapshot in backups.dir. UserError when short.
 */
async function checkDisk(service: Service, b: BackupInfo): Promise<string> {
  const { config } = service
  const needs: { where: string; bytes: number; what: string }[] = []
  for (const d of config.data) {
    const m = b.manifest.data?.find(x => x.name === d.name)
    if (m) needs.push({ where: path.dirname(d.path), bytes: m.bytes, what: `data ${d.name}` })
  }
  const db = config.database
  const mdb = b.manifest.database
  if (db?.kind === 'sqlite')
    needs.push({ where: path.dirname(db.path), bytes: mdb?.bytes ?? 0, what: 'SQLite database' })
  else if (db?.kind === 'postgres') {
    if (restoresPhysically(service, b) && db.dataDir)
      needs.push({
        where: path.dirname(db.dataDir),
        bytes: mdb?.base?.bytes ?? 0,
        what: 'base backup staging'
      })
    else {
      needs.push({ where: config.state.dir, bytes: mdb?.bytes ?? 0, what: 'dump extraction' })
      if (db.dataDir) needs.push({ where: db.dataDir, bytes: mdb?.bytes ?? 0, what: 'restored database' })
    }
  }
  needs.push({
    where: config.backups.dir,
    bytes: (await estimateSnapshotBytes(service, true)).total,
    what: 'emergency snapshot'
  })
  const byDevice = new Map<number, { where: string; bytes: number; what: string[] }>()
  for (const n of needs) {
    const dev = statSync(nearestExisting(n.where)).dev
    const entry = byDevice.get(dev) ?? { where: n.where, bytes: 0, what: [] }
    entry.bytes += n.bytes
    entry.what.push(`${n.what} ${formatBytes(n.bytes)}`)
    byDevice.set(dev, entry)
  }
  const parts: string[] = []
  for (const e of byDevice.values()) {
    const { freeBytes } = await freeSpace(e.where)
    if (e.bytes * 1.1 > freeBytes)
      throw new UserError(
        `not enough disk on the filesystem of ${e.where}: about ${formatBytes(e.bytes * 1.1)} needed (${e.what.join(', ')}), ` +
          `${formatBytes(freeBytes)} free — prune old backups (backout list), *.backout-replaced-* and *.replaced-* ` +
          'directories left by earlier restores, then run again',
        'disk_full'
      )
    parts.push(`${formatBytes(freeBytes)} free for ${formatBytes(e.bytes)}`)
  }
  return `disk: ${parts.join(', ')}`
}
