import { workflowOutcome } from '../../src/core/workflow-outcome'

const ran = (id: string): { result: string; outputs: Record<string, string> } => ({
  result: 'failure',
  outputs: { run_id: id, decision: 'failed' }
})

test('the last level that produced a run record is the one reported', () => {
  const needs = {
    assess: { result: 'success', outputs: {} },
    'level-1': ran('20260102-143022-aaaa'),
    'level-2': { result: 'success', outputs: { run_id: '20260102-143500-bbbb' } },
    'level-3': { result: 'skipped', outputs: {} }
  }
  expect(workflowOutcome(JSON.stringify(needs))).toEqual({
    kind: 'ran',
    runId: '20260102-143500-bbbb',
    level: 2
  })
})

test('a rejected approval is reported as such, never as a success of an older rollback', () => {
  const needs = {
    assess: { result: 'success', outputs: {} },
    snapshot: { result: 'success', outputs: {} },
    'level-1': { result: 'failure', outputs: {} },
    'level-2': { result: 'skipped', outputs: {} },
    'level-3': { result: 'skipped', outputs: {} }
  }
  const o = workflowOutcome(JSON.stringify(needs))
  expect(o).toMatchObject({ kind: 'approval_rejected', level: 1 })
  expect(o.kind === 'approval_rejected' && o.why).toMatch(/rollback-level-1 environment was rejected/)
})

test('nothing ran: not run, with the job that stopped it', () => {
  const needs = {
    assess: { result: 'success', outputs: {} },
    snapshot: { result: 'failure', outputs: {} },
    'level-1': { result: 'skipped', outputs: {} }
  }
  expect(workflowOutcome(JSON.stringify(needs))).toEqual({
    kind: 'not_run',
    why: 'no level ran — snapshot: failure'
  })
  expect(workflowOutcome('')).toMatchObject({ kind: 'not_run' })
  expect(workflowOutcome('not json')).toMatchObject({ kind: 'not_run' })
})

test('an explicit run id wins; a malformed one is ignored', () => {
  expect(workflowOutcome('{}', '20260102-143022-aaaa')).toEqual({
    kind: 'ran',
    runId: '20260102-143022-aaaa',
    level: 0
  })
  expect(workflowOutcome('{}', '../../etc/passwd')).toMatchObject({ kind: 'not_run' })
})
