/**
 * Every input and output key of every action, as typed constants. The code reads inputs and sets outputs
 * only through these names (`input()` in action-runner.ts, the typed `outputs` of each ActionOutcome), and a
 * contract test loads each action.yml and compares: keys cannot drift from the code, and renaming one in
 * either place fails the typecheck or the test.
 */

/** The inputs every action that reads backout.yml takes. */
const SERVICE_INPUTS = ['config', 'env'] as const
/** The outputs every action sets (action-runner.ts): ids and codes only, never a value that may be secret. */
export const COMMON_OUTPUTS = ['decision', 'reason_code', 'result', 'result_file', 'run_id'] as const
const LEVEL_OUTPUTS = [
  ...COMMON_OUTPUTS,
  'from',
  'to',
  'duration_seconds',
  'safety_backup_id',
  'escalatable'
] as const

export const ACTIONS = {
  backout: {
    inputs: [...SERVICE_INPUTS, 'level', 'target', 'to-time', 'reason', 'dry-run'],
    outputs: LEVEL_OUTPUTS
  },
  assess: {
    inputs: [...SERVICE_INPUTS, 'samples'],
    outputs: [...COMMON_OUTPUTS, 'severity', 'level', 'should_rollback', 'reasons']
  },
  snapshot: {
    inputs: [...SERVICE_INPUTS, 'safety'],
    outputs: [...COMMON_OUTPUTS, 'backup_id']
  },
  'rollback-level-1': {
    inputs: [...SERVICE_INPUTS, 'reason', 'dry-run'],
    outputs: LEVEL_OUTPUTS
  },
  'rollback-level-2': {
    inputs: [...SERVICE_INPUTS, 'reason', 'dry-run', 'target'],
    outputs: LEVEL_OUTPUTS
  },
  'rollback-level-3': {
    inputs: [...SERVICE_INPUTS, 'reason', 'dry-run', 'target', 'to-time'],
    outputs: LEVEL_OUTPUTS
  },
  validate: {
    inputs: [...SERVICE_INPUTS, 'thorough'],
    outputs: [...COMMON_OUTPUTS, 'passed']
  },
  chatops: {
    inputs: [...SERVICE_INPUTS, 'token', 'default-environment', 'mode', 'report'],
    outputs: [...COMMON_OUTPUTS, 'should_run', 'level', 'target', 'environment', 'dry_run']
  },
  'open-incident': {
    inputs: [...SERVICE_INPUTS, 'token', 'run-id', 'jobs', 'reason', 'failed-sha'],
    outputs: [...COMMON_OUTPUTS, 'issue_number', 'issue_url', 'frozen']
  },
  'deploy-freeze': {
    inputs: [...SERVICE_INPUTS, 'mode', 'issue-number'],
    outputs: [...COMMON_OUTPUTS, 'frozen', 'issue_number']
  },
  'fleet-summary': {
    inputs: ['env', 'token', 'environments', 'dir', 'reason', 'dry-run'],
    outputs: [...COMMON_OUTPUTS, 'hosts', 'rolled_back', 'failed', 'issue_number', 'issue_url']
  },
  preflight: {
    inputs: [
      'env',
      'token',
      'environment',
      'level',
      'escalate',
      'environments-file',
      'runner-labels',
      'config',
      'allow-unprotected'
    ],
    outputs: [...COMMON_OUTPUTS, 'runner_labels', 'config']
  }
} as const

export type ActionName = keyof typeof ACTIONS
export type InputName<N extends ActionName> = (typeof ACTIONS)[N]['inputs'][number]
export type OutputName<N extends ActionName> = (typeof ACTIONS)[N]['outputs'][number]
/** The outputs an action's run() sets itself; the common ones are action-runner.ts's. */
export type OwnOutputs<N extends ActionName> = Record<
  Exclude<OutputName<N>, (typeof COMMON_OUTPUTS)[number]>,
  string | number | boolean
>

/**
 * The compact JSON every action emits as its `result` output: schema, action, decision, reasonCode, runId
 * and resultFile. v2: the run record and the error message are in the result file, no longer in the output.
 */
export const ACTION_RESULT_SCHEMA = 'backout.action-result/v2'
