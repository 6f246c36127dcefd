/**
 * The fleet summary: one row per host of a fleet rollback, from the small result file each host's level job
 * uploads (lines of key=value, values from the level action's outputs: ids, codes and versions only). A host
 * with no file is a row too ("no result": it never reached a level, or its job was not approved). Pure.
 */

export interface FleetRow {
  environment: string
  level: string
  decision: string
  reasonCode: string
  from: string
  to: string
  seconds: string
  runId: string
}

type Key = 'environment' | 'level' | 'decision' | 'reason_code' | 'from' | 'to' | 'seconds' | 'run_id'

/** One host's file: `key=value` lines; unknown keys ignored, missing ones empty. */
export function parseFleetRow(text: string): FleetRow | undefined {
  const values: Record<string, string> = {}
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf('=')
    if (i > 0) values[line.slice(0, i).trim()] = line.slice(i + 1).trim()
  }
  if (!values.environment) return undefined
  const v = (k: Key): string => values[k] ?? ''
  return {
    environment: v('environment'),
    level: v('level'),
    decision: v('decision'),
    reasonCode: v('reason_code'),
    from: v('from'),
    to: v('to'),
    seconds: v('seconds'),
    runId: v('run_id')
  }
}

/** A cell: no pipes, no newlines, no markdown that could break the table. */
const cell = (s: string): string => s.replace(/[|\r\n`<>]/g, ' ').slice(0, 80) || '—'

/**
 * Each host's outcome: the row of its highest level (an escalation leaves one per level), or "no result".
 * Hosts are listed in the order of `environments` (the fleet's matrix), then any others that reported.
 */
export function fleetOutcomes(environments: readonly string[], rows: readonly FleetRow[]): FleetRow[] {
  const byEnv = new Map<string, FleetRow>()
  for (const row of rows) {
    const seen = byEnv.get(row.environment)
    if (!seen || Number(row.level) > Number(seen.level)) byEnv.set(row.environment, row)
  }
  const names = [...environments, ...[...byEnv.keys()].filter(e => !environments.includes(e))]
  return names.map(
    environment =>
      byEnv.get(environment) ?? {
        environment,
        level: '',
        decision: 'no result',
        reasonCode: 'not_run',
        from: '',
        to: '',
        seconds: '',
        runId: ''
      }
  )
}

export function fleetTable(outcomes: readonly FleetRow[]): string {
  const ok = outcomes.filter(o => o.decision === 'rolled_back' || o.decision === 'planned').length
  return [
    `**${ok} of ${outcomes.length} hosts** rolled back${ok === outcomes.length ? '' : ' — the others need a person'}.`,
    '',
    '| Host (environment) | Level | Outcome | Reason | From → To | Took | Run record |',
    '|---|---|---|---|---|---|---|',
    ...outcomes.map(
      o =>
        `| ${cell(o.environment)} | ${cell(o.level)} | ${o.decision === 'rolled_back' ? '✅' : o.decision === 'planned' ? '📝' : '❌'} ${cell(o.decision)} | ${cell(o.reasonCode)} | ${cell(o.from)} → ${cell(o.to)} | ${o.seconds ? `${cell(o.seconds)} s` : '—'} | ${cell(o.runId)} |`
    )
  ].join('\n')
}
