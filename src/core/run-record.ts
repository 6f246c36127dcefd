/**
 * The run record: what an operation did, step by step. It is the one source for the CLI timeline, the job
 * summary, the history log line and the incident timeline.
 */
export const RUN_RECORD_SCHEMA = 'backout.run/v1'

export type StepStatus = 'ok' | 'failed' | 'skipped' | 'planned'
export type RunStatus = 'success' | 'failed' | 'refused' | 'planned' | 'running'
export type Operation = 'rollback' | 'snapshot' | 'assess' | 'validate' | 'verify' | 'incident'
export type Level = 1 | 2 | 3

export interface StepRecord {
  name: string
  status: StepStatus
  /** ISO-8601 */
  startedAt?: string
  endedAt?: string
  durationMs?: number
  /** The step's deadline in seconds (its share of the RTO). */
  deadlineSeconds?: number
  /** What the step found or changed; for a planned step, what it would change. */
  detail: string
  destructive: boolean
}

export interface DataLoss {
  /** The point the data was restored to (backup time or recovery target), ISO-8601. */
  restoredTo: string
  /** Seconds between restoredTo and the moment the rollback began. */
  windowSeconds: number
  walReplayed: boolean
  note: string
}

export interface RunRecord {
  schema: typeof RUN_RECORD_SCHEMA
  id: string
  service: string
  environment: string
  operation: Operation
  level?: Level
  from?: string
  to?: string
  reason: string
  status: RunStatus
  dryRun: boolean
  startedAt: string
  endedAt?: string
  durationMs?: number
  /** The RTO target for this operation, in seconds. */
  rtoSeconds?: number
  steps: StepRecord[]
  backupId?: string
  safetyBackupId?: string
  dataLoss?: DataLoss
  /** The failure or refusal message, when status is failed or refused. */
  error?: string
  reasonCode?: string
  /** Severity from assess, when known. */
  severity?: string
  /** The interrupted run (its process died) this one takes over, with the versions it was moving between. */
  resumedFrom?: { id: string; from?: string; to?: string; steps: string[] }
}

export function newRunId(now: Date): string {
  return `${formatBackupId(now)}-${Math.random().toString(36).slice(2, 6)}`
}

/** YYYYMMDD-HHMMSS in UTC: the runbook's backup id format. */
export function formatBackupId(now: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0')
  return (
    `${now.getUTCFullYear()}${p(now.getUTCMonth() + 1)}${p(now.getUTCDate())}-` +
    `${p(now.getUTCHours())}${p(now.getUTCMinutes())}${p(now.getUTCSeconds())}`
  )
}
