import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import path from 'node:path'
import { type Color, type Config, otherColor } from '../core/config'
import { OperationError, UserError, messageOf } from '../core/errors'
import type { Logger } from '../core/logger'
import { type DownPlan, describeDownPlan } from '../core/migration-plan'
import { createAlembic, detectVersionMismatch, type AlembicDriver } from '../drivers/alembic'
import { requireConfiguredDatabase } from '../drivers/alembic-database'
import { type BackupInfo, sha256File } from '../drivers/backup-store'
import type { ComposeRuntime } from '../drivers/compose'
import type { Runtime } from '../drivers/runtime'
import { schemaVersion as postgresSchemaVersion } from '../drivers/postgres-backup'
import {
  MIGRATION_LOCK_NAME,
  type SqlClient,
  downSql,
  loadDownPlan,
  readAppliedVersions,
  runDown,
  withAdvisoryLock
} from '../drivers/sql-migrations'
import { schemaVersion as sqliteSchemaVersion } from '../drivers/sqlite'
import { foreignBackup } from '../drivers/sqlite-identity'
import { asSystemd, planCheckout, recordedFor, shortCommit } from './checkout'
import { checkDatabaseBackup, restoreDatabase } from './database-backup'
import { confirmServedBy } from './level1'
import { latestRunRecord } from './operation'
import type { LevelSteps, RollbackRequest } from './rollback-request'
import type { Step } from './run-steps'
import { activeColor, answeredBy, probeThroughNginx, targetReady, type Service } from './service'
import { configEntryPath, safetyBackupStep } from './snapshot'
import { databaseIntegrityStep, finalValidationStep } from './final-validation'
import { sleep } from '../drivers/sleep'

export { recordedCommit } from './checkout'

type Database = NonNullable<Config['database']>

/** A database rollback either finished (Method 1) or must fall back to the restore (Method 2), and why. */
type Outcome = { done: string } | { fallback: string }

/** How the database goes back to the target's schema version, decided in pre-flight. */
type DatabasePlan =
  | { method: 'none'; summary: string }
  /** Method 1 with the SQL down scripts, under the advisory lock. */
  | { method: 'sql'; summary: string; plan: DownPlan; sql: string }
  /** Method 1 with alembic: downgrade to the target's recorded revision. */
  | { method: 'alembic'; summary: string; from: string[]; revision: string; sql: string }
  /** Method 2: restore the database from the target backup. */
  | { method: 'restore'; summary: string; why: string }

/** The alembic executable from database.migrations.command (the driver runs one executable). */
export function alembicBinFor(command: readonly string[]): string {
  const [bin, ...rest] = command
  if (!bin || rest.length > 0)
    throw new UserError(
      `database.migrations.command is ${JSON.stringify(command)}: give the alembic executable alone, e.g. [/usr/bin/alembic] or [/opt/app/venv/bin/alembic]`,
      'bad_config'
    )
  return bin
}

/** The URL the project's env.py reads from DATABASE_URL: the PostgreSQL URL, or sqlite:///<path>. */
export function databaseUrlFor(db: Database): string {
  return db.kind === 'postgres' ? db.url : `sqlite:///${path.resolve(db.path)}`
}

function alembicFor(db: Database, log: Logger, signal?: AbortSignal): AlembicDriver {
  const m = db.migrations
  if (m?.kind !== 'alembic') throw new Error('internal: alembicFor without alembic migrations')
  return createAlembic({
    projectDir: path.dirname(m.ini),
    config: path.basename(m.ini),
    alembicBin: alembicBinFor(m.command),
    env: { DATABASE_URL: databaseUrlFor(db) },
    logger: log,
    signal
  })
}

/** The database's schema version now: the highest schema_migrations version, else the alembic revision(s). */
async function currentSchemaVersion(db: Database): Promise<string | undefined> {
  if (db.kind === 'postgres') return (await postgresSchemaVersion(db.url))?.version
  return existsSync(db.path) ? sqliteSchemaVersion(db.path) : undefined
}

/** The schema version a backup recorded: the manifest's, else its database capture's. */
function backupSchemaVersion(backup: BackupInfo): string | undefined {
  return backup.manifest.schemaVersion ?? backup.manifest.database?.schemaVersion
}

