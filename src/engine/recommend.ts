import { userInfo } from 'node:os'
import path from 'node:path'
import type { Color, Config } from '../core/config'
import { messageOf } from '../core/errors'
import { findPgBinDir } from '../drivers/postgres-cluster'
import { MemoryLogger } from '../core/logger'
import type { Level } from '../core/run-record'
import { listening } from './probes'
import { rollback } from './rollback'
import { activeColor, targetReady, type Service } from './service'
import { breachRecord, latestPreBreachBackup, readSecurityHold } from './security-hold'

/**
 * What to do, checked before it is said: every level recommended has had its plan dry-run and passed; when the
 * runbook's answer is not a rollback (nginx or the database is simply not running, the last known good target is
 * stopped, a security hold is in place) that action is named with the command to run.
 */

export type RecommendedAction =
  | 'rollback'
  | 'start-nginx'
  | 'start-database'
  | 'restart-last-good'
  | 'security-hold'
  | 'monitor'
  | 'escalate-by-hand'

export interface LevelCheck {
  level: Level
  ok: boolean
  detail: string
}

export interface Recommendation {
  action: RecommendedAction
  /** The rollback level whose dry run passed (for rollback, or as the next step after a non-rollback action). */
  level: Level | null
  /** What to run, in order. */
  commands: string[]
  why: string
  /** Every dry run tried, in order. */
  checked: LevelCheck[]
}

export interface RecommendFacts {
  /** The level the decision tree asks for; null when it says monitor. */
  wanted: Level | null
  nginxListening: boolean
  /** The database refuses connections (its port is closed): start it before anything else. */
  databaseDown?: { detail: string }
}

/** Dry-runs one level quietly (no lock, no record, nothing changed) and says whether its plan passes. */
export async function dryRunLevel(
  service: Service,
  level: Level,
  target?: string,
  allowUncapturedDatabase = false
): Promise<LevelCheck> {
  const quiet: Service = { ...service, log: new MemoryLogger() }
  try {
    const { record, error } = await rollback(quiet, {
      level,
      target,
      reason: 'backout recommendation check (dry run)',
      dryRun: true,
      allowUncapturedDatabase,
      confirm: () => Promise.resolve(false)
    })
    if (error === undefined && record.status === 'planned')
      return { level, ok: true, detail: `dry run passed (${record.steps.length} steps planned)` }
    const failed = record.steps.find(s => s.status === 'failed')
    return {
      level,
      ok: false,
      detail: `dry run ${record.status}${failed ? ` at "${failed.name}"` : ''}: ${messageOf(error ?? record.error)}`
    }
  } catch (e) {
    return { level, ok: false, detail: `dry run refused: ${messageOf(e)}` }
  }
}

const quote = (arg: string): string =>
  /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`
const shellLine = (argv: readonly string[]): string => argv.map(quote).join(' ')

/** The command that starts nginx: the reload command without `-s reload`, or systemctl start for systemctl. */
export function nginxStartCommand(config: Config): string {
  const reload = config.nginx.reload
  const s = reload.indexOf('-s')
  if (s > 0 && reload[s + 1] === 'reload') return shellLine([...reload.slice(0, s), ...reload.slice(s + 2)])
  if (reload[0]?.endsWith('systemctl')) return shellLine(reload.map(a => (a === 'reload' ? 'start' : a)))
  return 'start nginx (e.g. sudo systemctl start nginx)'
}

/** The command that starts the database server (as its owner, waiting until it accepts connections). */
export function databaseStartCommand(config: Config): string {
  const db = config.database
  if (db?.kind !== 'postgres') return 'start the database server'
  if (db.dataDir) {
    const binDir = db.binDir ?? findPgBinDir()
    const pgCtl = binDir ? path.join(binDir, 'pg_ctl') : 'pg_ctl'
    const argv = [pgCtl, '-D', db.dataDir, '-l', path.join(db.dataDir, 'pg_ctl-start.log'), '-w', 'start']
    const asOwner = userInfo().uid === 0 ? ['runuser', '-u', 'postgres', '--', ...argv] : argv
    return `${shellLine(asOwner)}   # or, for a packaged cluster: sudo systemctl start postgresql`
  }
  return 'sudo systemctl start postgresql'
}

/** How to start one target by hand (the runbook's "try with last known good version"). */
export function targetStartCommand(config: Config, color: Color): string {
  const t = config.targets[color]
  if (t.process)
    return `${shellLine(t.process.command)}   # ${color} ${t.version}; pid file ${t.process.pidFile}`
  if (t.compose) return `docker compose up -d   # ${color} ${t.version}`
  return `start ${color} ${t.version}`
}

const levelCommand = (level: Level, target?: string, allowUncapturedDatabase = false): string =>
  `backout rollback --level ${level}${target ? ` --target ${target}` : ''}${allowUncapturedDatabase ? ' --allow-uncaptured-database' : ''}`

/**
 * The recommendation, in the runbook's order: a security hold first (nothing restarts until released; then Level 3
 * from a backup taken before the breach), nginx or the database not running (start it), then the first level from
 * the wanted one up whose dry run passes, then — when none does and the last known good target is stopped —
 * starting it by hand.
 */
