import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync
} from 'node:fs'
import path from 'node:path'
import type { Color } from '../core/config'
import { OperationError, UserError, messageOf } from '../core/errors'
import { formatBackupId } from '../core/run-record'
import { sha256File, tarZstd } from '../drivers/archive'
import { dockerFor, type ComposeRuntime } from '../drivers/compose'
import { readPid, runningPid } from '../drivers/process'
import { diskSpace, dockerDaemon, knownPorts, listening, targetState } from './probes'
import { securityHoldFile, whoAmI, writeBreachRecord, type SecurityHold } from './security-hold'
import type { OperationResult } from './operation'
import { rollback, type RollbackRequest } from './rollback'
import { activeColor, targetReady, type Service } from './service'
import { blockCommands, dataListing, databaseEvidence, nginxFacts } from './evidence'
import { recommend, recommendationText, type Recommendation } from './recommend'
import { takeSnapshot } from './snapshot'
import { processLogFile, recentLogErrors } from './validate'

/**
 * The runbook's Emergency Procedures: a complete outage (diagnose, recommend), database corruption (stop, snapshot,
 * Level 3 on confirmation) and a security breach (isolate, collect evidence, hold every restart until released).
 */

const COLORS: readonly Color[] = ['blue', 'green']

// ---------------------------------------------------------------------------------------------------------------
// Security hold

export { readSecurityHold, releaseSecurityHold, securityHoldFile, type SecurityHold } from './security-hold'

// ---------------------------------------------------------------------------------------------------------------
// Complete service outage

export interface OutageReport {
  active: Color | undefined
  targets: {
    color: Color
    version: string
    running: boolean
    healthy: boolean
    ready: boolean
    detail: string
  }[]
  docker?: { ok: boolean; detail: string }
  disk: { low: boolean; detail: string; prunable: string[] }
  ports: { name: string; address: string; open: boolean }[]
  logs: { color: Color; source: string; errors: string[] }[]
  /** The recommended action, its level's plan checked by a dry run. */
  recommendation: Recommendation
}

/** Diagnostics for a complete outage, and the recommended action. Changes nothing. */
export async function outageDiagnostics(service: Service): Promise<OutageReport> {
  const { config } = service
  const active = activeColor(service)
  const [targets, docker, disk, ports, logs] = await Promise.all([
    Promise.all(
      COLORS.map(async color => {
        const [state, ready] = await Promise.all([
          targetState(service, color).catch((e: unknown) => ({
            running: false,
            healthy: false,
            detail: messageOf(e)
          })),
          targetReady(config, color)
        ])
        return {
          color,
          version: config.targets[color].version,
          ...state,
          ready: ready.ready,
          detail: `${state.detail}; ${ready.detail}`
        }
      })
    ),
    config.runtime === 'compose' ? dockerDaemon() : Promise.resolve(undefined),
    diskSpace(service).catch((e: unknown) => ({
      low: false,
      detail: `unknown (${messageOf(e)})`,
      prunable: []
    })),
    Promise.all(knownPorts(config).map(async p => ({ ...p, open: await listening(p.address) }))),
    Promise.all(
      COLORS.map(async color => {
        const r = await recentLogErrors(service, color, config.validate.logLines).catch(() => undefined)
        return r ? { color, source: r.source, errors: r.errors.slice(-10) } : undefined
      })
    ).then(list => list.filter(x => x !== undefined))
  ])
  // The runbook: check Docker and disk, then "try with last known good version" — whatever runs, checked first.
  const recommendation = await recommend(service, {
    wanted: 1,
    nginxListening: ports.find(p => p.name === 'nginx')?.open ?? false
  })
  return { active, targets, docker, disk, ports, logs, recommendation }
}

export function outageText(r: OutageReport): string {
  return [
    'Complete service outage — diagnostics (nothing was changed)',
    `  nginx points at: ${r.active ?? 'neither target'}`,
    ...r.targets.map(
      t =>
        `  ${t.color} ${t.version}: ${t.running ? 'running' : 'STOPPED'}${t.running && !t.healthy ? ' (unhealthy)' : ''}, ${t.ready ? 'ready' : 'not ready'} — ${t.detail}`
    ),
    `  Docker daemon: ${r.docker ? r.docker.detail : 'not used (process runtime)'}`,
    `  disk: ${r.disk.detail}`,
    `  ports: ${r.ports.map(p => `${p.name} ${p.address} ${p.open ? 'listening' : 'CLOSED'}`).join(', ')}`,
    ...(r.logs.length
      ? r.logs.flatMap(l => [
          `  last errors in ${l.source}: ${l.errors.length ? '' : 'none'}`,
          ...l.errors.map(e => `    ${e.slice(0, 200)}`)
        ])
      : ['  logs: none to read']),
    '',
    recommendationText(r.recommendation),
    '  If that fails too: restore from the infrastructure backup (contact the infrastructure team).'
  ].join('\n')
}

