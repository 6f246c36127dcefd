import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { createInterface } from 'node:readline/promises'
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander'
import type { Config } from '../core/config'
import { EXIT, OperationError, UserError, exitCodeFor, messageOf, reasonCodeFor } from '../core/errors'
import { historyMarkdown, historyReport, historyReportText } from '../core/history'
import type { Logger } from '../core/logger'
import { sanitizeLine } from '../core/sanitize'
import type { Level, RunRecord } from '../core/run-record'
import { timelineText } from '../core/timeline'
import { configPath, loadConfig } from '../drivers/config-file'
import { configWarnings } from '../drivers/config-warnings'
import { type CheckProject, type ScratchDatabase, checkMigrations } from '../drivers/migration-check'
import { alembicBinFor, databaseUrlFor } from '../engine/level2'
import { rollbackWithEscalation } from '../engine/escalate'
import { rollback } from '../engine/rollback'
import type { Step } from '../engine/run-steps'
import { createService, type Service } from '../engine/service'
import { takeSnapshot } from '../engine/snapshot'
import { recoverableWindow } from '../engine/database-backup'
import { verifyBackup } from '../engine/verify'
import { runAppServer } from '../sandbox/app-server'
import { sandboxDown, sandboxUp } from '../sandbox/sandbox'
import { ConsoleLogger } from './console-logger'
import { followThrough, monitorChoice, parseSeconds, register as registerMonitor } from './commands/monitor'
import { incidentBody, incidentTitle, postMortemBody, stakeholderNotification } from '../core/incident'
import { analyse, incidentFacts } from '../engine/incident'
import { breachRecord, isPostBreach } from '../engine/security-hold'
import { latestRunRecord, readRunRecord } from '../engine/operation'
import { assessText, runDemo } from './demo'
import { cliInvocation } from './invocation'
import { printMetrics } from './commands/history-metrics'
import { confirmEstimate, outcomeLine } from '../core/history-metrics'
import { register as registerInit } from './commands/init'
import { register as registerDoctor } from './commands/doctor'
import { assess } from '../engine/assess'
import { recommendationText } from '../engine/recommend'
import { checksText, validate } from '../engine/validate'
import {
  dbCorruption,
  outageDiagnostics,
  outageText,
  releaseSecurityHold,
  securityIsolate
} from '../engine/emergency'

/** What the CLI prints on stdout: human text, or one JSON document with --json. */
interface Output {
  json: boolean
  result(human: string, data: unknown): void
}

interface GlobalOptions {
  config?: string
  json?: boolean
  verbose?: boolean
}

function parseLevel(value: string): Level {
  if (value === '1' || value === '2' || value === '3') return Number(value) as Level
  throw new InvalidArgumentError('expected 1, 2 or 3')
}

function parseCount(value: string): number {
  const n = Number(value)
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number ≥ 1')
  return n
}

/** The runbook's confirmation: shows what will happen and asks for the word ROLLBACK on the terminal. */
function terminalConfirm(
  config: Config,
  level: Level,
  log: Logger
): (plan: readonly Step[]) => Promise<boolean> {
  return async plan => {
    const history = existsSync(config.history.log) ? readFileSync(config.history.log, 'utf8').split('\n') : []
    log.info(
      [
        '',
        `About to run Level ${level} rollback on ${config.service} (${config.environment}):`,
        ...plan.map(s => `  - ${s.name}: ${s.describe()}`),
        confirmEstimate(history, level, config.thresholds.rtoMinutes[`level${level}`]),
        ''
      ].join('\n')
    )
    const rl = createInterface({ input: process.stdin, output: process.stderr })
    try {
      const answer = await rl.question("Type 'ROLLBACK' to confirm: ")
      return answer.trim() === 'ROLLBACK'
    } finally {
      rl.close()
    }
  }
}

function serviceFrom(opts: GlobalOptions, log: Logger): Service {
  const config = loadConfig(configPath(opts.config))
  for (const warning of configWarnings(config)) log.warn(warning)
  return createService(config, log)
}

