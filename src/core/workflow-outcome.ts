/**
 * What a rollback workflow run did, read from its jobs' results (`toJSON(needs)` in rollback.yml): the run
 * record of the last level that produced one, or — when none did — a truthful "not run" or "approval
 * rejected". Never a fallback to whatever rollback ran last on the host. Total: any input gives an answer.
 */

/** One entry of GitHub's `needs` context. */
interface NeedsJob {
  result?: string
  outputs?: Record<string, string>
}

export type WorkflowOutcome =
  | { kind: 'ran'; runId: string; level: number }
  | { kind: 'approval_rejected'; level: number; why: string }
  | { kind: 'not_run'; why: string }

const LEVEL_JOBS = ['level-3', 'level-2', 'level-1'] as const

const RUN_ID = /^[0-9]{8}-[0-9]{6}-[a-z0-9]+$/

export function workflowOutcome(needsJson: string, runIdInput = ''): WorkflowOutcome {
  let needs: Record<string, NeedsJob> = {}
  try {
    const parsed: unknown = JSON.parse(needsJson || '{}')
    if (parsed && typeof parsed === 'object') needs = parsed as Record<string, NeedsJob>
  } catch {
    needs = {}
  }
  if (RUN_ID.test(runIdInput)) {
    const level = LEVEL_JOBS.find(j => needs[j]?.outputs?.run_id === runIdInput)
    return { kind: 'ran', runId: runIdInput, level: level ? Number(level.slice(-1)) : 0 }
  }
  for (const job of LEVEL_JOBS) {
    const runId = needs[job]?.outputs?.run_id ?? ''
    if (RUN_ID.test(runId)) return { kind: 'ran', runId, level: Number(job.slice(-1)) }
  }
  for (const job of [...LEVEL_JOBS].reverse()) {
    const result = needs[job]?.result
    if (result === 'failure' || result === 'cancelled')
      return {
        kind: 'approval_rejected',
        level: Number(job.slice(-1)),
        why:
          `the ${job} job ended "${result}" before the rollback started: its approval in the ` +
          `rollback-${job} environment was rejected (or timed out), or the job could not start on the runner`
      }
  }
  const before = ['preflight', 'assess', 'snapshot']
    .filter(j => needs[j] && needs[j].result !== 'success')
    .map(j => `${j}: ${needs[j]!.result ?? 'unknown'}`)
  return {
    kind: 'not_run',
    why: before.length
      ? `no level ran — ${before.join(', ')}`
      : 'no level ran — none was requested or recommended'
  }
}
