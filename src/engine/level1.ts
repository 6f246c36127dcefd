import type { Color } from '../core/config'
import { OperationError, UserError } from '../core/errors'
import type { RunRecord } from '../core/run-record'
import type { Step } from './run-steps'
import { activeColor, answeredBy, probeThroughNginx, targetReady, type Service } from './service'
import { field } from '../drivers/http'
import { safetyBackupStep } from './snapshot'
import { sleep } from '../drivers/sleep'
import { latestRunRecord } from './operation'

/**
 * Polls nginx until `needed` consecutive responses come from `color`. Returns how long that took and how
 * many responses came from elsewhere meanwhile.
 */
export async function confirmServedBy(
  service: Service,
  color: Color,
  needed: number,
  signal: AbortSignal
): Promise<{ ms: number; others: number; failures: number }> {
  const started = performance.now()
  let streak = 0
  let others = 0
  let failures = 0
  // nginx routes only to `color` here: a long run of answers that all report another version means the target
  // itself runs other code (a checkout or image that was not rolled back) — said at once, not at the deadline.
  let wrongInARow = 0
  const wrongLimit = Math.max(30, 3 * needed)
  while (streak < needed) {
    if (signal.aborted)
      throw new OperationError(`nginx did not serve ${color} ${needed} times in a row in time`)
    const res = await probeThroughNginx(service.config, signal)
    const by = res.ok ? answeredBy(service.config, res) : undefined
    if (by === color) {
      streak++
      wrongInARow = 0
    } else {
      streak = 0
      if (res.ok) others++
      else failures++
      wrongInARow = res.ok && by !== undefined ? wrongInARow + 1 : 0
      if (wrongInARow >= wrongLimit) {
        const reported = field(res.json, 'version')
        const version = typeof reported === 'string' ? reported : '?'
        throw new OperationError(
          `nginx routes to ${color} (${service.config.targets[color].upstream}), but ${wrongInARow} answers in a row report ` +
            `version ${version}, not ${service.config.targets[color].version}: ${color} runs other code — roll its code ` +
            'back (the git checkout or the image it runs), then run the rollback again',
          'wrong_version'
        )
      }
      await sleep(20, signal)
    }
  }
  return { ms: Math.round(performance.now() - started), others, failures }
}

/**
 * A Level 1 right after a successful one would switch traffic back to the release that one rolled away from: the
 * previous target is then the bad one. Refused (nothing changed): going further back is Level 2 with --target.
 */
function refuseSwitchBack(service: Service, record: RunRecord): void {
  const last = latestRunRecord(service.config, 'rollback', record.id)
  if (last?.level !== 1 || last.status !== 'success' || last.dryRun) return
  if (last.from !== record.to || last.to !== record.from) return
  throw new UserError(
    `the last rollback (run ${last.id}, ${last.endedAt ?? last.startedAt}) already moved traffic from ${last.from} to ` +
      `${last.to}: Level 1 now would switch back to ${record.to}, the release that was rolled away from. To go further ` +
      'back, roll back to a backup of an older release: `backout rollback --level 2 --target <backup-id>` ' +
      '(`backout list` shows them); after deploying a fixed release to the idle target, its new version makes Level 1 possible again',
    'already_rolled_back'
  )
}

/**
 * Level 1, the quick rollback: traffic goes back to the previous (idle) target through nginx, then the
 * failed one stops. No data changes. The steps are the runbook's.
 */