// ---------------------------------------------------------------------------------------------------------------
// Database corruption

export interface DbCorruptionResult {
  stopped: Partial<Record<Color, string>>
  snapshotId: string
  level3: OperationResult
  recovered: boolean
  message: string
}

/**
 * Database corruption, as the runbook does it: immediate shutdown of every service (both targets — `docker-compose
 * down`; the database server stays up for the restore), an emergency snapshot of the damaged state, then Level 3 —
 * to a backup (`target`) or, with `toTime`, to a moment by WAL replay — which asks for confirmation through
 * `confirm`. When Level 3 is refused or fails, the services stay stopped and the snapshot is kept, and the message
 * says what this emergency already changed.
 */
export async function dbCorruption(
  service: Service,
  options: Pick<RollbackRequest, 'confirm' | 'target' | 'reason' | 'toTime'>
): Promise<DbCorruptionResult> {
  const { config, runtime, log } = service
  const stopped: Partial<Record<Color, string>> = {}
  for (const color of COLORS) {
    try {
      stopped[color] = await runtime.stop(color, config.stop.timeoutSeconds * 1000)
    } catch (e) {
      stopped[color] = `FAILED to stop: ${messageOf(e)}`
    }
    log.info(`1. immediate shutdown: ${color} ${stopped[color]}`)
  }
  const shutdown = Object.entries(stopped)
    .map(([c, how]) => `${c} ${how}`)
    .join(', ')
  let snapshotId: string
  try {
    snapshotId = (await takeSnapshot(service, { safety: true, emergency: true })).id
  } catch (e) {
    throw new OperationError(
      `emergency snapshot failed: ${messageOf(e)} — already done: shutdown (${shutdown}); the services stay ` +
        'stopped and Level 3 was not started. Free space or fix the cause, then take it with ' +
        '`backout snapshot --safety`',
      'snapshot_failed'
    )
  }
  log.info(`2. emergency snapshot: ${snapshotId}`)
  let level3: OperationResult
  try {
    level3 = await rollback(service, {
      level: 3,
      target: options.target,
      toTime: options.toTime,
      reason: options.reason,
      dryRun: false,
      confirm: options.confirm
    })
  } catch (e) {
    level3 = {
      record: {
        schema: 'backout.run/v1',
        id: 'not-started',
        service: config.service,
        environment: config.environment,
        operation: 'rollback',
        level: 3,
        reason: options.reason,
        status: 'refused',
        dryRun: false,
        startedAt: new Date().toISOString(),
        rtoSeconds: config.thresholds.rtoMinutes.level3 * 60,
        steps: [],
        error: messageOf(e)
      },
      error: e
    }
  }
  const recovered = level3.error === undefined
  const again =
    `backout rollback --level 3${options.target ? ` --target ${options.target}` : ''}` +
    `${options.toTime ? ` --to-time ${options.toTime}` : ''}`
  const already = `this emergency already stopped ${shutdown} and took the emergency snapshot ${snapshotId}`
  const message = recovered
    ? `recovered by Level 3 (run ${level3.record.id}); the emergency snapshot ${snapshotId} is kept`
    : `${level3.record.status === 'refused' ? 'Level 3 was refused — Level 3 itself changed nothing' : 'Level 3 failed'} ` +
      `(${messageOf(level3.error)}), but ${already}: the services stay STOPPED and the snapshot is kept. ` +
      `Fix the cause and run \`${again}\` (--target ID picks another backup: backout list; --to-time ISO ` +
      'recovers to a moment), or contact the database administrator.'
  return { stopped, snapshotId, level3, recovered, message }
}

// ---------------------------------------------------------------------------------------------------------------
// Security breach

export interface SecurityResult {
  hold: string
  /** When the breach happened (as told, else when isolation began): later backups are never a default recovery point. */
  breachAt: string
  /** The ports nginx listens on (from `nginx -T`) and the exact commands that block them. */
  ports: number[]
  blockCommands: string[]
  /** The runbook's remaining steps: no restart until approved, contact, follow the plan. */
  nextSteps: string[]
  stopped: Partial<Record<Color, string>>
  evidence: string
  sha256: string
  files: string[]
  forensicImages: string[]
  notes: string[]
}

function timestamp(now: Date): string {
  return formatBackupId(now)
}

