import { z } from 'zod'
import { unknownKeysHint } from './config-hints'
import { notifySchema } from './notify'
import { UserError } from './errors'

/**
 * backout.yml: one file describes one service. The schema is the single source for validation, for the
 * defaults (the runbook's thresholds), for docs/config.md and for the JSON Schema editors complete against.
 */

/** Outside the repository by default: a workflow's checkout (git clean) must not wipe locks or the seal key. */
export const DEFAULT_STATE_DIR = '/var/lib/backout/<service>'
export const DEFAULT_HISTORY_LOG = '<state.dir>/rollback_history.log'

const argv = z
  .array(z.string().min(1))
  .min(1)
  .describe('a command as an argument array, e.g. [nginx, -s, reload] — never a shell string')

const hostPort = z
  .string()
  .regex(/^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'expected host:port, like 127.0.0.1:8081')

const httpUrl = z
  .string()
  .regex(/^https?:\/\/[^\s]+$/, 'expected an http:// or https:// URL, like http://127.0.0.1:8080')

const processTarget = z
  .object({
    command: argv.describe('how to start this version'),
    cwd: z.string().optional().describe('working directory for the command (default: the config dir)'),
    env: z
      .record(z.string(), z.string())
      .default({})
      .describe('extra environment variables; values may use ${VAR}, like every string value'),
    pidFile: z.string().describe('where the running process writes (or backout keeps) its PID'),
    logFile: z.string().optional().describe("the process's log file, read for recent errors")
  })
  .strict()

const composeTarget = z
  .object({
    project: z.string().min(1).describe('the compose project name, e.g. spacetime-blue'),
    file: z.string().default('docker-compose.yml').describe('the compose file'),
    service: z.string().min(1).describe('the application service in the compose file')
  })
  .strict()

const systemdTarget = z
  .object({
    unit: z.string().min(1).describe('the systemd unit, e.g. vbrpg-backend.service'),
    gitDir: z.string().optional().describe('the git checkout the unit runs from'),
    exec: argv
      .optional()
      .describe(
        'a prefix for every systemctl, journalctl and git command, to drive a systemd that runs elsewhere, ' +
          'e.g. [ssh, deploy@host] or [docker, exec, ctr] (default: run them here)'
      )
  })
  .strict()

const target = z
  .object({
    version: z.string().min(1).describe('the version this target runs, e.g. v2.4.9'),
    upstream: hostPort.describe('the address nginx proxies to when this target is live'),
    url: httpUrl
      .optional()
      .describe('direct URL of this target for health checks (default: http://<upstream>)'),
    process: processTarget.optional(),
    compose: composeTarget.optional(),
    systemd: systemdTarget.optional()
  })
  .strict()

const migrations = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('sql'),
      dir: z.string().default('migrations').describe('holds rollback/<version>_<name>_down.sql')
    })
    .strict(),
  z
    .object({
      kind: z.literal('alembic'),
      ini: z.string().default('alembic.ini').describe('the alembic.ini file'),
      command: argv.default(['/usr/bin/alembic']).describe('the alembic CLI')
    })
    .strict()
])

const database = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('postgres'),
      url: z
        .string()
        .regex(/^postgres(ql)?:\/\//, 'expected a postgresql:// URL')
        .describe(
          'connection URL, e.g. postgresql://app:${DB_PASSWORD}@127.0.0.1:5432/app (the ${VAR} value is URL-encoded); the password is masked in every log'
        ),
      dataDir: z.string().optional().describe('the cluster data directory, for physical backups'),
      binDir: z
        .string()
        .optional()
        .describe('PostgreSQL binaries (default: newest /usr/lib/postgresql/N/bin)'),
      walArchiveDir: z.string().optional().describe('where WAL is archived, for point-in-time recovery'),
      criticalTables: z.array(z.string()).default([]).describe('tables whose row counts validate compares'),
      migrations: migrations.optional()
    })
    .strict(),
  z
    .object({
      kind: z.literal('sqlite'),
      path: z.string().describe('the SQLite database file'),
      criticalTables: z.array(z.string()).default([]),
      migrations: migrations.optional()
    })
    .strict()
])

const thresholds = z
  .object({
    errorRatePercent: z
      .object({
        medium: z.number().default(5),
        high: z.number().default(10),
        critical: z.number().default(50)
      })
      .strict()
      .default({ medium: 5, high: 10, critical: 50 }),
    responseTimeSeconds: z
      .object({ medium: z.number().default(2), high: z.number().default(5) })
      .strict()
      .default({ medium: 2, high: 5 }),
    rtoMinutes: z
      .object({
        level1: z.number().default(5),
        level2: z.number().default(15),
        level3: z.number().default(30)
      })
      .strict()
      .default({ level1: 5, level2: 15, level3: 30 }),
    validate: z
      .object({ errorRatePercent: z.number().default(1), p95Ms: z.number().default(500) })
      .strict()
      .default({ errorRatePercent: 1, p95Ms: 500 })
  })
  .strict()