function crashHook(): number | undefined {
  const v = process.env.BACKOUT_TEST_CRASH_AFTER_STEP
  return v ? Number(v) : undefined
}

export function buildProgram(log: Logger, setExit: (code: number) => void): Command {
  const program = new Command('backout')
    .description('Production rollback as code: assess, snapshot, roll back, validate, file the incident.')
    .option('-c, --config <file>', 'the service config (default: $BACKOUT_CONFIG or ./backout.yml)')
    .option('--json', 'print one JSON document on stdout instead of text')
    .option('-v, --verbose', 'more detail on stderr')
    .exitOverride()
    .configureOutput({ writeErr: s => process.stderr.write(s) })

  const out = (): Output => {
    const json = Boolean(program.opts<GlobalOptions>().json)
    return {
      json,
      result(human, data) {
        process.stdout.write(json ? JSON.stringify(data, null, 2) + '\n' : human + '\n')
      }
    }
  }
  const globals = (): GlobalOptions => program.opts<GlobalOptions>()

  const reportRun = (record: RunRecord, error: unknown): void => {
    out().result(timelineText(record) + (error ? `\n${outcomeLine(record, messageOf(error))}` : ''), record)
    if (error) setExit(exitCodeFor(error))
  }

  program
    .command('rollback')
    .description('roll the service back: level 1 (blue/green switch), 2 (full), 3 (point-in-time)')
    .addOption(new Option('-l, --level <n>', 'rollback level').argParser(parseLevel))
    .option('-t, --target <id>', 'backup id to roll back to (backout list shows them)')
    .option('--to-time <iso>', 'Level 3: recover the database to this moment by WAL replay')
    .option('--quick', "Level 1 without confirmation (the runbook's rollback.sh --quick)")
    .option('--auto-confirm', 'do not ask for ROLLBACK (for automation)')
    .option('--dry-run', 'print every step and what it would change; change nothing')
    .option(
      '--escalate',
      'when the level fails or refuses, go on to the next one (asking again unless --auto-confirm)'
    )
    .option(
      '--allow-uncaptured-database',
      'Level 3: go on although the emergency snapshot cannot capture the database (recorded in the history)'
    )
    .option('-r, --reason <text>', 'why (goes into the history log and the incident)', 'manual rollback')
    .option('--no-monitor', 'skip the monitoring window after a successful rollback')
    .option('--monitor-seconds <n>', 'monitoring window (default: Level 1 120 s, others 900 s)', parseSeconds)
    .action(
      async (o: {
        allowUncapturedDatabase?: boolean
        monitor: boolean
        monitorSeconds?: number
        level?: Level
        target?: string
        toTime?: string
        quick?: boolean
        autoConfirm?: boolean
        dryRun?: boolean
        escalate?: boolean
        reason: string
      }) => {
        const level: Level | undefined = o.quick ? 1 : o.level
        if (level === undefined)
          throw new UserError('rollback needs --level 1, 2 or 3 (or --quick for Level 1)', 'bad_argument')
        if (o.quick && o.level !== undefined && o.level !== 1)
          throw new UserError(
            `--quick is Level 1; it cannot be combined with --level ${o.level}`,
            'bad_argument'
          )
        const autoConfirm = Boolean(o.autoConfirm || o.quick)
        if (!o.dryRun && !autoConfirm && !process.stdin.isTTY)
          throw new UserError(
            'no terminal to confirm on — pass --auto-confirm to roll back without typing ROLLBACK, or --dry-run to see the plan',
            'not_confirmed'
          )
        const service = serviceFrom(globals(), log)
        const confirmFor = (l: Level): ((plan: readonly Step[]) => Promise<boolean>) =>
          autoConfirm ? () => Promise.resolve(true) : terminalConfirm(service.config, l, log)
        const req = {
          level,
          target: o.target,
          toTime: o.toTime,
          reason: o.reason,
          dryRun: Boolean(o.dryRun),
          confirm: confirmFor(level),
          allowUncapturedDatabase: o.allowUncapturedDatabase,
          crashAfterStep: crashHook()
        }
        const follow = monitorChoice(o.monitor, o.monitorSeconds, log)
        if (!o.escalate) {
          const { record, error } = await rollback(service, req)
          reportRun(record, error)
          if ((await followThrough(service, record, follow, log))?.passed === false) setExit(EXIT.failed)
          return
        }
        const { results } = await rollbackWithEscalation(service, req, confirmFor)
        const last = results[results.length - 1]
        if (last && (await followThrough(service, last.record, follow, log))?.passed === false)
          setExit(EXIT.failed)
        out().result(
          results
            .map(r => timelineText(r.record) + (r.error ? `\n${r.record.status}: ${messageOf(r.error)}` : ''))
            .join('\n\n'),
          results.map(r => r.record)
        )
        if (last?.error) setExit(exitCodeFor(last.error))
      }
    )

  registerMonitor(program, {
    service: () => serviceFrom(globals(), log),
    log,
    print: (human, data) => out().result(human, data),
    setExit
  })

  program
    .command('check-migrations')
    .description(
      'the newest migration must reverse: upgrade head → downgrade one → upgrade head on a scratch database'
    )
    .option('--admin-url <url>', 'PostgreSQL server for the scratch database (default: database.url)')
    .action(async (o: { adminUrl?: string }) => {
      const config = loadConfig(configPath(globals().config))
      const db = config.database
      const m = db?.migrations
      if (!db || !m)
        throw new UserError(
          'database.migrations is not set in the config — set it to {kind: sql, dir} or {kind: alembic, ini}',
          'bad_config'
        )
      const adminUrl = o.adminUrl ?? (db.kind === 'postgres' ? db.url : undefined)
      const project: CheckProject =
        m.kind === 'alembic'
          ? {
              kind: 'alembic',
              projectDir: path.dirname(m.ini),
              config: path.basename(m.ini),
              alembicBin: alembicBinFor(m.command)
            }
          : { kind: 'sql', migrationsDir: m.dir }
      // Alembic on SQLite checks on a temp SQLite file; SQL migrations and PostgreSQL on a scratch database.
      const database: ScratchDatabase =
        (m.kind === 'sql' || db.kind === 'postgres') && adminUrl
          ? { kind: 'postgres', adminUrl }
          : { kind: 'sqlite' }
      const result = await checkMigrations({ project, database, live: databaseUrlFor(db), logger: log })
      out().result([result.message, ...result.differences.map(d => `  ${d}`)].join('\n'), result)
      if (!result.ok) setExit(EXIT.failed)
    })

  program
    .command('assess')
    .description("measure the service and classify severity with the runbook's decision tree")
    .option(
      '--samples <n>',
      'requests per round through nginx when there is no Prometheus (default: assess.samples)',
      parseCount
    )
    .option('--rounds <n>', 'rounds of samples before a verdict (default: assess.rounds)', parseCount)
    .option(
      '--failure-limit <n>',
      'rounds over a threshold that make the verdict (default: assess.failureLimit)',
      parseCount
    )
    .action(async (o: { samples?: number; rounds?: number; failureLimit?: number }) => {
      const report = await assess(serviceFrom(globals(), log), {
        samples: o.samples,
        rounds: o.rounds,
        failureLimit: o.failureLimit
      })
      out().result(
        assessText(report) + (report.recommendation ? `\n${recommendationText(report.recommendation)}` : ''),
        report
      )
    })

  program
    .command('validate')
    .description('prove the service is healthy and its data intact')
    .option('--thorough', 'also the smoke tests, the debug ports and monitoring for --duration')
    .option('--duration <seconds>', 'thorough: monitor this long (default: validate.durationSeconds)', Number)
    .option('--samples <n>', 'requests sampled through nginx for error rate and p95', parseCount)
    .action(async (o: { thorough?: boolean; duration?: number; samples?: number }) => {
      if (o.duration !== undefined && !(Number.isFinite(o.duration) && o.duration >= 0))
        throw new UserError('--duration: expected a number of seconds ≥ 0', 'bad_argument')
      const report = await validate(serviceFrom(globals(), log), {
        thorough: Boolean(o.thorough),
        durationSeconds: o.duration,
        samples: o.samples
      })
      out().result(checksText(report), report)
      if (!report.passed) setExit(EXIT.failed)
    })

  const emergency = program
    .command('emergency')
    .description(
      "the runbook's Emergency Procedures: outage, db-corruption, security — and release of a security hold"
    )
  emergency
    .command('outage')
    .description(
      'complete outage: diagnostics (targets, Docker, disk, ports, log errors) and the recommended action; changes nothing'
    )
    .action(async () => {
      const report = await outageDiagnostics(serviceFrom(globals(), log))
      out().result(outageText(report), report)
    })
  emergency
    .command('db-corruption')
    .description(
      'database corruption: stop the live target now, take an emergency snapshot, then Level 3 on confirmation'
    )
    .option('-t, --target <id>', 'the backup Level 3 recovers to (default: the newest good snapshot)')
    .option('--to-time <iso>', 'recover the database to this moment by WAL replay (Level 3 --to-time)')
    .option('--auto-confirm', 'do not ask for ROLLBACK before Level 3 (for automation)')
    .option('-r, --reason <text>', 'why (goes into the history log)', 'emergency: database corruption')
    .action(async (o: { target?: string; toTime?: string; autoConfirm?: boolean; reason: string }) => {
      const service = serviceFrom(globals(), log)
      const confirm = o.autoConfirm
        ? (): Promise<boolean> => Promise.resolve(true)
        : process.stdin.isTTY
          ? terminalConfirm(service.config, 3, log)
          : (): Promise<boolean> => {
              log.error(
                'no terminal to confirm Level 3 on — pass --auto-confirm to run it without typing ROLLBACK'
              )
              return Promise.resolve(false)
            }
      const r = await dbCorruption(service, {
        confirm,
        target: o.target,
        toTime: o.toTime,
        reason: o.reason
      })
      out().result(
        [
          ...Object.entries(r.stopped).map(([c, how]) => `shutdown: ${c} ${how}`),
          `emergency snapshot: ${r.snapshotId}`,
          timelineText(r.level3.record),
          r.message
        ].join('\n'),
        {
          stopped: r.stopped,
          snapshotId: r.snapshotId,
          recovered: r.recovered,
          message: r.message,
          record: r.level3.record
        }
      )
      if (!r.recovered) setExit(EXIT.failed)
    })
  emergency
    .command('security')
    .description(
      'security breach: hold every restart, stop both targets, collect the evidence into a checksummed archive'
    )
    .option('-r, --reason <text>', 'what was seen', 'security breach')
    .option(
      '--since <iso>',
      'when the breach happened, if earlier than now (backups from then on are not restored)'
    )
    .action(async (o: { reason: string; since?: string }) => {
      const r = await securityIsolate(serviceFrom(globals(), log), {
        reason: o.reason,
        configFile: configPath(globals().config),
        breachAt: o.since
      })
      out().result(
        [
          ...Object.entries(r.stopped).map(([c, how]) => `isolated: ${c} ${how}`),
          `evidence: ${r.evidence} (${r.files.length} files, SHA256SUMS inside; sha256 ${r.sha256})`,
          ...r.forensicImages.map(i => `forensic image: ${i}`),
          ...r.notes.map(n => `note: ${n}`),
          `security hold: ${r.hold} — DO NOT RESTART until the security team approves; then: backout emergency release --reason TEXT`,
          `block external access now (nginx listens on ${r.ports.join(', ')}):`,
          ...r.blockCommands.map(c => `  ${c}`),
          'next:',
          ...r.nextSteps.map(n => `  ${n}`)
        ].join('\n'),
        r
      )
    })
  emergency
    .command('release')
    .description('lift the security hold (once the security team approves)')
    .requiredOption('-r, --reason <text>', 'who approved and why')
    .action((o: { reason: string }) => {
      const config = loadConfig(configPath(globals().config))
      const hold = releaseSecurityHold(config, o.reason)
      out().result(`security hold released (held since ${hold.since}: ${hold.reason})`, {
        released: hold,
        reason: o.reason
      })
    })

  program
    .command('demo')
    .description(
      'the whole flow on a throwaway sandbox: up → assess → snapshot → Level 1 → validate → history → down'
    )
    .option('--dir <dir>', 'where the sandbox goes (default: a new temp dir)')
    .option('--keep', 'leave the sandbox running at the end')
    .addOption(
      new Option(
        '-l, --level <n>',
        'which rollback to show: 1, 2 or 3 (3 corrupts the data first)'
      ).argParser(parseLevel)
    )
    .action(async (o: { dir?: string; keep?: boolean; level?: Level }) => {
      const script = process.argv[1]
      if (!script) throw new Error('cannot tell which script runs backout')
      const quiet = new ConsoleLogger(process.stderr, false, true)
      const code = await runDemo({
        dir: o.dir,
        keep: Boolean(o.keep),
        level: o.level,
        appCommand: [process.execPath, script, 'sandbox'],
        invocation: cliInvocation(script),
        log: quiet
      })
      setExit(code)
    })

  program
    .command('snapshot')
    .description('take a verified backup of the service now')
    .option('--safety', 'name it rollback-safety-<id> and record it in state/last_safety_backup')
    .action(async (o: { safety?: boolean }) => {
      const service = serviceFrom(globals(), log)
      const info = await takeSnapshot(service, { safety: Boolean(o.safety) })
      const problems = await service.store.verify(info.id)
      if (problems.length)
        throw new Error(`backup ${info.id} failed its own verification: ${problems.join('; ')}`)
      const postBreach = isPostBreach(service.config, info)
      out().result(
        `${info.id}  ${info.manifest.files.length} files, ${info.sizeBytes} bytes, verified` +
          (postBreach
            ? `\nPOST-BREACH: taken after the recorded breach (${breachRecord(service.config)?.breachAt}) — it may hold what the attacker left; it is never a default recovery point`
            : ''),
        postBreach ? { ...info.manifest, postBreach } : info.manifest
      )
    })

  program
    .command('list')
    .description('the backups, newest first, with current / previous markers')
    .action(async () => {
      const service = serviceFrom(globals(), log)
      const backups = service.store.list()
      for (const d of service.store.unreadable())
        log.warn(
          `${d.id} is not listed: its ${d.why} — it is never a target nor counted by retention; remove it if you do not need it`
        )
      const now = Date.now()
      const windows = await Promise.all(
        backups.map(b => recoverableWindow(service, b).catch(() => undefined))
      )
      const rows = backups.map((b, i) => {
        const age = Math.round((now - Date.parse(b.manifest.createdAt)) / 60000)
        const marker = i === 0 ? '(current)' : b.manifest.kind === 'snapshot' && i === 1 ? '(previous)' : ''
        const w = windows[i]
        const pitr = w ? `  pitr ${w.earliest} → ${w.latest ?? '?'}${w.continuous ? '' : ' (WAL gap)'}` : ''
        return `${String(i + 1).padStart(3)}  ${b.id.padEnd(32)} ${b.manifest.kind.padEnd(8)} live=${b.manifest.versions.live ?? '?'}  schema=${b.manifest.schemaVersion ?? '?'}  ${age} min ago  ${b.sizeBytes} bytes${pitr} ${marker}`
      })
      out().result(
        rows.length ? rows.join('\n') : `no backups in ${service.config.backups.dir}`,
        backups.map((b, i) => ({
          id: b.id,
          kind: b.manifest.kind,
          createdAt: b.manifest.createdAt,
          sizeBytes: b.sizeBytes,
          versions: b.manifest.versions,
          schemaVersion: b.manifest.schemaVersion,
          recoverable: windows[i] && {
            earliest: windows[i].earliest,
            latest: windows[i].latest,
            continuous: windows[i].continuous
          }
        }))
      )
    })

  program
    .command('verify <id>')
    .description(
      'check a backup: every sha256 against its manifest, then a restore drill into a scratch database'
    )
    .option('--quick', 'checksums only')
    .action(async (id: string, o: { quick?: boolean }) => {
      const service = serviceFrom(globals(), log)
      const report = await verifyBackup(service, id, { quick: Boolean(o.quick) })
      const lines = report.checks.map(c => `  ✓ ${c}`).concat(report.problems.map(p => `  ✗ ${p}`))
      out().result(
        `backup ${id}: ${report.ok ? 'verified' : 'DAMAGED'} (${report.durationMs} ms)\n${lines.join('\n')}`,
        report
      )
      if (!report.ok) setExit(EXIT.failed)
    })

  program
    .command('seal <id>')
    .description(
      "accept a backup made elsewhere (or a manifest you edited): check every file against its manifest, then seal the manifest with this host's key"
    )
    .action(async (id: string) => {
      const service = serviceFrom(globals(), log)
      const info = await service.store.seal(id)
      out().result(
        `backup ${id}: ${info.manifest.files.length} files match its manifest; sealed with key ${info.manifest.seal?.keyId ?? '?'}`,
        { id, seal: { keyId: info.manifest.seal?.keyId } }
      )
    })

  program
    .command('incident')
    .description(
      'the incident report, post-mortem template and stakeholder notification for the last rollback (offline)'
    )
    .option('--run <id>', 'a run id from state/runs/ (default: the newest rollback)')
    .option('--full-diff', 'add the full config diff (stable → failed); .env-like files are never shown')
    .action(async (o: { run?: string; fullDiff?: boolean }) => {
      const service = serviceFrom(globals(), log)
      const record = o.run
        ? readRunRecord(service.config, o.run)
        : latestRunRecord(service.config, 'rollback')
      if (!record)
        throw new UserError(
          `no rollback has been recorded in ${service.config.state.dir}/runs yet`,
          'no_record'
        )
      const analysis = await analyse(service, record, { fullDiff: o.fullDiff })
      const facts = await incidentFacts(service, record)
      const body = incidentBody(record, { analysis, ...facts })
      const title = incidentTitle(record.reason, record)
      const notification = stakeholderNotification(record, facts)
      out().result(
        [
          `# ${title}`,
          '',
          body,
          '',
          '---',
          '',
          postMortemBody({ record, owner: 'the on-call engineer', facts }),
          '',
          '---',
          '',
          notification
        ].join('\n'),
        { title, body, notification, facts }
      )
    })

  program
    .command('history')
    .description('the rollback history log, or its report')
    .option('--report', 'count by level, mean duration, success rate')
    .addOption(
      new Option(
        '--format <format>',
        'text; markdown (the runbook table); prometheus (node_exporter textfile) or json: rollback metrics'
      )
        .choices(['text', 'markdown', 'prometheus', 'json'])
        .default('text')
    )
    .option('--deployments <n>', 'deployments in the same period: gives the change failure rate', parseCount)
    .action((o: { report?: boolean; format: string; deployments?: number }) => {
      const config = loadConfig(configPath(globals().config))
      const lines = existsSync(config.history.log)
        ? readFileSync(config.history.log, 'utf8').split('\n').filter(Boolean)
        : []
      if (o.format === 'markdown') return out().result(historyMarkdown(lines), { lines })
      if (o.format === 'prometheus' || o.format === 'json')
        return printMetrics(config, lines, o, (h, d) => out().result(h, d))
      if (!o.report)
        return out().result(
          lines.map(sanitizeLine).join('\n') || `no rollbacks yet (${config.history.log})`,
          { lines }
        )
      const r = historyReport(lines)
      out().result(historyReportText(r), r)
    })

  const sandbox = program.command('sandbox').description('a real environment to try backout on, on loopback')
  sandbox
    .command('up')
    .requiredOption('--dir <dir>', 'where the sandbox lives')
    .addOption(new Option('--db <kind>', 'database').choices(['postgres', 'sqlite']))
    .addOption(
      new Option('--live <color>', 'which target is live when ready')
        .choices(['blue', 'green'])
        .default('green')
    )
    .option('--wal-archive', 'PostgreSQL: archive WAL (pg/wal-archive) for point-in-time recovery')
    .addOption(
      new Option(
        '--runtime <kind>',
        'how the app runs: processes, or compose projects on the Docker Engine at DOCKER_HOST'
      )
        .choices(['process', 'compose'])
        .default('process')
    )
    .action(
      async (o: {
        dir: string
        db?: 'postgres' | 'sqlite'
        live: 'blue' | 'green'
        walArchive?: boolean
        runtime: 'process' | 'compose'
      }) => {
        const script = process.argv[1]
        if (!script) throw new Error('cannot tell which script runs backout')
        const state = await sandboxUp({
          dir: o.dir,
          db: o.db,
          live: o.live,
          walArchive: Boolean(o.walArchive),
          runtime: o.runtime,
          appCommand: [process.execPath, script, 'sandbox'],
          log
        })
        out().result(`sandbox ready: ${state.config}\n  nginx http://127.0.0.1:${state.nginxPort}`, state)
      }
    )
  sandbox
    .command('down')
    .requiredOption('--dir <dir>', 'the sandbox directory')
    .action(async (o: { dir: string }) => {
      await sandboxDown(o.dir, log)
      out().result(`sandbox in ${o.dir} stopped`, { stopped: o.dir })
    })
  sandbox
    .command('smoke', { hidden: true })
    .description("the sandbox's smoke tests: the API answers through nginx")
    .requiredOption('--url <url>', 'the service URL')
    .action(async (o: { url: string }) => {
      const failures: string[] = []
      for (const route of ['/api/rooms', '/api/players', '/health', '/status']) {
        const res = await fetch(o.url + route).catch((e: unknown) => e as Error)
        if (res instanceof Error || !res.ok)
          failures.push(`${route}: ${res instanceof Error ? res.message : `HTTP ${res.status}`}`)
      }
      if (failures.length) throw new OperationError(`smoke tests failed: ${failures.join('; ')}`)
      out().result('smoke tests passed: 4/4 routes', { passed: 4 })
    })
  sandbox
    .command('app', { hidden: true })
    .requiredOption('--port <n>', 'port', parseCount)
    .requiredOption('--environment <name>', 'blue or green')
    .requiredOption('--version <v>', 'version it reports')
    .option('--error-rate <r>', 'share of API requests that fail', Number, 0)
    .option('--delay-ms <ms>', 'latency of API requests', Number, 0)
    .action((o: { port: number; environment: string; version: string; errorRate: number; delayMs: number }) =>
      runAppServer({ host: '127.0.0.1', ...o })
    )

  registerInit(program, log, (human, data) => out().result(human, data))
  registerDoctor(program, log, (human, data) => out().result(human, data), setExit)
  return program
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  let code: number = EXIT.ok
  const verbose = argv.includes('-v') || argv.includes('--verbose')
  const log = new ConsoleLogger(process.stderr, verbose)
  const program = buildProgram(log, c => (code = c))
  try {
    await program.parseAsync(argv)
    return code
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version end here with code 0; a bad argument is the user's to fix: exit 2.
      return e.exitCode === 0 ? EXIT.ok : EXIT.refused
    }
    const json = argv.includes('--json')
    if (json)
      process.stdout.write(
        JSON.stringify({ error: messageOf(e), reasonCode: reasonCodeFor(e), exitCode: exitCodeFor(e) }) + '\n'
      )
    log.error(messageOf(e))
    return exitCodeFor(e)
  }
}