/** Whether the backup holds a capture of this database that the restore (Method 2) can use. */
function hasDatabaseDump(db: Database, backup: BackupInfo): boolean {
  const m = backup.manifest.database
  return !!m?.file && !m.error && m.kind === db.kind
}

/**
 * The version being rolled back: the live one — unless the newest rollback was a Level 1 that already switched
 * traffic to the live target (and then failed, or Level 2 follows it): then the version it switched away from.
 */
function versionRolledBack(service: Service, liveVersion: string, currentRunId: string): string {
  const last = latestRunRecord(service.config, 'rollback', currentRunId)
  if (last?.level === 1 && last.to === liveVersion && last.from && last.from !== liveVersion) return last.from
  return liveVersion
}

/**
 * The target backup: --target, else the newest snapshot (not a safety backup) that was taken while another
 * version than the one being rolled back served, and whose checksums all match. A damaged backup is never a
 * target.
 */
async function chooseTarget(
  service: Service,
  req: RollbackRequest,
  fromVersion: string
): Promise<{ backup: BackupInfo; skipped: string[] }> {
  const { store, config } = service
  if (req.target !== undefined) {
    const backup = store.get(req.target)
    const problems = await store.verify(backup.id)
    if (problems.length)
      throw new UserError(
        `backup ${backup.id} is damaged, so it cannot be the target: ${problems.slice(0, 5).join('; ')} — pick another one (backout list)`,
        'backup_corrupt'
      )
    const foreign = await foreignBackup(config.database, backup)
    if (foreign) throw new UserError(foreign, 'backup_foreign')
    return { backup, skipped: [] }
  }
  const skipped: string[] = []
  for (const backup of store.list()) {
    if (backup.manifest.kind !== 'snapshot') continue
    if (backup.manifest.versions.live === undefined || backup.manifest.versions.live === fromVersion) continue
    const problems = await store.verify(backup.id)
    if (problems.length) {
      skipped.push(`${backup.id} (damaged: ${problems[0]})`)
      continue
    }
    if (await foreignBackup(config.database, backup)) {
      skipped.push(`${backup.id} (a backup of another database)`)
      continue
    }
    return { backup, skipped }
  }
  throw new UserError(
    `no intact snapshot of a version other than ${fromVersion} (the one being rolled back) in ${config.backups.dir}` +
      (skipped.length ? ` (skipped ${skipped.join(', ')})` : '') +
      ' — pass --target <backup-id> (backout list shows them), or set backups.dir if the backups live elsewhere',
    'backup_not_found'
  )
}

