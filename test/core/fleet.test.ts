import { fleetOutcomes, fleetTable, parseFleetRow } from '../../src/core/fleet'

const file = (env: string, level: string, decision: string, reason = 'ok'): string =>
  [
    `environment=${env}`,
    `level=${level}`,
    `decision=${decision}`,
    `reason_code=${reason}`,
    'from=v2.5.0',
    'to=v2.4.9',
    'seconds=12.5',
    'run_id=20260102-143022-ab12'
  ].join('\n')

test('N result files: a table with its header and one row per host, in matrix order; escalations count once', () => {
  const hosts = Array.from({ length: 12 }, (_, i) => `prod-${i + 1}`)
  const files = hosts
    .slice(0, 10)
    .map((h, i) => file(h, '1', i === 3 ? 'failed' : 'rolled_back', i === 3 ? 'validation_failed' : 'ok'))
  files.push(file('prod-4', '2', 'rolled_back')) // prod-4 escalated to Level 2 and succeeded
  files.push('garbage without an environment')
  const rows = files.map(parseFleetRow).filter(r => r !== undefined)
  const outcomes = fleetOutcomes(hosts, rows)
  expect(outcomes.map(o => o.environment)).toEqual(hosts)
  expect(outcomes[3]).toMatchObject({ level: '2', decision: 'rolled_back' })
  expect(outcomes.slice(10).map(o => o.decision)).toEqual(['no result', 'no result'])
  const table = fleetTable(outcomes).split('\n')
  expect(table[0]).toBe('**10 of 12 hosts** rolled back — the others need a person.')
  expect(table[2]).toBe('| Host (environment) | Level | Outcome | Reason | From → To | Took | Run record |')
  expect(table[3]).toBe('|---|---|---|---|---|---|---|')
  expect(table.slice(4)).toHaveLength(12)
  expect(table[4]).toBe(
    '| prod-1 | 1 | ✅ rolled_back | ok | v2.5.0 → v2.4.9 | 12.5 s | 20260102-143022-ab12 |'
  )
  expect(table[15]).toBe('| prod-12 | — | ❌ no result | not_run | — → — | — | — |')
})

test('a value cannot break the table', () => {
  const row = parseFleetRow('environment=a|b\nfrom=<img src=x>\ndecision=rolled_back')!
  const line = fleetTable(fleetOutcomes([], [row])).split('\n')[4]!
  expect(line.split('|')).toHaveLength(9)
  expect(line).not.toContain('<')
})
