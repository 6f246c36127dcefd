import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parseConfig } from '../../src/core/config'
import { MemoryLogger } from '../../src/core/logger'
import { OperationError } from '../../src/core/errors'
import { runOperation } from '../../src/engine/operation'
import type { Step } from '../../src/engine/run-steps'
import { minimalConfig } from '../support/minimal-config'

/** A local webhook receiver: records each POST; `fail` answers the first N requests of a path with 500. */
interface Received {
  path: string
  contentType: string | undefined
  body: Record<string, unknown>
}
const received: Received[] = []
const failFirst = new Map<string, number>()
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const left = failFirst.get(req.url ?? '') ?? 0
    if (left > 0) {
      failFirst.set(req.url ?? '', left - 1)
      res.writeHead(500).end('busy')
      return
    }
    received.push({
      path: req.url ?? '',
      contentType: req.headers['content-type'],
      body: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>
    })
    res.writeHead(200).end('ok')
  })
})
let base = ''
const dir = mkdtempSync(path.join(tmpdir(), 'backout-notify-'))
beforeAll(async () => {
  await new Promise<void>(r => server.listen(0, '127.0.0.1', r))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})
afterAll(async () => {
  await new Promise(r => server.close(r))
  rmSync(dir, { recursive: true, force: true })
})
beforeEach(() => {
  received.length = 0
  failFirst.clear()
})

const step = (fail = false): Step => ({
  name: 'Switch traffic',
  kind: 'write',
  budgetSeconds: 10,
  describe: () => 'switch',
  run: () => (fail ? Promise.reject(new OperationError('nginx reload failed')) : Promise.resolve('switched'))
})

function run(notify: unknown, fail = false): Promise<{ log: MemoryLogger; status: string; error?: unknown }> {
  const config = parseConfig(
    {
      ...minimalConfig,
      state: { dir: path.join(dir, 'state') },
      history: { log: path.join(dir, 'h.log') },
      notify
    },
    'backout.yml'
  )
  const log = new MemoryLogger()
  return runOperation({
    config,
    operation: 'rollback',
    level: 1,
    reason: 'error rate 30%',
    dryRun: false,
    log,
    rtoSeconds: 300,
    confirm: () => Promise.resolve(true),
    steps: record => {
      record.from = 'v2.5.0'
      record.to = 'v2.4.9'
      return [step(fail)]
    }
  }).then(({ record, error }) => ({ log, status: record.status, error }))
}

test('start and success reach Slack (Block Kit), Teams (Adaptive Card) and a JSON webhook, URLs from ${VAR}', async () => {
  process.env.TEST_SLACK_HOOK = `${base}/slack/T000/B000/secret-token`
  try {
    const { status, log } = await run({
      channels: [
        { kind: 'slack', webhook: '${TEST_SLACK_HOOK}' },
        { kind: 'teams', webhook: `${base}/teams` },
        { kind: 'webhook', url: `${base}/generic` }
      ]
    })
    expect(status).toBe('success')
    expect(received.map(r => r.path).sort()).toEqual([
      '/generic',
      '/generic',
      '/slack/T000/B000/secret-token',
      '/slack/T000/B000/secret-token',
      '/teams',
      '/teams'
    ])
    expect(received.every(r => r.contentType === 'application/json')).toBe(true)
    const slack = received.filter(r => r.path.startsWith('/slack')).map(r => r.body)
    expect(slack[0]).toMatchObject({
      text: expect.stringContaining('started'),
      blocks: [
        { type: 'header', text: { type: 'plain_text' } },
        { type: 'section', text: { type: 'mrkdwn' } },
        { type: 'context', elements: expect.arrayContaining([{ type: 'mrkdwn', text: '*Level:* 1' }]) }
      ]
    })
    expect(JSON.stringify(slack[1])).toContain('Subject: Production Rollback - spacetime')
    expect(JSON.stringify(slack[1])).toContain('Rollback completed successfully')
    const teams = received.find(r => r.path === '/teams')!.body as {
      type: string
      attachments: {
        contentType: string
        content: { type: string; version: string; body: { type: string }[] }
      }[]
    }
    expect(teams.type).toBe('message')
    expect(teams.attachments[0]!.contentType).toBe('application/vnd.microsoft.card.adaptive')
    expect(teams.attachments[0]!.content).toMatchObject({ type: 'AdaptiveCard', version: '1.4' })
    expect(teams.attachments[0]!.content.body.map(b => b.type)).toEqual(['TextBlock', 'FactSet', 'TextBlock'])
    const generic = received.filter(r => r.path === '/generic').map(r => r.body)
    expect(generic.map(g => g.event)).toEqual(['rollback.start', 'rollback.success'])
    expect(generic[1]).toMatchObject({
      schema: 'backout.notification/v1',
      service: 'spacetime',
      level: 1,
      from: 'v2.5.0',
      to: 'v2.4.9',
      status: 'success'
    })
    expect(log.lines.join('\n')).not.toContain('secret-token')
  } finally {
    delete process.env.TEST_SLACK_HOOK
  }
})

test('a failed rollback sends failure; 5xx is retried with backoff until delivered', async () => {
  failFirst.set('/generic', 2)
  const { status, log } = await run(
    { on: ['failure'], retries: 3, backoffMs: 10, channels: [{ kind: 'webhook', url: `${base}/generic` }] },
    true
  )
  expect(status).toBe('failed')
  expect(received).toHaveLength(1)
  expect(received[0]!.body).toMatchObject({
    event: 'rollback.failure',
    status: 'failed',
    error: 'nginx reload failed'
  })
  expect(log.lines).toContain('info: notified webhook (failure)')
})

test('an undeliverable notification never fails the rollback: it is reported, its URL masked', async () => {
  failFirst.set('/down', 100)
  const started = performance.now()
  const { status, error, log } = await run({
    retries: 2,
    backoffMs: 10,
    timeoutMs: 1000,
    channels: [
      { kind: 'webhook', url: `${base}/down` },
      { kind: 'slack', webhook: '${TEST_UNSET_HOOK}' },
      { kind: 'teams', webhook: 'http://127.0.0.1:1/closed-port-token' }
    ]
  })
  expect({ status, error }).toEqual({ status: 'success', error: undefined })
  expect(performance.now() - started).toBeLessThan(10_000)
  const warnings = log.lines.filter(l => l.startsWith('warn: notification'))
  expect(warnings).toEqual(
    expect.arrayContaining([
      expect.stringMatching(
        /^warn: notification \(start\) to webhook failed after 3 attempt\(s\): HTTP 500 — the rollback is not affected/
      ),
      expect.stringMatching(
        /^warn: notification \(success\) to slack failed after 0 attempt\(s\): .*TEST_UNSET_HOOK is not set/
      ),
      expect.stringMatching(
        /^warn: notification \(success\) to teams failed after 3 attempt\(s\): fetch failed: \S/
      )
    ])
  )
  expect(log.lines.join('\n')).not.toContain('closed-port-token')
})

test('notify config: a webhook must be ${VAR} or a URL; the channel kind is checked', () => {
  const bad =
    (notify: unknown): (() => unknown) =>
    () =>
      parseConfig({ ...minimalConfig, notify }, 'backout.yml')
  expect(bad({ channels: [{ kind: 'slack', webhook: 'hooks.slack.com/x' }] })).toThrow(
    /expected \$\{VAR\} \(a secret\) or an https:\/\/ URL/
  )
  expect(bad({ channels: [{ kind: 'pager', url: 'x' }] })).toThrow(/notify\.channels\.0\.kind/)
  expect(bad({ channels: [] })).toThrow(/notify\.channels/)
})