/** Plans the database part: Method 1 when the scripts are there and valid, else Method 2, else refuses. */
async function planDatabase(service: Service, backup: BackupInfo): Promise<DatabasePlan> {
  const db = service.config.database
  if (!db) return { method: 'none', summary: 'no database in backout.yml: nothing to roll back' }
  const target = backupSchemaVersion(backup)
  const restore = async (why: string): Promise<DatabasePlan> => {
    if (!hasDatabaseDump(db, backup))
      throw new UserError(
        `the database cannot be rolled back: ${why}; and backup ${backup.id} holds no database dump for a restore (Method 2) — ` +
          'pick a backup with a database dump (--target), or escalate to Level 3',
        'no_rollback_method'
      )
    // Everything about the capture that can be checked before anything stops (a UserError otherwise).
    // (What the check unpacks is used by the restore, and removed by rollback() when the run ends.)
    const checked = await checkDatabaseBackup(service, backup, { log: service.log, prepareLogical: true })
    return {
      method: 'restore',
      why,
      summary: `${why} — will restore the database from backup ${backup.id} (Method 2; data written since the backup is lost; ${checked})`
    }
  }
  // Method 1 falls back to Method 2 when a script fails midway: that fallback must be sound before anything
  // stops, so a damaged dump (or one of another database) refuses here, not after the service is down.
  const checkFallback = async (): Promise<string> => {
    if (!hasDatabaseDump(db, backup)) return ''
    const checked = await checkDatabaseBackup(service, backup, { log: service.log })
    return ` (fallback checked: ${checked})`
  }
  if (target === undefined) return restore(`backup ${backup.id} records no schema version`)
  const current = await currentSchemaVersion(db)
  if (current === target)
    return { method: 'none', summary: `schema is at ${target}, the backup's version: nothing to roll back` }
  const m = db.migrations
  if (m?.kind === 'sql') {
    if (db.kind !== 'postgres') return restore('SQL down scripts are run on PostgreSQL only')
    if (!/^\d+$/.test(target))
      return restore(`the backup's schema version ${target} is not a SQL migration version`)
    const rollbackDir = path.join(m.dir, 'rollback')
    if (!existsSync(rollbackDir)) return restore(`there is no rollback directory ${rollbackDir}`)
    const plan = await loadDownPlan({ connection: { url: db.url }, rollbackDir, target: Number(target) })
    if (plan.missing.length > 0) return restore(`no down script for version ${plan.missing.join(', ')}`)
    let sql: string
    try {
      sql = downSql(plan)
    } catch (e) {
      return restore(`the down scripts cannot run: ${messageOf(e)}`)
    }
    return { method: 'sql', summary: describeDownPlan(plan) + (await checkFallback()), plan, sql }
  }
  if (m?.kind === 'alembic') {
    const alembic = alembicFor(db, service.log)
    // The database env.py connects to must be the configured one (a stock env.py ignores DATABASE_URL).
    const key = db.kind === 'postgres' ? 'database.url' : 'database.path'
    await requireConfiguredDatabase(alembic, { url: databaseUrlFor(db), ini: m.ini, key })
    let heads: string[]
    let from: string[]
    try {
      ;({ heads, current: from } = await alembic.preflight())
    } catch (e) {
      // Scenario 2: the database is at a revision this code does not have — alembic cannot downgrade from it.
      if (e instanceof OperationError && e.reasonCode === 'version_mismatch') return restore(e.message)
      throw e
    }
    const mismatch = detectVersionMismatch(heads, from, await alembic.history())
    let expected: string[]
    try {
      expected = await alembic.resolveDowngrade(target)
    } catch (e) {
      if (e instanceof UserError)
        return restore(`alembic cannot downgrade to the backup's revision: ${e.message}`)
      throw e
    }
    const revision = expected[0]
    if (expected.length !== 1 || !revision)
      return restore(`the backup's revision ${target} is not one revision`)
    let sql: string
    try {
      sql = from[0] ? await alembic.downgradeSql(from[0], revision) : ''
    } catch (e) {
      sql = `-- alembic could not render the downgrade offline: ${messageOf(e)}`
    }
    return {
      method: 'alembic',
      from,
      revision,
      sql,
      summary:
        `alembic downgrade ${from.join(', ') || 'base'} → ${revision} (the backup's revision)` +
        (mismatch ? `; version mismatch (Scenario 2): ${mismatch}` : '') +
        (await checkFallback())
    }
  }
  return restore(
    `no migrations are configured (database.migrations) to go from ${current ?? 'unknown'} to ${target}`
  )
}

/** The compose runtime's own calls (pin, Docker health), when the service runs on compose. */
function asCompose(runtime: Runtime): ComposeRuntime | undefined {
  return runtime.kind === 'compose' && 'pinImage' in runtime ? (runtime as ComposeRuntime) : undefined
}

const PINNABLE = /^(?:\S+@)?sha256:[0-9a-f]{64}$/

/**
 * compose: the image a backup recorded in images.txt for a colour's application service — a registry digest
 * (repo@sha256:…) or an image ID (sha256:…) — or undefined when it recorded none. A line is
 * `<service>-<colour>:<version> [<compose service> <image> <digest or id>]`; a line naming the target's compose
 * service wins over one naming another service.
 */
export function recordedImage(backup: BackupInfo, config: Config, color: Color): string | undefined {
  return recordedFor(backup, config, color, config.targets[color].compose?.service, rest =>
    rest.find(t => PINNABLE.test(t))
  )
}

/** Writes the backup's copy of a file over `dest` atomically: a temp file beside it, then rename. */
function restoreFileAtomically(source: string, dest: string): void {
  mkdirSync(path.dirname(dest), { recursive: true })
  const tmp = path.join(path.dirname(dest), `.${path.basename(dest)}.backout-restore-${process.pid}`)
  try {
    copyFileSync(source, tmp)
    renameSync(tmp, dest)
  } finally {
    rmSync(tmp, { force: true })
  }
}

