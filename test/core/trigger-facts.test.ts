import { triggerFacts } from '../../src/core/trigger-facts'

test('a failed deploy run gives its page and the time it concluded', () => {
  expect(
    triggerFacts({
      workflow_run: {
        conclusion: 'failure',
        html_url: 'https://github.com/o/r/actions/runs/42',
        updated_at: '2026-12-02T10:00:05Z'
      }
    })
  ).toEqual({
    detectedAt: '2026-12-02T10:00:05.000Z',
    failedRunUrl: 'https://github.com/o/r/actions/runs/42'
  })
})

test('a /rollback comment gives its link and the time it was written', () => {
  expect(
    triggerFacts({
      comment: {
        html_url: 'https://github.com/o/r/pull/7#issuecomment-9',
        created_at: '2026-12-02T10:01:00Z'
      }
    })
  ).toEqual({
    detectedAt: '2026-12-02T10:01:00.000Z',
    triggerUrl: 'https://github.com/o/r/pull/7#issuecomment-9'
  })
})

test('anything else, or values that are not a time or a link, give nothing', () => {
  expect(triggerFacts({ workflow_run: { conclusion: 'success', html_url: 'https://x' } })).toEqual({})
  expect(triggerFacts(null)).toEqual({})
  expect(triggerFacts({ comment: { html_url: 'javascript:alert(1)', created_at: 'yesterday' } })).toEqual({
    detectedAt: undefined,
    triggerUrl: undefined
  })
})