export async function recommend(service: Service, facts: RecommendFacts): Promise<Recommendation> {
  const { config } = service
  const checked: LevelCheck[] = []
  const hold = readSecurityHold(config)
  if (hold) {
    const breach = breachRecord(config)
    const before = latestPreBreachBackup(service)
    return {
      action: 'security-hold',
      level: 3,
      commands: [
        'backout emergency release --reason "approved by <security team contact>"',
        before
          ? levelCommand(3, before.id)
          : 'backout list   # no backup older than the breach: restore by hand'
      ],
      why:
        `security hold since ${hold.since} (${hold.reason}): DO NOT RESTART until the security team approves. ` +
        `Then restore from a backup taken before the breach (${breach?.breachAt ?? hold.since})` +
        (before ? `: ${before.id} (${before.manifest.createdAt})` : ' — there is none in the backup store') +
        '; Level 2 would keep whatever the attacker left in the data dir',
      checked
    }
  }

  const active = activeColor(service)
  const previous: Color | undefined = active === 'blue' ? 'green' : active === 'green' ? 'blue' : undefined
  const [liveReady, previousReady] = await Promise.all(
    [active, previous].map(c => (c ? targetReady(config, c).then(r => r.ready) : Promise.resolve(false)))
  )

  if (!facts.nginxListening && (liveReady || previousReady)) {
    const next = liveReady ? undefined : await dryRunLevel(service, 1)
    if (next) checked.push(next)
    return {
      action: 'start-nginx',
      level: next?.ok ? 1 : null,
      commands: [nginxStartCommand(config), ...(next?.ok ? [levelCommand(1)] : [])],
      why:
        `nginx does not listen on ${new URL(config.nginx.url).host} while ${liveReady ? `the live target ${active}` : `the previous target ${previous}`} ` +
        'is healthy: start nginx — a rollback cannot help while nothing routes traffic' +
        (next ? (next.ok ? `; then Level 1 to switch back to ${previous} (${next.detail})` : '') : ''),
      checked
    }
  }

  if (facts.databaseDown) {
    // A database that will not start cannot be captured first: the fallback is Level 3 with the logged override
    // (Level 3 refuses to replace a database it could not copy unless told so).
    const fallback = await firstPassing(service, facts.wanted ?? 3, checked, true)
    return {
      action: 'start-database',
      level: fallback?.level ?? null,
      commands: [
        databaseStartCommand(config),
        ...(fallback
          ? [
              `${levelCommand(fallback.level, undefined, fallback.level === 3)}   # only if it does not start or its data is damaged`
            ]
          : [])
      ],
      why:
        `the database refuses connections (${facts.databaseDown.detail}): start it — no rollback runs without it` +
        (fallback ? `; if it will not start, Level ${fallback.level} (${fallback.detail})` : ''),
      checked
    }
  }

  if (facts.wanted === null)
    return {
      action: 'monitor',
      level: null,
      commands: ['backout assess'],
      why: 'no rollback: monitor',
      checked
    }

  const passing = await firstPassing(service, facts.wanted, checked)
  if (passing)
    return {
      action: 'rollback',
      level: passing.level,
      commands: [levelCommand(passing.level)],
      why:
        `Level ${passing.level}: ${passing.detail}` +
        (passing.level !== facts.wanted
          ? ` (Level ${facts.wanted} was wanted but its plan fails: ${checked.find(c => c.level === facts.wanted)?.detail ?? '?'})`
          : ''),
      checked
    }

  if (previous && !previousReady && (await listening(config.targets[previous].upstream)) === false)
    return {
      action: 'restart-last-good',
      level: 1,
      commands: [targetStartCommand(config, previous), levelCommand(1)],
      why:
        `no level's plan passes (${checked.map(c => `Level ${c.level}: ${c.detail}`).join('; ')}); ` +
        `the last known good target ${previous} ${config.targets[previous].version} is stopped: start it, then Level 1`,
      checked
    }
  return {
    action: 'escalate-by-hand',
    level: null,
    commands: ['backout emergency outage'],
    why:
      `no level's plan passes (${checked.map(c => `Level ${c.level}: ${c.detail}`).join('; ')}) — ` +
      'restore from the infrastructure backup (contact the infrastructure team)',
    checked
  }
}

async function firstPassing(
  service: Service,
  from: Level,
  checked: LevelCheck[],
  databaseDown = false
): Promise<LevelCheck | undefined> {
  for (const level of ([1, 2, 3] as const).filter(l => l >= from)) {
    const check = await dryRunLevel(service, level, undefined, databaseDown && level === 3)
    checked.push(check)
    if (check.ok) return check
  }
  return undefined
}

export function recommendationText(r: Recommendation): string {
  return [
    `Recommended: ${r.action === 'rollback' ? `Level ${r.level}` : r.action}${r.level && r.action !== 'rollback' ? ` (then Level ${r.level})` : ''} — ${r.why}`,
    ...r.commands.map(c => `  ${c}`),
    ...r.checked.map(c => `  checked: Level ${c.level} ${c.ok ? 'plan passes' : 'plan FAILS'} — ${c.detail}`)
  ].join('\n')
}