/** Copies a file into the evidence tree under its absolute path; returns whether it existed. */
function collect(file: string, root: string, under: string): boolean {
  if (!existsSync(file) || !statSync(file).isFile()) return false
  const to = path.join(root, under, path.resolve(file).replace(/^\/+/, ''))
  mkdirSync(path.dirname(to), { recursive: true })
  copyFileSync(file, to)
  return true
}

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(e =>
    e.isDirectory()
      ? listFiles(path.join(dir, e.name), path.join(prefix, e.name))
      : [path.join(prefix, e.name)]
  )
}

function processInfo(pidFile: string): Record<string, unknown> {
  const pid = readPid(pidFile)
  if (pid === undefined) return { pidFile, pid: null }
  const read = (f: string): string | null => {
    try {
      return readFileSync(`/proc/${pid}/${f}`, 'utf8')
    } catch {
      return null
    }
  }
  return {
    pidFile,
    pid,
    alive: runningPid(pidFile) !== undefined,
    cmdline: read('cmdline')?.split('\0').filter(Boolean) ?? null,
    status: read('status')
  }
}

/**
 * Security breach: hold every restart first (state/security-hold, enforced by runOperation), record the runtime
 * state and — compose — `docker commit` each target's containers (before they are removed), stop both targets, then
 * collect logs, config files and the state into <backups.dir>/evidence-<YYYYMMDD-HHMMSS>.tar.zst with a SHA256SUMS
 * manifest inside and the archive's own sha256 beside it. nginx keeps running and answers 502: block ports 80/443
 * at the firewall as the runbook says — backout does not touch iptables.
 */