/**
 * Level 2, the full rollback: the application, the database schema, the configuration and the version go
 * back to a target backup. The steps and their times are the runbook's.
 */
export const level2Steps: LevelSteps = (service, record, req) => {
  const { config, nginx, runtime, log } = service
  let backup: BackupInfo | undefined
  let targetColor: Color = 'blue'
  let db: DatabasePlan = { method: 'none', summary: 'not planned yet' }
  let configChanges: string[] = []
  const label = (c: Color): string => `${c} ${config.targets[c].version}`
  const failedColor = (): Color => otherColor(targetColor)
  const need = (): BackupInfo => {
    if (!backup) throw new Error('internal: no target backup (pre-flight did not run)')
    return backup
  }
  const configFiles = (): string[] => config.configFiles.filter(f => f !== config.nginx.upstreamFile)
  const compose = asCompose(runtime)
  /** compose: the image images.txt of the target backup records for the target colour. */
  const pin = (): string | undefined => (compose ? recordedImage(need(), config, targetColor) : undefined)
  const systemd = asSystemd(runtime)
  /** systemd: the target colour's checkout then (pre-flight) and the commit the target backup recorded for it. */
  let checkout: { dir: string; from: string; to: string } | undefined
  const needCheckout = (): { dir: string; from: string; to: string } => {
    if (!checkout) throw new Error('internal: no recorded commit (pre-flight did not run)')
    return checkout
  }
  const short = shortCommit
  /** systemd: the journal's last 50 lines of the target's unit (the runbook's journalctl -u … -n 50). */
  async function journalOf(color: Color): Promise<string> {
    if (!systemd) return ''
    const unit = config.targets[color].systemd?.unit ?? color
    try {
      const lines = await systemd.journal(color, 50)
      return lines.length
        ? `\nlast ${lines.length} journal lines of ${unit} (journalctl -u ${unit} -n 50):\n${lines.join('\n')}`
        : `\n${unit}'s journal is empty`
    } catch (e) {
      return `\n(journalctl -u ${unit} -n 50 failed: ${messageOf(e)})`
    }
  }

  /** Method 2: the database back from the target backup, as the other engineer's restore does it. */
  async function restoreFromBackup(why: string, signal: AbortSignal): Promise<string> {
    const b = need()
    log.warn(`[DB-ROLLBACK] ${why} — falling back to restoring backup ${b.id} (Method 2)`)
    const restored = await restoreDatabase(service, b, { log, signal })
    const windowSeconds = Math.max(
      0,
      Math.round((Date.parse(record.startedAt) - Date.parse(restored.restoredTo)) / 1000)
    )
    record.dataLoss = {
      restoredTo: restored.restoredTo,
      windowSeconds,
      walReplayed: restored.walReplayed,
      note: `Level 2 fell back to restoring backup ${b.id} (Method 2) because ${why}`
    }
    return `fell back to restoring backup ${b.id} (Method 2) because ${why}: ${restored.detail}; data written after ${restored.restoredTo} is lost (RPO)`
  }

  async function verifySchema(target: string | undefined): Promise<string> {
    if (!config.database || target === undefined) return ''
    const now = await currentSchemaVersion(config.database)
    if (now !== target)
      throw new OperationError(
        `after the database rollback the schema is at ${now ?? 'no version'}, not the backup's ${target} — ` +
          'check the database by hand, or escalate to Level 3',
        'schema_mismatch'
      )
    return `; schema now at ${now}`
  }

  async function rollBackSql(
    plan: Extract<DatabasePlan, { method: 'sql' }>,
    signal: AbortSignal
  ): Promise<string> {
    const database = config.database
    const m = database?.migrations
    if (database?.kind !== 'postgres' || m?.kind !== 'sql')
      throw new Error('internal: SQL rollback without SQL migrations')
    const rollbackDir = path.join(m.dir, 'rollback')
    const target = plan.plan.target
    // The lock is held for the whole of Method 1, so no migration runs beside it. A restore replaces the database
    // (and ends its sessions, the lock's too), so it runs after the lock is given back — with the app stopped.
    const outcome = await withAdvisoryLock(
      database.url,
      MIGRATION_LOCK_NAME,
      async (client: SqlClient): Promise<Outcome> => {
        const fresh = await loadDownPlan({ connection: { client }, rollbackDir, target })
        if (fresh.missing.length > 0)
          return { fallback: `no down script for version ${fresh.missing.join(', ')}` }
        let result
        try {
          result = await runDown({ connection: { client }, plan: fresh, signal, logger: log })
        } catch (e) {
          return { fallback: `the down scripts cannot run: ${messageOf(e)}` }
        }
        if (result.aborted)
          throw new OperationError(
            `the step's deadline passed between versions: ${result.completed.join(', ') || 'none'} rolled back, ${result.remaining.join(', ')} still applied`,
            'deadline'
          )
        if (!result.ok) {
          const f = result.failed
          return {
            fallback:
              `the down script for version ${f?.version ?? '?'} (${f ? path.basename(f.file) : '?'}) failed: ${f?.message ?? 'unknown'}` +
              (result.completed.length ? ` (after ${result.completed.join(', ')} rolled back)` : '')
          }
        }
        const applied = await readAppliedVersions({ client })
        if ((applied[0] ?? 0) !== target)
          throw new OperationError(
            `the down scripts ran but schema_migrations is at ${applied[0] ?? 'nothing'}, not ${target}`,
            'schema_mismatch'
          )
        return {
          done: `ran ${result.completed.map(v => `${v}`).join(', ')} down under advisory lock ${MIGRATION_LOCK_NAME}; schema_migrations at ${target}`
        }
      }
    )
    if ('done' in outcome) return outcome.done
    const detail = await restoreFromBackup(outcome.fallback, signal)
    return detail + (await verifySchema(String(target)))
  }

  async function rollBackAlembic(
    plan: Extract<DatabasePlan, { method: 'alembic' }>,
    signal: AbortSignal
  ): Promise<string> {
    const database = config.database
    if (!database) throw new Error('internal: alembic rollback without a database')
    const run = async (): Promise<Outcome> => {
      const alembic = alembicFor(database, log, signal)
      try {
        const after = await alembic.downgrade(plan.revision)
        const current = await alembic.current()
        if (current.length !== 1 || current[0] !== plan.revision)
          throw new OperationError(`alembic current is ${current.join(', ') || 'base'}, not ${plan.revision}`)
        return { done: `alembic downgrade ${plan.revision}: \`alembic current\` is ${after.join(', ')}` }
      } catch (e) {
        if (signal.aborted) throw e
        return { fallback: `alembic downgrade ${plan.revision} failed: ${messageOf(e)}` }
      }
    }
    const outcome =
      database.kind === 'postgres'
        ? await withAdvisoryLock(database.url, MIGRATION_LOCK_NAME, () => run())
        : await run()
    if ('done' in outcome) return outcome.done
    return (
      (await restoreFromBackup(outcome.fallback, signal)) + (await verifySchema(backupSchemaVersion(need())))
    )
  }

  return [
    {
      name: 'Preparation',
      kind: 'read',
      budgetSeconds: 120,
      describe: () => 'pick and verify the target backup, read its versions and plan the database rollback',
      async run() {
        const live = activeColor(service)
        if (!live)
          throw new UserError(
            `nginx upstream ${config.nginx.upstreamFile} points at ${nginx.activeUpstream() ?? 'nothing'}, ` +
              `which is neither blue (${config.targets.blue.upstream}) nor green (${config.targets.green.upstream}) — ` +
              'fix targets.*.upstream in backout.yml or the upstream file',
            'unknown_active_target'
          )
        const chosen = await chooseTarget(
          service,
          req,
          versionRolledBack(service, config.targets[live].version, record.id)
        )
        backup = chosen.backup
        record.backupId = backup.id
        const version = backup.manifest.versions.live
        const color = (['blue', 'green'] as const).find(c => config.targets[c].version === version)
        if (!version || !color)
          throw new UserError(
            `backup ${backup.id} was taken while ${version ?? 'an unknown version'} served, but neither target runs it ` +
              `(${label('blue')}, ${label('green')}) — pick a backup of one of these versions (--target)`,
            'target_version_unknown'
          )
        targetColor = color
        record.from = config.targets[failedColor()].version
        record.to = version
        checkout = undefined
        if (systemd) {
          // Refused before anything changes: no recorded commit, a dirty checkout, a commit the checkout lacks.
          const plan = await planCheckout(systemd, backup, config, color, 'Level 2')
          if (plan.kind === 'none') throw new UserError(plan.why, 'no_recorded_commit')
          checkout = { dir: plan.dir, from: plan.from, to: plan.to }
        }
        db = await planDatabase(service, backup)
        // A migration running now (it holds the advisory lock) is found here, before anything stops — not after
        // the live target is down. The database step takes the lock again for the rollback itself.
        if (config.database?.kind === 'postgres' && db.method !== 'none')
          await withAdvisoryLock(config.database.url, MIGRATION_LOCK_NAME, () => Promise.resolve())
        configChanges = []
        for (const file of configFiles()) {
          const copy = service.store.manifestFile(backup, configEntryPath(file)) // only what the sealed manifest lists
          if (!copy || !existsSync(copy)) continue
          if (!existsSync(file) || !readFileSync(file).equals(readFileSync(copy))) configChanges.push(file)
        }
        return (
          `target backup ${backup.id} (${backup.manifest.createdAt}, ${version} live, schema ${backupSchemaVersion(backup) ?? 'unrecorded'}; checksums verified)` +
          (chosen.skipped.length ? `, skipped ${chosen.skipped.join(', ')}` : '') +
          `; nginx routes to ${label(live)}; database: ${db.summary}` +
          (db.method === 'sql' || db.method === 'alembic'
            ? config.database && hasDatabaseDump(config.database, backup)
              ? ` (fallback: restore from ${backup.id}, Method 2)`
              : ` (no fallback: ${backup.id} holds no database capture)`
            : '') +
          '; ' +
          `config files that differ: ${configChanges.map(f => path.basename(f)).join(', ') || 'none'}` +
          (compose
            ? `; image to pin for ${targetColor}: ${pin() ?? `none recorded in ${backup.id}/images.txt (the restored compose configuration decides)`}`
            : '') +
          (checkout
            ? `; ${targetColor}'s checkout ${checkout.dir} is at ${short(checkout.from)}, the backup recorded ${short(checkout.to)}` +
              (checkout.from === checkout.to
                ? ' (already there)'
                : ' (checked out after the database rollback)')
            : '')
        )
      }
    },
    safetyBackupStep(service, record, 120),
    {
      name: 'Stop current deployment',
      kind: 'destructive',
      budgetSeconds: 60,
      describe: () =>
        `stop ${label(failedColor())} gracefully (SIGTERM, ${config.stop.timeoutSeconds}s, then SIGKILL)`,
      async run() {
        const outcome = await runtime.stop(failedColor(), config.stop.timeoutSeconds * 1000)
        return `${label(failedColor())}: ${outcome}`
      }
    },
    {
      name: 'Roll back database migrations',
      kind: 'destructive',
      budgetSeconds: 180,
      describe: () => {
        switch (db.method) {
          case 'sql':
            return `${db.summary}, under advisory lock ${MIGRATION_LOCK_NAME}; on a failing script, restore the database from backup ${need().id} (Method 2). The exact SQL:\n${db.sql.trimEnd()}`
          case 'alembic':
            return `${db.summary}; on failure, restore the database from backup ${need().id} (Method 2). \`alembic downgrade --sql\`:\n${db.sql.trimEnd()}`
          default:
            return db.summary
        }
      },
      async run({ signal }) {
        switch (db.method) {
          case 'none':
            return db.summary
          case 'sql':
            return rollBackSql(db, signal)
          case 'alembic':
            return rollBackAlembic(db, signal)
          case 'restore':
            return (
              (await restoreFromBackup(db.why, signal)) + (await verifySchema(backupSchemaVersion(need())))
            )
        }
      }
    },
    databaseIntegrityStep(service, 30),
    {
      name: 'Restore configuration',
      kind: 'destructive',
      budgetSeconds: 60,
      describe: () =>
        configChanges.length
          ? `write ${configChanges.join(', ')} back from backup ${need().id} (temp file + rename)`
          : `no config file differs from backup ${backup?.id ?? '<target>'}: nothing to write`,
      async run() {
        const b = need()
        const restored: string[] = []
        const same: string[] = []
        const absent: string[] = []
        for (const file of configFiles()) {
          const entry = configEntryPath(file)
          const copy = path.join(b.dir, entry)
          const want = b.manifest.files.find(f => f.path === entry)
          if (!existsSync(copy) || !want) {
            absent.push(path.basename(file))
            continue
          }
          if ((await sha256File(copy)) !== want.sha256)
            throw new OperationError(
              `${copy} no longer matches backup ${b.id}'s manifest — the backup changed since pre-flight`
            )
          if (existsSync(file) && readFileSync(file).equals(readFileSync(copy))) {
            same.push(path.basename(file))
            continue
          }
          restoreFileAtomically(copy, file)
          restored.push(file)
        }
        return (
          `restored ${restored.length ? restored.join(', ') : 'nothing'} from ${b.id}` +
          (same.length ? `; unchanged: ${same.join(', ')}` : '') +
          (absent.length ? `; not in the backup: ${absent.join(', ')}` : '')
        )
      }
    },
    {
      name: 'Deploy previous version',
      kind: 'destructive',
      budgetSeconds: 120,
      describe: () =>
        (compose
          ? backup && pin()
            ? `pin ${label(targetColor)}'s ${config.targets[targetColor].compose?.service ?? 'app'} service to ${pin()}, `
            : `unpin ${label(targetColor)} (no image recorded in the target backup's images.txt: the restored compose configuration decides), `
          : '') +
        (checkout
          ? `stop ${label(targetColor)} if it runs, \`git -C ${checkout.dir} checkout --detach ${checkout.to}\` (now at ${short(checkout.from)}), `
          : '') +
        `start ${label(targetColor)} (restart it if it runs but is not ready${compose ? ' or runs another image' : ''}${checkout ? ' or is on another commit' : ''}) and point nginx at ` +
        `${config.targets[targetColor].upstream} (test with \`${config.nginx.test.join(' ')}\`, reload)`,
      async run({ signal }) {
        const ready = await targetReady(config, targetColor, signal)
        const image = pin()
        // compose: a target that answers but runs another image than the backup recorded is redeployed too.
        const other =
          compose && image?.startsWith('sha256:') && ready.ready
            ? (await compose.containersJson(targetColor)).find(
                c => c.service === config.targets[targetColor].compose?.service && c.imageId !== image
              )
            : undefined
        // systemd: a target that answers but runs from another commit than the backup recorded is redeployed too.
        const commit = systemd ? needCheckout().to : undefined
        const onCommit = systemd ? await systemd.gitCommit(targetColor) : undefined
        const otherCommit = onCommit !== commit
        let started: string
        if (ready.ready && !other && !otherCommit) started = `already running and ready (${ready.detail})`
        else {
          const state = await runtime.state(targetColor)
          if (state.running) await runtime.stop(targetColor, config.stop.timeoutSeconds * 1000)
          const pinned = compose
            ? `${image ? await compose.pinImage(targetColor, image) : `${compose.unpin(targetColor)}: no image recorded in ${need().id}/images.txt`}; `
            : ''
          // The checkout comes after the database rollback: the old commit no longer has the newer revision's
          // downgrade script.
          const checkedOut =
            systemd && commit ? `checkout ${(await systemd.checkout(targetColor, commit)).detail}; ` : ''
          let how: string
          try {
            how = await runtime.start(targetColor)
          } catch (e) {
            if (e instanceof OperationError && systemd)
              throw new OperationError(`${e.message}${await journalOf(targetColor)}`, e.reasonCode)
            throw e
          }
          started =
            (other ? `ran ${other.imageId.slice(0, 19)}, not the recorded image: ` : '') +
            (systemd && otherCommit && ready.ready
              ? `ran commit ${short(onCommit ?? '?')}, not the recorded ${short(commit ?? '?')}: `
              : '') +
            `${pinned}${checkedOut}${state.running ? 're' : ''}${how}`
        }
        await nginx.switchUpstream(
          config.targets[targetColor].upstream,
          `active=${targetColor} version=${config.targets[targetColor].version} (level 2 rollback to ${need().id}, run ${record.id})`
        )
        return `${label(targetColor)} ${started}; nginx → ${config.targets[targetColor].upstream}, reloaded`
      }
    },
    {
      name: 'Wait for health',
      kind: 'read',
      budgetSeconds: 60,
      describe: () =>
        `poll ${label(targetColor)}'s ${config.health.statusPath} every ${config.health.intervalSeconds}s (up to ` +
        `${config.health.waitSeconds}s), then ${config.health.confirmRequests} consecutive responses through nginx from it`,
      async run({ signal }) {
        const started = performance.now()
        const waitMs = config.health.waitSeconds * 1000
        let polls = 0
        let ready = await targetReady(config, targetColor, signal)
        while (!ready.ready) {
          if (signal.aborted || performance.now() - started > waitMs)
            throw new OperationError(
              `${label(targetColor)} did not become ready in ${Math.round((performance.now() - started) / 1000)}s: ${ready.detail}` +
                (await journalOf(targetColor)),
              'unhealthy'
            )
          await sleep(config.health.intervalSeconds * 1000, signal)
          polls++
          ready = await targetReady(config, targetColor, signal)
        }
        const readyMs = Math.round(performance.now() - started)
        const docker = compose
          ? `; Docker healthcheck: ${await compose.waitHealthy(targetColor, signal, {
              timeoutMs: Math.max(1000, waitMs - (performance.now() - started))
            })}`
          : ''
        const served = await confirmServedBy(service, targetColor, config.health.confirmRequests, signal)
        return (
          `${label(targetColor)} ready after ${readyMs} ms (${polls} waits of ${config.health.intervalSeconds}s)${docker}; ` +
          `${config.health.confirmRequests} consecutive responses through nginx from ${targetColor} in ${served.ms} ms`
        )
      }
    },
    {
      name: 'Report',
      kind: 'read',
      budgetSeconds: 30,
      describe: () =>
        `check nginx serves ${targetColor}, ${failedColor()} is stopped and the schema is the backup's`,
      async run({ signal }) {
        const b = need()
        // Wait for health has just seen consecutive responses from the target: one transient failure (a reset
        // connection, seen behind docker-proxy) must not fail — and maybe escalate — a rollback that worked.
        const misses: string[] = []
        let res = await probeThroughNginx(config, signal)
        while ((!res.ok || answeredBy(config, res) !== targetColor) && misses.length < 2 && !signal.aborted) {
          misses.push(`HTTP ${res.status}${res.error ? ` ${res.error}` : ''}`)
          await sleep(500, signal)
          res = await probeThroughNginx(config, signal)
        }
        if (!res.ok || answeredBy(config, res) !== targetColor)
          throw new OperationError(
            `nginx does not serve ${targetColor}: HTTP ${res.status} ${res.error ?? ''}` +
              (misses.length ? ` (3 probes: ${[...misses, `HTTP ${res.status}`].join(', ')})` : '')
          )
        const failed = await runtime.state(failedColor())
        const schema = config.database ? await currentSchemaVersion(config.database) : undefined
        const want = backupSchemaVersion(b)
        if (config.database && want !== undefined && schema !== want)
          throw new OperationError(`the schema is at ${schema ?? 'no version'}, not the backup's ${want}`)
        const onCommit = systemd ? await systemd.gitCommit(targetColor) : undefined
        if (systemd && onCommit !== needCheckout().to)
          throw new OperationError(
            `${targetColor}'s checkout is at ${onCommit ?? '?'}, not the backup's recorded ${needCheckout().to}`,
            'checkout_failed'
          )
        return (
          `${record.from ?? '?'} → ${record.to ?? '?'} from backup ${b.id}: nginx serves ${label(targetColor)}` +
          (misses.length ? ` (after ${misses.length} failed probe(s): ${misses.join(', ')})` : '') +
          '; ' +
          `${label(failedColor())} ${failed.detail}` +
          (config.database ? `; schema ${schema ?? 'unrecorded'}` : '') +
          (onCommit ? `; ${targetColor} on commit ${short(onCommit)} (the backup's)` : '') +
          (record.dataLoss ? `; database restored to ${record.dataLoss.restoredTo} (Method 2)` : '')
        )
      }
    },
    finalValidationStep(service, record, { name: 'Final validation', budgetSeconds: 180, thorough: true })
  ] satisfies Step[]
}
