/**
 * Every input and output key of every action, as typed constants. A contract test loads each action.yml
 * and compares: keys, required flags and defaults cannot drift from the code.
 */
export const ACTIONS = {
  backout: {
    inputs: ['config', 'env', 'level', 'target', 'to-time', 'reason', 'dry-run'],
    outputs: ['decision', 'reason_code', 'result', 'from', 'to', 'duration_seconds', 'safety_backup_id']
  },
  assess: {
    inputs: ['config', 'env', 'samples'],
    outputs: ['decision', 'reason_code', 'result', 'severity', 'level', 'should_rollback', 'reasons']
  },
  snapshot: {
    inputs: ['config', 'env', 'safety'],
    outputs: ['decision', 'reason_code', 'result', 'backup_id']
  },
  'rollback-level-1': {
    inputs: ['config', 'env', 'reason', 'dry-run'],
    outputs: ['decision', 'reason_code', 'result', 'from', 'to', 'duration_seconds', 'safety_backup_id']
  },
  'rollback-level-2': {
    inputs: ['config', 'env', 'reason', 'dry-run', 'target'],
    outputs: ['decision', 'reason_code', 'result', 'from', 'to', 'duration_seconds', 'safety_backup_id']
  },
  'rollback-level-3': {
    inputs: ['config', 'env', 'reason', 'dry-run', 'target', 'to-time'],
    outputs: ['decision', 'reason_code', 'result', 'from', 'to', 'duration_seconds', 'safety_backup_id']
  },
  validate: {
    inputs: ['config', 'env', 'thorough'],
    outputs: ['decision', 'reason_code', 'result', 'passed']
  },
  chatops: {
    inputs: ['config', 'env', 'token', 'default-environment', 'report'],
    outputs: ['decision', 'reason_code', 'result', 'should_run', 'level', 'target', 'environment', 'dry_run']
  },
  'open-incident': {
    inputs: ['config', 'env', 'token', 'result', 'reason'],
    outputs: ['decision', 'reason_code', 'result', 'issue_number', 'issue_url']
  }
} as const

export type ActionName = keyof typeof ACTIONS

/** The versioned JSON every action emits as its `result` output. */
export const ACTION_RESULT_SCHEMA = 'backout.action-result/v1'