export function level1Steps(service: Service, record: RunRecord): Step[] {
  const { config, nginx, runtime } = service
  let live: Color = 'green'
  let previous: Color = 'blue'
  const label = (c: Color): string => `${c} ${config.targets[c].version}`
  return [
    {
      name: 'Assess situation',
      kind: 'read',
      budgetSeconds: 30,
      describe: () => 'read which target nginx routes to and what answers through nginx',
      async run({ signal }) {
        const active = activeColor(service)
        if (!active)
          throw new UserError(
            `nginx upstream ${config.nginx.upstreamFile} points at ${nginx.activeUpstream() ?? 'nothing'}, ` +
              `which is neither blue (${config.targets.blue.upstream}) nor green (${config.targets.green.upstream}) — ` +
              'fix targets.*.upstream in backout.yml or the upstream file',
            'unknown_active_target'
          )
        // A resumed run keeps the interrupted run's direction, even if nginx already points at the target.
        const resumedTo = (['blue', 'green'] as const).find(
          c => config.targets[c].version === record.resumedFrom?.to
        )
        previous = resumedTo ?? (active === 'blue' ? 'green' : 'blue')
        live = previous === 'blue' ? 'green' : 'blue'
        record.from = config.targets[live].version
        record.to = config.targets[previous].version
        if (!resumedTo) refuseSwitchBack(service, record)
        const res = await probeThroughNginx(config, signal)
        const by = res.ok ? answeredBy(config, res) : undefined
        return (
          `nginx routes to ${label(live)} (${nginx.activeUpstream()}); through nginx: ` +
          (res.error ? `unreachable (${res.error})` : `HTTP ${res.status}${by ? ` from ${by}` : ''}`) +
          `; previous: ${label(previous)}` +
          (resumedTo ? ` (resuming run ${record.resumedFrom?.id})` : '')
        )
      }
    },
    {
      name: 'Verify previous environment',
      kind: 'read',
      budgetSeconds: 60,
      describe: () => `check ${label(previous)} answers ${config.health.statusPath} with overall_ready: true`,
      async run({ signal }) {
        const state = await runtime.state(previous)
        const ready = await targetReady(config, previous, signal)
        if (!ready.ready)
          throw new UserError(
            `previous environment ${label(previous)} is not healthy (${state.detail}; ${ready.detail}). ` +
              'Level 1 cannot help: escalate to Level 2 — `backout rollback --level 2 --target <backup-id>` ' +
              '(`backout list` shows the backups)',
            'previous_unhealthy'
          )
        return `${label(previous)} ${state.detail}, ${ready.detail}`
      }
    },
    safetyBackupStep(service, record, 60),
    {
      name: 'Switch traffic',
      kind: 'destructive',
      budgetSeconds: 10,
      describe: () =>
        `rewrite ${config.nginx.upstreamFile} to ${config.targets[previous].upstream} (${label(previous)}), ` +
        `test with \`${config.nginx.test.join(' ')}\`, reload with \`${config.nginx.reload.join(' ')}\``,
      async run({ signal }) {
        const started = performance.now()
        await nginx.switchUpstream(
          config.targets[previous].upstream,
          `active=${previous} version=${config.targets[previous].version} (level 1 rollback, run ${record.id})`
        )
        const confirmed = await confirmServedBy(service, previous, config.health.confirmRequests, signal)
        return (
          `nginx reloaded; ${config.health.confirmRequests} consecutive responses from ${previous} ` +
          `${Math.round(performance.now() - started)} ms after the decision (${confirmed.others} from the old ` +
          `target, ${confirmed.failures} failed while the reload settled)`
        )
      }
    },
    {
      name: 'Verify health',
      kind: 'read',
      budgetSeconds: 30,
      describe: () => `check ${label(previous)} is ready and serving through nginx`,
      async run({ signal }) {
        const ready = await targetReady(config, previous, signal)
        if (!ready.ready)
          throw new OperationError(`${label(previous)} became unhealthy after the switch: ${ready.detail}`)
        const res = await probeThroughNginx(config, signal)
        if (!res.ok || answeredBy(config, res) !== previous)
          throw new OperationError(`nginx does not serve ${previous}: HTTP ${res.status} ${res.error ?? ''}`)
        return `${ready.detail}; nginx serves ${previous}`
      }
    },
    {
      name: 'Stop failed environment',
      kind: 'destructive',
      budgetSeconds: 60,
      describe: () =>
        `stop ${label(live)} gracefully (SIGTERM, ${config.stop.timeoutSeconds}s, then SIGKILL)`,
      async run() {
        const outcome = await runtime.stop(live, config.stop.timeoutSeconds * 1000)
        return `${label(live)}: ${outcome}`
      }
    },
    {
      name: 'Final validation',
      kind: 'read',
      budgetSeconds: 30,
      describe: () => `send requests through nginx; every one must come from ${previous}`,
      async run({ signal }) {
        const n = config.health.confirmRequests
        const result = await confirmServedBy(service, previous, n, signal)
        if (result.others || result.failures)
          throw new OperationError(
            `after the switch, ${result.others} responses came from ${live} and ${result.failures} failed`
          )
        const state = await runtime.state(live)
        return `${n}/${n} responses from ${previous}; ${live} ${state.detail}`
      }
    }
  ]
}