export const configSchema = z
  .object({
    service: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'expected a name of letters, digits, . _ -')
      .describe(
        'the service name, used in locks, history and incidents. In this and every other string value (in lists ' +
          'and nested sections too), ${VAR} is replaced by the environment variable VAR before validation; a VAR ' +
          'that is not set is an error; every replaced value is masked as a secret in logs'
      ),
    environment: z.string().default('production'),
    runtime: z.enum(['process', 'compose', 'systemd']).describe('how the targets run'),
    targets: z.object({ blue: target, green: target }).strict().describe('the two blue/green targets'),
    nginx: z
      .object({
        upstreamFile: z.string().describe('the file holding the upstream block backout rewrites'),
        upstreamName: z
          .string()
          .regex(/^[A-Za-z0-9_]+$/)
          .default('backend'),
        url: httpUrl.describe('the public URL nginx serves the app on'),
        test: argv.default(['nginx', '-t']).describe('checks the configuration'),
        reload: argv.default(['nginx', '-s', 'reload']).describe('reloads nginx gracefully')
      })
      .strict(),
    health: z
      .object({
        path: z.string().startsWith('/').default('/health'),
        statusPath: z.string().startsWith('/').default('/status'),
        timeoutMs: z.number().int().positive().default(2000),
        intervalSeconds: z.number().positive().default(5),
        waitSeconds: z.number().positive().default(300),
        confirmRequests: z
          .number()
          .int()
          .min(1)
          .default(20)
          .describe('consecutive responses through nginx that must come from the new target')
      })
      .strict()
      .default({
        path: '/health',
        statusPath: '/status',
        timeoutMs: 2000,
        intervalSeconds: 5,
        waitSeconds: 300,
        confirmRequests: 20
      }),
    stop: z
      .object({ timeoutSeconds: z.number().positive().default(30) })
      .strict()
      .default({ timeoutSeconds: 30 }),
    database: database.optional(),
    configFiles: z.array(z.string()).default([]).describe('files captured by every snapshot'),
    data: z
      .array(z.object({ name: z.string().regex(/^[A-Za-z0-9_.-]+$/), path: z.string() }).strict())
      .default([])
      .describe('data directories captured by snapshots and restored by Level 3'),
    corruptionMarker: z.string().optional().describe('a file whose presence means data corruption'),
    backups: z
      .object({
        dir: z.string().describe('where backups live, one directory per backup id'),
        keep: z.number().int().min(1).default(10),
        keepDays: z.number().positive().default(7),
        sealKey: z
          .string()
          .optional()
          .describe(
            'secret (at least 32 characters) that seals each manifest.json (HMAC-SHA256), e.g. ${BACKOUT_SEAL_KEY}; default: a key generated ' +
              "in state.dir/seal.key. Share one key across the hosts that restore each other's backups"
          )
      })
      .strict(),
    state: z
      .object({
        dir: z
          .string()
          .default(DEFAULT_STATE_DIR)
          .describe(
            'locks, run records, the seal key: keep it outside any git checkout (a checkout may wipe it); <service> is the service name'
          )
      })
      .strict()
      .default({ dir: DEFAULT_STATE_DIR }),
    history: z
      .object({
        log: z
          .string()
          .default(DEFAULT_HISTORY_LOG)
          .describe("the runbook's rollback history log; <state.dir> is state.dir")
      })
      .strict()
      .default({ log: DEFAULT_HISTORY_LOG }),
    thresholds: thresholds.default({
      errorRatePercent: { medium: 5, high: 10, critical: 50 },
      responseTimeSeconds: { medium: 2, high: 5 },
      rtoMinutes: { level1: 5, level2: 15, level3: 30 },
      validate: { errorRatePercent: 1, p95Ms: 500 }
    }),
    prometheus: z
      .object({
        url: httpUrl,
        window: z
          .string()
          .regex(/^\d+[smh]$/, 'expected a PromQL duration like 5m, 30s or 1h')
          .default('5m')
          .describe('the range of the default queries, e.g. 5m (the runbook uses 5m)'),
        errorRateQuery: z
          .string()
          .optional()
          .describe('PromQL giving the error rate in % (default: 5xx over all)'),
        p95Query: z.string().optional().describe('PromQL giving the p95 latency in seconds'),
        requestCountQuery: z
          .string()
          .optional()
          .describe('PromQL giving the requests behind the error rate (default: sum of increase over window)')
      })
      .strict()
      .optional(),
    assess: z
      .object({
        samples: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(40)
          .describe('requests per round sampled through nginx when there is no Prometheus'),
        rounds: z.number().int().min(1).max(20).default(3).describe('samples taken before a verdict'),
        failureLimit: z
          .number()
          .int()
          .min(1)
          .default(2)
          .describe('rounds over a threshold that make the verdict (an isolated spike is not one); ≤ rounds'),
        intervalSeconds: z.number().min(0).default(1).describe('pause between rounds'),
        minRequests: z
          .number()
          .int()
          .min(0)
          .default(20)
          .describe('fewest requests a round may rest on; fewer is inconclusive, never 0 %'),
        minFreeDiskMB: z
          .number()
          .min(0)
          .default(1024)
          .describe('free disk (MB) under backups.dir below which assess reports what may be pruned')
      })
      .strict()
      .default({
        samples: 40,
        rounds: 3,
        failureLimit: 2,
        intervalSeconds: 1,
        minRequests: 20,
        minFreeDiskMB: 1024
      })
      .describe('how assess samples before it decides'),
    validate: z
      .object({
        debugPorts: z
          .array(hostPort)
          .default([])
          .describe(
            'extra ports that must listen in thorough validation (the debug services, e.g. 127.0.0.1:6006)'
          ),
        maxRssMB: z.number().positive().default(1024).describe('resident memory of the live target, MB'),
        maxCpuPercent: z
          .number()
          .positive()
          .default(90)
          .describe('CPU of the live target over one second, %'),
        logLines: z
          .number()
          .int()
          .min(1)
          .default(200)
          .describe('how many recent log lines are read for errors'),
        maxLogErrors: z
          .number()
          .int()
          .min(0)
          .default(5)
          .describe(
            'ERROR lines tolerated in those lines (isolated errors are LOW in the runbook; 0 is too strict)'
          ),
        durationSeconds: z
          .number()
          .min(0)
          .default(120)
          .describe('thorough: how long to monitor error rate and p95 (the runbook monitors 2 min)'),
        intervalSeconds: z
          .number()
          .positive()
          .default(5)
          .describe('thorough: pause between monitoring samples')
      })
      .strict()
      .default({
        debugPorts: [],
        maxRssMB: 1024,
        maxCpuPercent: 90,
        logLines: 200,
        maxLogErrors: 5,
        durationSeconds: 120,
        intervalSeconds: 5
      })
      .describe('the checks validate adds to the thresholds: ports, resources, logs, monitoring'),
    smokeTest: argv.optional().describe('a command that exits 0 when the service works'),
    notify: notifySchema.optional()
  })
  .strict()
  .describe(
    'backout.yml: one service. ${VAR} in any string value (lists and nested sections too) is replaced by the ' +
      'environment variable VAR; an unset VAR is an error; every replaced value is masked as a secret in logs'
  )
  .superRefine((cfg, ctx) => {
    for (const color of ['blue', 'green'] as const) {
      const t = cfg.targets[color]
      if (!t[cfg.runtime])
        ctx.addIssue({
          code: 'custom',
          path: ['targets', color, cfg.runtime],
          message: `runtime is ${cfg.runtime}, so targets.${color} needs a "${cfg.runtime}" section`
        })
    }
    if (cfg.assess.failureLimit > cfg.assess.rounds)
      ctx.addIssue({
        code: 'custom',
        path: ['assess', 'failureLimit'],
        message: `failureLimit ${cfg.assess.failureLimit} is more than rounds ${cfg.assess.rounds}: no verdict could fail — set failureLimit ≤ rounds`
      })
    if (cfg.targets.blue.upstream === cfg.targets.green.upstream)
      ctx.addIssue({
        code: 'custom',
        path: ['targets', 'green', 'upstream'],
        message: 'blue and green must have different upstream addresses'
      })
  })

