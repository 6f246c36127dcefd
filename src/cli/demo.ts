import { mkdtempSync, readFileSync, chmodSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { messageOf } from '../core/errors'
import type { Logger } from '../core/logger'
import { timelineText } from '../core/timeline'
import { loadConfig } from '../drivers/config-file'
import { pgQuery } from '../drivers/database'
import { sqliteExec } from '../drivers/sqlite-cli'
import { assess, type AssessReport } from '../engine/assess'
import { rollback } from '../engine/rollback'
import { createService } from '../engine/service'
import { takeSnapshot } from '../engine/snapshot'
import { checksText, validate } from '../engine/validate'
import { sandboxDown, sandboxUp } from '../sandbox/sandbox'

export function assessText(report: AssessReport): string {
  const a = report.assessment
  return [
    `severity: ${a.severity} — ${a.shouldRollback ? `roll back (Level ${a.recommendedLevel}), act ${a.act}` : `no rollback; ${a.act}`}`,
    ...(a.levelWhy ? [`  ${a.levelWhy}`] : []),
    'reasons:',
    ...a.reasons.map(r => `  - [${r.severity}] ${r.message}`),
    'probes:',
    ...report.probes.map(p => `  - ${p.name}: ${p.value} (${p.ms} ms)`)
  ].join('\n')
}

interface DemoOptions {
  dir?: string
  keep: boolean
  /** Which rollback to show (default 1). For 3, the data is corrupted after the snapshot first. */
  level?: 1 | 2 | 3
  appCommand: readonly string[]
  /** How the user runs this CLI, for the commands the demo prints (see cliInvocation). */
  invocation?: string
  log: Logger
}

/** What took/deadline means in the timelines the demo prints. */
export function timelineLegend(level: 1 | 2 | 3, rtoMinutes: number): string {
  return (
    `took/deadline: each step's measured time / the time it is allowed — its share of the Level ${level} ` +
    `RTO (${rtoMinutes} min), in proportion to the runbook's time for it; a step that passes its deadline ` +
    'is stopped and the run fails'
  )
}

/** Why the demo shows Level 2 or 3 when assess recommends Level 1 (the sandbox's blue is healthy). */
export const WHY_LEVEL: Record<2 | 3, string> = {
  2:
    'why Level 2: assess recommends Level 1 (blue is healthy), but Level 1 only moves traffic — the bad ' +
    "release's migration 105 (users.preferences) and its config/.env would stay. Level 2 is the runbook's " +
    'choice when a release changed the schema or the configuration: migrations down, configs and the ' +
    'previous version restored from the release backup.',
  3:
    'why Level 3: the data itself is damaged (a dropped table, rewritten rows, the corruption marker) — ' +
    'no switch or migration brings it back. Level 3 restores the database from the release backup and ' +
    'replays the archived WAL to the moment just before the damage, so the writes made after the backup survive.'
}

/**
 * The demo: a real sandbox, the bad green deployment live, then what on-call would do — assess, snapshot,
 * Level 1, validate — with the history line and each step's measured time. Returns the exit code.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  const { log } = options
  const dir = options.dir ?? mkdtempSync(path.join(tmpdir(), 'backout-demo-'))
  const level = options.level ?? 1
  const cli = options.invocation ?? 'backout'
  chmodSync(dir, 0o755)
  const print = (text: string): void => void process.stdout.write(text + '\n')
  const phase = async <T>(title: string, work: () => Promise<T>): Promise<T> => {
    const started = performance.now()
    print(`\n━━ ${title}`)
    const result = await work()
    print(`   (${((performance.now() - started) / 1000).toFixed(2)} s)`)
    return result
  }
  let ok = false
  try {
    const state = await phase(
      'sandbox up: nginx, database, blue v2.4.9 and green v2.5.0 — then green is deployed',
      () => sandboxUp({ dir, appCommand: options.appCommand, log, walArchive: level === 3 })
    )
    print(`   config: ${state.config}\n   nginx:  http://127.0.0.1:${state.nginxPort}  (${state.db})`)
    const service = createService(loadConfig(state.config), log)

    const report = await phase('assess: is this bad enough to roll back?', () =>
      assess(service, { samples: 40 })
    )
    print(assessText(report).replace(/^/gm, '   '))

    const backup = await phase('snapshot: a verified backup before touching anything', async () => {
      const info = await takeSnapshot(service, { safety: false })
      const problems = await service.store.verify(info.id)
      if (problems.length) throw new Error(`backup ${info.id} failed verification: ${problems.join('; ')}`)
      return info
    })
    print(
      `   ${backup.id}: ${backup.manifest.files.length} files, ${backup.sizeBytes} bytes, every sha256 verified`
    )

    // Level 3 on PostgreSQL: rows written after the backup, then T, then the damage — WAL replay to T keeps them.
    let toTime: string | undefined
    const db = service.config.database
    if (level === 3 && db?.kind === 'postgres' && db.walArchiveDir)
      toTime = await phase('players keep playing: 5 new users after the backup, then T', async () => {
        for (let i = 1; i <= 5; i++)
          await pgQuery(
            db.url,
            `INSERT INTO users (name, email) VALUES ('late ${i}', 'late${i}@example.test')`
          )
        await new Promise(r => setTimeout(r, 1100))
        const t = new Date().toISOString()
        await new Promise(r => setTimeout(r, 1100))
        print(`   T = ${t}: the moment to recover to (rows before it are kept, the damage after it is not)`)
        return t
      })
    if (level === 3)
      await phase(
        'corrupt the data: a dropped table, rewritten rows, junk in data/godot, the corruption marker',
        async () => {
          const bad = "DROP TABLE game_state; UPDATE users SET email = 'bad' || id || '@corrupt.test';"
          if (db?.kind === 'postgres') await pgQuery(db.url, bad)
          else if (db?.kind === 'sqlite') await sqliteExec(db.path, bad)
          writeFileSync(path.join(dir, 'data/godot/world.json'), 'junk')
          writeFileSync(path.join(dir, 'data/godot/corruption_detected'), 'detected\n')
          print('   ' + assessText(await assess(service, { samples: 10 })).split('\n')[0])
        }
      )
    const title: Record<1 | 2 | 3, string> = {
      1: 'rollback level 1: traffic back to blue through nginx',
      2: 'rollback level 2: full rollback to the release backup',
      3: 'rollback level 3: the whole service back to the release backup (blue v2.4.9, before the deployment)'
    }
    // Level 3 goes back to the backup sandbox up took before deploying green: the last known good state.
    const release =
      level === 3
        ? service.store
            .list()
            .filter(b => b.manifest.kind === 'snapshot')
            .pop()?.id
        : undefined
    if (level !== 1) print(`\n${WHY_LEVEL[level]}`.replace(/\n/g, '\n   '))
    const { record, error } = await phase(toTime ? `${title[3]}, then WAL replay to T` : title[level], () =>
      rollback(service, {
        level,
        target: release,
        toTime,
        reason: `assess: ${report.assessment.severity}, ${report.assessment.reasons[0]?.message ?? 'demo'}`,
        dryRun: false,
        confirm: () => Promise.resolve(true)
      })
    )
    print(timelineText(record).replace(/^/gm, '   '))
    print(`   ${timelineLegend(level, service.config.thresholds.rtoMinutes[`level${level}`])}`)
    if (error) throw error instanceof Error ? error : new Error(messageOf(error))

    const checks = await phase('validate: healthy and intact?', () => validate(service, { thorough: true }))
    print(checksText(checks).replace(/^/gm, '   '))

    if (toTime && db?.kind === 'postgres') {
      const [row] = await pgQuery<{ n: string }>(
        db.url,
        "SELECT count(*) AS n FROM users WHERE name LIKE 'late %'"
      )
      print(
        `   WAL replay to T: ${row?.n ?? '?'} of the 5 users written after the backup are back; the damage after T is gone`
      )
    }
    if (record.dataLoss)
      print(
        `   data-loss window: ${record.dataLoss.windowSeconds} s (restored to ${record.dataLoss.restoredTo}) — ${record.dataLoss.note}`
      )
    print('\n━━ history')
    print('   ' + readFileSync(service.config.history.log, 'utf8').trim().split('\n').slice(-1)[0])
    ok = checks.passed
  } finally {
    if (!options.keep) {
      await phase('sandbox down', () => sandboxDown(dir, log)).catch(() => undefined)
      // A directory the demo made is the demo's to remove; one the user named is left for them.
      if (!options.dir) rmSync(dir, { recursive: true, force: true })
    } else
      print(
        `\nsandbox left running in ${dir} — try: ${cli} --config ${dir}/backout.yml list\n` +
          `stop it with: ${cli} sandbox down --dir ${dir}`
      )
  }
  return ok ? 0 : 1
}
