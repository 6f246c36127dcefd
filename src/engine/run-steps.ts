import { OperationError, UserError, messageOf } from '../core/errors'
import type { Logger } from '../core/logger'
import type { RunRecord, StepRecord } from '../core/run-record'
import { runWithStepSignal } from '../drivers/step-signal'

/**
 * A step of a level, named as in the runbook. `read` steps only look and run in --dry-run too; `write`
 * steps change backout's own files (backups, state); `destructive` steps change the service and run only
 * after the operator confirmed.
 */
export interface Step {
  name: string
  kind: 'read' | 'write' | 'destructive'
  /** The runbook's time for this step, in seconds. Deadlines are these, scaled to the level's RTO. */
  budgetSeconds: number
  /** What the step does and changes: shown by --dry-run and at the confirmation. */
  describe(): string
  /** Does the work; returns a one-line detail of what it found or changed. */
  run(ctx: StepContext): Promise<string>
}

export interface StepContext {
  /** Aborted when the step's deadline passes. */
  signal: AbortSignal
  log: Logger
}

export interface RunStepsOptions {
  dryRun: boolean
  log: Logger
  rtoSeconds: number
  /** Asked once, before the first step that changes anything. */
  confirm(plan: readonly Step[]): Promise<boolean>
  /** Called after every step: the operation journals the record so a killed run can be resumed. */
  onStep?: () => void
  /** Test hook: the process kills itself right after this step finished (fault-injection tests). */
  crashAfterStep?: number
  now?: () => Date
  /**
   * After a deadline aborts a step, how long its work gets to stop (its commands are killed) before the run
   * reports anyway; default 30 s.
   */
  abortGraceMs?: number
}

/** Each step's deadline: its share of the RTO, in proportion to the runbook's time for it. */
export function stepDeadlines(steps: readonly Step[], rtoSeconds: number): number[] {
  const total = steps.reduce((s, x) => s + x.budgetSeconds, 0)
  const scale = total > 0 ? Math.max(1, rtoSeconds / total) : 1
  return steps.map(s => Math.round(s.budgetSeconds * scale * 10) / 10)
}

/**
 * Runs `work` with a deadline. The work runs inside the step's signal (step-signal.ts), so every command it starts
 * and every wait it makes stop when the deadline aborts it. A deadline does not return at once: it waits for the
 * work to end (up to graceMs), so that the lock is released and prepared files are removed only when nothing of
 * the step is still running.
 */
async function withDeadline<T>(
  work: (signal: AbortSignal) => Promise<T>,
  seconds: number,
  name: string,
  graceMs: number,
  log: Logger
): Promise<T> {
  const controller = new AbortController()
  const running = runWithStepSignal(controller.signal, () => work(controller.signal))
  const ended = running.then(
    () => true,
    () => true
  )
  let timer: NodeJS.Timeout | undefined
  const expired = new Promise<false>(resolve => {
    timer = setTimeout(() => resolve(false), seconds * 1000)
  })
  const done = await Promise.race([ended, expired])
  clearTimeout(timer)
  if (done) return running
  const message = `step "${name}" passed its deadline of ${seconds}s (its share of the RTO)`
  controller.abort(new OperationError(message, 'deadline'))
  log.warn(`${message}: stopping its work`)
  let grace: NodeJS.Timeout | undefined
  const stopped = await Promise.race([
    ended,
    new Promise<false>(resolve => {
      grace = setTimeout(() => resolve(false), graceMs)
    })
  ])
  clearTimeout(grace)
  throw new OperationError(
    stopped
      ? `${message}; its work was stopped`
      : `${message}; its work did not stop within ${graceMs / 1000}s of the abort and may still be running`,
    'deadline'
  )
}

/**
 * Runs the steps in order, timing and recording each into record.steps. A failing step stops the run:
 * the remaining steps are recorded as skipped and the error is rethrown. In a dry run, only `read` steps
 * run; the others are recorded as planned with what they would change.
 */
export async function runSteps(
  record: RunRecord,
  steps: readonly Step[],
  options: RunStepsOptions
): Promise<void> {
  const now = options.now ?? (() => new Date())
  const deadlines = stepDeadlines(steps, options.rtoSeconds)
  let confirmed = false
  /** Whether a step that changes the service has started: from then on, no failure means "nothing changed". */
  let changed = false
  // A dry run looks (the read steps up to the first change) and plans the rest: later reads depend on changes.
  const firstChange = steps.findIndex(s => s.kind !== 'read')
  for (const [index, step] of steps.entries()) {
    const deadlineSeconds = deadlines[index] ?? step.budgetSeconds
    if (options.dryRun && firstChange !== -1 && index >= firstChange) {
      record.steps.push({
        name: step.name,
        status: 'planned',
        detail: step.describe(),
        destructive: step.kind === 'destructive',
        deadlineSeconds
      })
      continue
    }
    if (!confirmed && step.kind !== 'read') {
      const rest = steps.slice(index)
      if (!(await options.confirm(rest)))
        throw new UserError('rollback not confirmed — nothing was changed', 'not_confirmed')
      confirmed = true
    }
    const entry: StepRecord = {
      name: step.name,
      status: 'ok',
      startedAt: now().toISOString(),
      detail: '',
      destructive: step.kind === 'destructive',
      deadlineSeconds
    }
    record.steps.push(entry)
    const started = performance.now()
    if (step.kind === 'destructive') changed = true
    try {
      entry.detail = await options.log.group(step.name, () =>
        withDeadline(
          signal => step.run({ signal, log: options.log }),
          deadlineSeconds,
          step.name,
          options.abortGraceMs ?? 30_000,
          options.log
        )
      )
      options.log.info(`✓ ${step.name}: ${entry.detail}`)
    } catch (e) {
      entry.status = 'failed'
      entry.detail = messageOf(e)
      options.log.error(`✗ ${step.name}: ${entry.detail}`)
      for (const later of steps.slice(index + 1))
        record.steps.push({
          name: later.name,
          status: 'skipped',
          detail: 'not run: an earlier step failed',
          destructive: later.kind === 'destructive'
        })
      // A refusal means nothing changed (exit 2, escalatable): once the service was changed, it is a failure that
      // keeps the refusal's reason code.
      if (changed && e instanceof UserError)
        throw new OperationError(
          `${e.message} (after "${steps.find(s => s.kind === 'destructive')?.name ?? step.name}" had changed the service)`,
          e.reasonCode
        )
      throw e
    } finally {
      entry.endedAt = now().toISOString()
      entry.durationMs = Math.round(performance.now() - started)
    }
    options.onStep?.()
    if (options.crashAfterStep === index + 1) process.kill(process.pid, 'SIGKILL')
  }
}