export type Config = z.infer<typeof configSchema>
export type Color = 'blue' | 'green'
export type Target = Config['targets']['blue']

export function otherColor(color: Color): Color {
  return color === 'blue' ? 'green' : 'blue'
}

function describeReceived(input: unknown, path: readonly PropertyKey[]): string {
  let v: unknown = input
  for (const key of path) {
    if (v && typeof v === 'object') v = (v as Record<PropertyKey, unknown>)[key]
    else return ''
  }
  if (v === undefined) return ' (missing)'
  const text = JSON.stringify(v)
  return text === undefined ? '' : ` (got ${text.length > 60 ? text.slice(0, 57) + '...' : text})`
}

/**
 * Validates a parsed config object. Every problem names the key, what was expected and what to do;
 * the error is a UserError (exit 2).
 */
export function parseConfig(input: unknown, source: string): Config {
  const result = configSchema.safeParse(input)
  if (result.success) return result.data
  const lines = result.error.issues.map(issue => {
    const key = issue.path.length ? issue.path.map(String).join('.') : '(top level)'
    const received =
      issue.code === 'unrecognized_keys'
        ? unknownKeysHint(configSchema, issue.path, issue.keys)
        : describeReceived(input, issue.path)
    return `  ${key}: ${issue.message}${received}`
  })
  throw new UserError(
    `${source} is not a valid backout config:\n${lines.join('\n')}\n` +
      'Fix these keys (every key is documented in docs/config.md), then run the command again.',
    'bad_config'
  )
}