export async function securityIsolate(
  service: Service,
  options: {
    reason: string
    configFile?: string
    now?: Date
    /** When the breach happened, if known to be earlier than now: backups from then on are never a default recovery point. */
    breachAt?: string
  }
): Promise<SecurityResult> {
  const { config, runtime, log, nginx } = service
  const now = options.now ?? new Date()
  if (options.breachAt !== undefined && !(Date.parse(options.breachAt) <= now.getTime()))
    throw new UserError(
      `--since: "${options.breachAt.slice(0, 40)}" is not a past time — use ISO-8601, e.g. 2026-11-23T12:00:00Z`,
      'bad_argument'
    )
  const ts = timestamp(now)
  const hold = securityHoldFile(config)
  mkdirSync(config.state.dir, { recursive: true })
  mkdirSync(config.backups.dir, { recursive: true })
  const evidence = path.join(config.backups.dir, `evidence-${ts}.tar.zst`)
  const held: SecurityHold = { since: now.toISOString(), reason: options.reason, by: whoAmI(), evidence }
  writeFileSync(hold, JSON.stringify(held, null, 2) + '\n')
  const breachAt = options.breachAt ?? now.toISOString()
  writeBreachRecord(config, {
    breachAt,
    recordedAt: now.toISOString(),
    reason: options.reason,
    evidence
  })
  log.info(
    `security hold in place: ${hold} — nothing restarts until \`backout emergency release --reason ...\``
  )

  const staging = `${evidence.slice(0, -'.tar.zst'.length)}.partial`
  rmSync(staging, { recursive: true, force: true })
  mkdirSync(staging, { recursive: true })
  const notes: string[] = []
  const forensicImages: string[] = []

  // Runtime state first, while it still is the state of the breach.
  const state: Record<string, unknown> = {
    collectedAt: now.toISOString(),
    reason: options.reason,
    service: config.service,
    runtime: config.runtime,
    nginxUpstream: nginx.activeUpstream() ?? null,
    active: activeColor(service) ?? null,
    targets: {}
  }
  for (const color of COLORS) {
    const t = config.targets[color]
    const s = await targetState(service, color).catch((e: unknown) => ({ error: messageOf(e) }))
    ;(state.targets as Record<string, unknown>)[color] = {
      version: t.version,
      upstream: t.upstream,
      state: s,
      ...(t.process ? { process: processInfo(t.process.pidFile) } : {})
    }
  }
  if (runtime.kind === 'compose' && 'containersJson' in runtime) {
    const docker = dockerFor(process.env)
    mkdirSync(path.join(staging, 'logs'), { recursive: true })
    for (const color of COLORS) {
      const containers = await (runtime as ComposeRuntime).containersJson(color).catch((e: unknown) => {
        notes.push(`${color}: cannot list containers: ${messageOf(e)}`)
        return []
      })
      ;(state.targets as Record<string, Record<string, unknown>>)[color]!.containers = containers
      for (const c of containers) {
        try {
          const logs = await docker
            .getContainer(c.id)
            .logs({ stdout: true, stderr: true, timestamps: true, follow: false })
          writeFileSync(path.join(staging, 'logs', `${c.name}.log`), logs)
        } catch (e) {
          notes.push(`${c.name}: logs not collected: ${messageOf(e)}`)
        }
        if (c.service !== config.targets[color].compose?.service) continue
        try {
          const repo = `${config.service.toLowerCase()}-forensic`
          const tag = `${color}-${ts}`
          const out = (await docker.getContainer(c.id).commit({
            repo,
            tag,
            comment: `backout emergency security: ${options.reason}`,
            pause: true
          })) as { Id?: string }
          forensicImages.push(`${repo}:${tag}${out.Id ? ` (${out.Id})` : ''}`)
        } catch (e) {
          notes.push(`${c.name}: docker commit failed: ${messageOf(e)}`)
        }
      }
    }
  }
  state.forensicImages = forensicImages
  writeFileSync(path.join(staging, 'runtime-state.json'), JSON.stringify(state, null, 2) + '\n')

  // Isolation: stop both targets — no traffic reaches the app.
  const stopped: Partial<Record<Color, string>> = {}
  for (const color of COLORS) {
    try {
      stopped[color] = await runtime.stop(color, config.stop.timeoutSeconds * 1000)
    } catch (e) {
      stopped[color] = `FAILED to stop: ${messageOf(e)}`
      notes.push(`${color} did not stop: ${messageOf(e)} — stop it by hand`)
    }
    log.info(`isolation: ${color} ${stopped[color]}`)
  }
  // Block external access: nginx still runs (and answers 502) on the ports its own configuration names.
  const nginxInfo = await nginxFacts(config)
  writeFileSync(path.join(staging, 'nginx-T.txt'), nginxInfo.dump)
  const block = blockCommands(nginxInfo.ports)
  notes.push(
    `nginx still listens on port(s) ${nginxInfo.ports.join(', ')}: block them at the firewall — ${block.join('; ')}`
  )

  // Logs (after the stop, so they hold the last lines), config files, the history and run records.
  for (const color of COLORS) {
    const file = processLogFile(config, color)
    if (file && !collect(file, staging, 'logs')) notes.push(`${color}: no log file at ${file}`)
  }
  for (const file of nginxInfo.logFiles)
    if (!collect(file, staging, 'logs/nginx')) notes.push(`nginx log ${file} not found`)
  // The data dirs as they are now: every file's sha256, size, mode and mtime.
  const listing = (await Promise.all(config.data.map(d => dataListing(d.path)))).flat()
  writeFileSync(path.join(staging, 'data-listing.txt'), listing.join('\n') + '\n')
  try {
    notes.push(`database: ${await databaseEvidence(config, path.join(staging, 'database'))}`)
  } catch (e) {
    notes.push(`database dump failed: ${messageOf(e)}`)
  }
  for (const file of [
    ...config.configFiles,
    config.nginx.upstreamFile,
    ...(options.configFile ? [options.configFile] : [])
  ])
    if (!collect(file, staging, 'config')) notes.push(`config file ${file} not found`)
  collect(config.history.log, staging, 'history')
  const runs = path.join(config.state.dir, 'runs')
  if (existsSync(runs)) for (const f of readdirSync(runs)) collect(path.join(runs, f), staging, 'state')
  writeFileSync(path.join(staging, 'notes.txt'), notes.join('\n') + '\n')

  // The manifest: every file's sha256, in sha256sum's format (sha256sum -c SHA256SUMS checks it).
  const files = listFiles(staging).sort()
  const sums = await Promise.all(files.map(async f => `${await sha256File(path.join(staging, f))}  ${f}`))
  writeFileSync(path.join(staging, 'SHA256SUMS'), sums.join('\n') + '\n')
  const written = await tarZstd(staging, evidence)
  writeFileSync(`${evidence}.sha256`, `${written.sha256}  ${path.basename(evidence)}\n`)
  rmSync(staging, { recursive: true, force: true })
  log.info(`evidence: ${evidence} (${files.length} files, sha256 ${written.sha256})`)
  const nextSteps = [
    'DO NOT RESTART until the security team approves; then: backout emergency release --reason "approved by ..."',
    'Contact: Security team immediately',
    'Follow: Security Incident Response Plan',
    `Restore only from a backup taken before the breach (${breachAt}); backups from then on are never a default recovery point`
  ]
  return {
    hold,
    breachAt,
    ports: nginxInfo.ports,
    blockCommands: block,
    nextSteps,
    stopped,
    evidence,
    sha256: written.sha256,
    files,
    forensicImages,
    notes
  }
}
