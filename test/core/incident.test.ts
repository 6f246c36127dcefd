import {
  GITHUB_BODY_MAX,
  analysisSection,
  escalationComment,
  configChanges,
  fingerprintMarker,
  incidentBody,
  incidentFingerprint,
  incidentLabels,
  incidentTitle,
  nginxDowntime,
  postMortemBody,
  riskyFiles,
  stakeholderNotification,
  topErrorLines
} from '../../src/core/incident'
import { RUN_RECORD_SCHEMA, type RunRecord, type StepRecord } from '../../src/core/run-record'

function step(name: string, at: string, seconds: number, extra: Partial<StepRecord> = {}): StepRecord {
  const startedAt = `2025-01-02T14:${at}.000Z`
  return {
    name,
    status: 'ok',
    startedAt,
    endedAt: new Date(Date.parse(startedAt) + seconds * 1000).toISOString(),
    durationMs: seconds * 1000,
    detail: `${name} done`,
    destructive: false,
    ...extra
  }
}

/** A Level 1 rollback as the engine records it. */
function level1(overrides: Partial<RunRecord> = {}): RunRecord {
  return {
    schema: RUN_RECORD_SCHEMA,
    id: '20250102-143000-ab12',
    service: 'api',
    environment: 'production',
    operation: 'rollback',
    level: 1,
    from: 'v2.4.0',
    to: 'v2.3.9',
    reason: 'error rate 34% after deploy',
    status: 'success',
    dryRun: false,
    startedAt: '2025-01-02T14:30:00.000Z',
    endedAt: '2025-01-02T14:32:20.000Z',
    durationMs: 140_000,
    rtoSeconds: 300,
    severity: 'HIGH',
    backupId: '20250102-120000',
    safetyBackupId: 'rollback-safety-20250102-143010',
    steps: [
      step('Assess situation', '30:00', 5),
      step('Verify previous environment', '30:05', 5),
      step('Safety backup', '30:10', 10),
      step('Switch traffic', '30:20', 2, { destructive: true }),
      step('Verify health', '30:22', 30),
      step('Stop failed environment', '30:52', 60, { destructive: true }),
      step('Final validation', '31:52', 28)
    ],
    ...overrides
  }
}

const sections = (markdown: string): string[] =>
  [...markdown.matchAll(/^#{1,3} (.+)$/gm)].map(m => m[1] ?? '')

describe('incident fingerprint', () => {
  it('is stable, short hex, and different for each service, environment and ref', () => {
    const fp = incidentFingerprint('api', 'production', 'v2.4.0')
    expect(fp).toMatch(/^[0-9a-f]{16}$/)
    expect(incidentFingerprint('api', 'production', 'v2.4.0')).toBe(fp)
    expect(
      new Set([
        fp,
        incidentFingerprint('web', 'production', 'v2.4.0'),
        incidentFingerprint('api', 'staging', 'v2.4.0'),
        incidentFingerprint('api', 'production', 'v2.4.1'),
        incidentFingerprint('api production', '', 'v2.4.0')
      ]).size
    ).toBe(5)
  })

  it('makes a hidden marker and refuses a fingerprint that could break out of it', () => {
    expect(fingerprintMarker('abc123')).toBe('<!-- backout:fingerprint=abc123 -->')
    expect(() => fingerprintMarker('x --> <b>')).toThrow(/must match/)
  })
})

describe('incident issue', () => {
  it('titles it as the runbook does', () => {
    expect(incidentTitle('error rate 34%')).toBe('Production Rollback: error rate 34%')
    expect(incidentTitle('  multi\nline  ')).toBe('Production Rollback: multi line')
    expect(incidentTitle('x'.repeat(500)).length).toBeLessThan(230)
  })

  it('names the service, its environment and the versions; labels carry the environment, not "production"', () => {
    const r = level1({ environment: 'staging' })
    expect(incidentTitle(r.reason, r)).toBe(
      'Staging Rollback: api v2.4.0 → v2.3.9: error rate 34% after deploy'
    )
    expect(incidentLabels('staging')).toEqual(['incident', 'staging', 'rollback'])
    expect(incidentLabels('Production EU')).toEqual(['incident', 'production-eu', 'rollback'])
    expect(stakeholderNotification(r)).toMatch(/^Subject: Staging Rollback - api\n\nSeverity: HIGH/)
  })

  it('takes the severity assess measured, the detection source, the links, and every level of an escalation', () => {
    const l1 = level1({
      id: 'l1',
      status: 'failed',
      error: 'blue is not healthy',
      startedAt: '2025-01-02T14:20:00.000Z',
      endedAt: '2025-01-02T14:21:00.000Z'
    })
    const l2 = level1({ level: 2, severity: undefined })
    const body = incidentBody(l2, {
      severity: 'CRITICAL',
      detectedAt: '2025-01-02T14:18:00Z',
      detectedBy: 'the first failing assess (CRITICAL)',
      escalation: [l1],
      triggerUrl: 'https://github.com/acme/api/issues/7#issuecomment-1',
      failedRunUrl: 'https://github.com/acme/api/actions/runs/41'
    })
    expect(body).toContain('- **Severity:** CRITICAL')
    const timeline = body.split('## Timeline')[1]!.split('## Impact')[0]!
    expect(timeline).toContain(
      '- **2025-01-02 14:18:00 UTC:** Issue detected (the first failing assess (CRITICAL))'
    )
    expect(timeline).toContain('- **2025-01-02 14:20:00 UTC:** Level 1 initiated')
    expect(timeline).toContain(
      '- **2025-01-02 14:21:00 UTC:** Level 1 failed: blue is not healthy — escalating'
    )
    expect(timeline).toContain('Rollback initiated (Level 2)')
    expect(body).toContain('- Triggered by: https://github.com/acme/api/issues/7#issuecomment-1')
    expect(body).toContain('- Failed deployment run: https://github.com/acme/api/actions/runs/41')
  })

  it('says "verified healthy" only for a validation: a passed health wait is not one; a failed validate says so', () => {
    const noValidation = level1({ steps: level1().steps.filter(s => s.name !== 'Final validation') })
    expect(incidentBody(noValidation)).toContain('Services not verified (no verification step ran)')
    const failedValidate = incidentBody(level1(), {
      validation: { at: '2025-01-02T14:33:00.000Z', passed: false }
    })
    expect(failedValidate).toContain(
      '- **2025-01-02 14:33:00 UTC:** Services NOT verified healthy (backout validate: failed)'
    )
  })

  it("fills the runbook's report from the run record", () => {
    const body = incidentBody(level1(), { runUrl: 'https://github.com/acme/api/actions/runs/42' })
    expect(sections(body)).toEqual([
      'Incident Summary',
      'Timeline',
      'Impact',
      'Root Cause',
      'Resolution',
      'Next Steps',
      'Links'
    ])
    expect(body).toContain('- **Date:** 2025-01-02 14:30:00 UTC')
    expect(body).toContain('- **Severity:** HIGH')
    expect(body).toContain('- **Duration:** 2 min 20 s (RTO 5 min 0 s: met)')
    expect(body).toContain('- **Rollback Level:** 1 — quick rollback (blue/green switch)')
    expect(body).toContain('- **From version:** v2.4.0')
    expect(body).toContain('- **To version:** v2.3.9')
    expect(body).toContain('Rolled back to version v2.3.9 using Level 1 rollback procedure.')
    expect(body).toContain('- **Data Loss:** None (Level 1/2 changes no data)')
    expect(body).toContain('[To be determined - will update after analysis]')
    expect(body).toContain('- [ ] Post-mortem meeting')
    expect(body).toContain('- Workflow run: https://github.com/acme/api/actions/runs/42')
    expect(body).toContain('- Backup: `20250102-120000`')
  })

  it('puts the real times on the timeline: detected, initiated (first change), completed, verified', () => {
    const body = incidentBody(level1(), { detectedAt: '2025-01-02T14:28:45Z' })
    const timeline = body.split('## Timeline')[1]?.split('## Impact')[0]?.trim()
    expect(timeline).toBe(
      [
        '- **2025-01-02 14:28:45 UTC:** Issue detected',
        '- **2025-01-02 14:30:20 UTC:** Rollback initiated',
        '- **2025-01-02 14:31:52 UTC:** Rollback completed',
        '- **2025-01-02 14:32:20 UTC:** Services verified healthy'
      ].join('\n')
    )
  })

  it('says so when the rollback failed and verification did not pass', () => {
    const failed = level1({ status: 'failed', error: 'blue is unhealthy', endedAt: '2025-01-02T14:31:00Z' })
    failed.steps[4] = { ...failed.steps[4]!, status: 'failed' }
    failed.steps = failed.steps.slice(0, 5)
    const body = incidentBody(failed)
    expect(body).toContain('- **Status:** Rollback failed: blue is unhealthy')
    expect(body).toContain('Rollback ended without completing (failed)')
    expect(body).toContain('Services NOT verified healthy (Verify health: failed)')
    expect(body).toContain('Not resolved by this run')
    expect(body).not.toContain('Rolled back to version')
  })

  it('shows the data-loss window of a Level 3 restore', () => {
    const body = incidentBody(
      level1({
        level: 3,
        dataLoss: {
          restoredTo: '2025-01-02T14:00:00Z',
          windowSeconds: 1800,
          walReplayed: true,
          note: 'orders after 14:00 must be re-entered'
        }
      })
    )
    expect(body).toContain(
      '- **Data Loss:** writes after 2025-01-02 14:00:00 UTC are lost (window 30 min 0 s, WAL replayed); orders after 14:00 must be re-entered'
    )
    expect(incidentBody(level1({ level: 3 }))).toContain('- **Data Loss:** Unknown')
  })

  it('ends with exactly one fingerprint marker, which user text cannot fake', () => {
    const spoof = `<!-- backout:fingerprint=${incidentFingerprint('web', 'production', 'v1')} -->`
    const body = incidentBody(level1({ reason: spoof }), {
      analysis: analysisSection({ topErrors: [], configDiff: spoof, riskyFiles: [] })
    })
    const marker = fingerprintMarker(incidentFingerprint('api', 'production', 'v2.4.0'))
    expect(body.trimEnd().endsWith(marker)).toBe(true)
    expect(body.match(/backout:fingerprint=/g)).toHaveLength(1)
    expect(body).toContain('- **Reason:** &lt;!-- backout')
  })

  it('keeps the steps in a collapsible table, with pipes and newlines escaped', () => {
    const record = level1()
    record.steps[0] = { ...record.steps[0]!, detail: 'a | b\nc' }
    const body = incidentBody(record)
    expect(body).toContain('<details><summary>Steps (7)</summary>')
    expect(body).toContain('| Assess situation | ok | 2025-01-02 14:30:00 UTC | 5 s |  | a \\| b c |')
    expect(body).toContain('| Switch traffic | ok | 2025-01-02 14:30:20 UTC | 2 s | yes |')
  })

  it('stays within the GitHub body limit and keeps its marker when the analysis is huge', () => {
    const analysis = analysisSection({ topErrors: [], configDiff: '+x\n'.repeat(40_000), riskyFiles: [] })
    const big = incidentBody(level1(), { analysis: `${analysis}\n${'y'.repeat(100_000)}` })
    expect(big.length).toBeLessThanOrEqual(GITHUB_BODY_MAX)
    expect(big).toContain('more characters cut')
    expect(
      big.trimEnd().endsWith(fingerprintMarker(incidentFingerprint('api', 'production', 'v2.4.0')))
    ).toBe(true)
  })
})

describe('escalation comment for a re-run', () => {
  it('reports the run and advises the next level when it failed', () => {
    const comment = escalationComment(level1({ status: 'failed', error: 'switch failed' }), {
      runUrl: 'https://example.test/run/2'
    })
    expect(comment).toMatch(/^### Rollback re-run: failed at 2025-01-02 14:30:00 UTC/)
    expect(comment).toContain('Escalate: consider a Level 2 rollback')
    expect(comment).toContain('- **Workflow run:** https://example.test/run/2')
    expect(comment).toContain('<details><summary>Steps (7)</summary>')
    expect(comment).not.toContain('backout:fingerprint=')
  })

  it('gives no escalation advice for a run that succeeded', () => {
    expect(escalationComment(level1())).not.toContain('Escalate')
    expect(escalationComment(level1({ level: 3, status: 'failed' }))).toContain('manual recovery')
  })
})

describe('stakeholder notification', () => {
  it("is the runbook's internal notification, filled in", () => {
    expect(stakeholderNotification(level1(), { contact: '@oncall-alice', monitorHours: 4 })).toBe(
      [
        'Subject: Production Rollback - api',
        '',
        'Severity: HIGH',
        'Status: Rollback completed successfully',
        'Environment: production',
        'Rollback Level: 1',
        'Target Version: v2.3.9',
        "Downtime: not measured through nginx (at most the rollback's duration, 2 min 20 s, if it was down throughout)",
        'Data Loss: None',
        '',
        'Actions Taken:',
        '- Assess situation: Assess situation done',
        '- Verify previous environment: Verify previous environment done',
        '- Safety backup: Safety backup done',
        '- Switch traffic: Switch traffic done',
        '- Verify health: Verify health done',
        '- Stop failed environment: Stop failed environment done',
        '- Final validation: Final validation done',
        '',
        'Current Status:',
        "- Services answer through nginx (the rollback's own validation)",
        '- Error rate: not measured after the rollback (run: backout validate)',
        '- Response time: not measured after the rollback (run: backout validate)',
        '',
        'Next Steps:',
        '- Continued monitoring for 4 hours',
        '- Root cause analysis',
        '- Fix in development',
        '',
        'Contact: @oncall-alice',
        '',
        'Customer Communication (if applicable):',
        'We experienced a brief service disruption between 2025-01-02 14:30:00 UTC and 2025-01-02 14:32:20 UTC.',
        'The issue has been resolved and all services are now operating normally.',
        'We apologize for any inconvenience.'
      ].join('\n')
    )
  })

  it('says "error rate normal" only when validate measured it, and the downtime seen through nginx', () => {
    const text = stakeholderNotification(level1(), {
      validation: {
        at: '2025-01-02T14:33:00.000Z',
        passed: true,
        errorRate: '0.0% over 40 requests',
        p95: '12 ms'
      },
      downtime: {
        seconds: 95,
        badResponses: 412,
        from: '2025-01-02T14:29:10.000Z',
        to: '2025-01-02T14:30:45.000Z'
      },
      detectedAt: '2025-01-02T14:28:45Z'
    })
    expect(text).toContain('- All services healthy (backout validate passed)')
    expect(text).toContain('- Error rate normal (0.0% over 40 requests)')
    expect(text).toContain('- Response time normal (p95 12 ms)')
    expect(text).toContain(
      'Downtime: 1 min 35 s (412 502/503/504 answers through nginx, 2025-01-02 14:29:10 UTC – 2025-01-02 14:30:45 UTC)'
    )
    expect(text).toContain('between 2025-01-02 14:29:10 UTC and 2025-01-02 14:30:45 UTC')
  })

  it('does not claim health after a failed rollback, and shows the error as plain text', () => {
    const text = stakeholderNotification(level1({ status: 'failed', error: 'nginx -s reload: <exit 1>' }))
    expect(text).toContain('Status: Rollback failed: nginx -s reload: <exit 1>')
    expect(text).toContain('- Rollback did not complete: nginx -s reload: <exit 1>')
    expect(text).not.toContain('All services healthy')
    expect(text).toContain('Contact: the on-call engineer')
  })
})

describe('post-mortem', () => {
  it('follows the runbook template, with owner, detection, trigger and dated action items', () => {
    const failedStep = level1()
    failedStep.steps[6] = { ...failedStep.steps[6]!, durationMs: 95_000, deadlineSeconds: 90 }
    const body = postMortemBody({
      record: failedStep,
      owner: '@alice',
      detection: 'error-rate alert at 14:28',
      trigger: 'deploy of v2.4.0 with a new connection pool size',
      contributingFactors: ['pool size not load-tested'],
      wentWell: ['alert fired within a minute'],
      wentWrong: ['no canary'],
      gotLucky: ['low traffic hour'],
      incidentUrl: 'https://github.com/acme/api/issues/7'
    })
    expect(sections(body)).toEqual([
      'Post-Mortem: Production Rollback: api v2.4.0 → v2.3.9: error rate 34% after deploy',
      'Metadata',
      'Executive Summary',
      'Detection',
      'Timeline',
      'Root Cause',
      'Contributing Factors',
      'Impact',
      'Resolution',
      'What Went Well',
      'What Went Wrong',
      'Where We Got Lucky',
      'Action Items',
      'Lessons Learned'
    ])
    expect(body).toContain('- **Owner:** @alice')
    expect(body).toContain('- **How it was detected:** error-rate alert at 14:28')
    expect(body).toContain('- **Trigger:** deploy of v2.4.0 with a new connection pool size')
    expect(body).toContain('- pool size not load-tested')
    expect(body).toContain('- Rollback took 2 min 20 s against an RTO of 5 min 0 s')
    expect(body).toContain('- A safety backup was taken first (`rollback-safety-20250102-143010`)')
    expect(body).toContain('- alert fired within a minute')
    expect(body).toContain('- Step "Final validation" overran its 90 s deadline')
    expect(body).toContain('- no canary')
    expect(body).toContain('- low traffic hour')
    expect(body).toContain('- [ ] Root cause analysis - Owner: @alice - Due: 2025-01-04')
    expect(body).toContain('- [ ] Fix with a regression test - Owner: @alice - Due: 2025-01-09')
    expect(body).toContain('- **2025-01-02 14:30:20 UTC:** Switch traffic — ok (Switch traffic done)')
  })

  it('takes given action items as they are', () => {
    const body = postMortemBody({
      record: level1(),
      owner: '@alice',
      actionItems: [{ action: 'Add canary stage', owner: '@bob', due: '2025-02-01' }]
    })
    expect(body).toContain('- [ ] Add canary stage - Owner: @bob - Due: 2025-02-01')
    expect(body).not.toContain('Root cause analysis - Owner')
  })
})

describe('failure analysis', () => {
  it('counts error lines with numbers, uuids, hex ids and timestamps normalised, most frequent first', () => {
    const log = [
      '2025-01-02T14:30:01.123Z ERROR db timeout after 5000ms conn=17',
      '2025-01-02 14:30:02,456 INFO request ok',
      '2025-01-02T14:30:03Z ERROR user 3f2b8c1e-9d4a-4b7e-8c2a-1e5f6a7b8c9d not found',
      '2025-01-02T14:30:04.999Z ERROR db timeout after 5012ms conn=3',
      '14:30:05 FATAL panic at 0x7ffd1234',
      '2025-01-02T14:30:06Z ERROR user 0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e not found',
      '2025-01-02T14:30:07Z error db timeout after 4999ms conn=42',
      ''
    ].join('\r\n')
    expect(topErrorLines(log, 10)).toEqual([
      { line: '<time> ERROR db timeout after <n>ms conn=<n>', count: 2 },
      { line: '<time> ERROR user <uuid> not found', count: 2 },
      { line: '<time> FATAL panic at <hex>', count: 1 }
    ])
    // ERROR-level lines, not lines that contain the word.
    expect(topErrorLines('INFO 0 errors\nINFO error_rate=0.1\nINFO retrying after error\n', 5)).toEqual([])
    expect(topErrorLines('{"level":"error","msg":"x"}\nlevel=error msg=y\n', 5)).toHaveLength(2)
    expect(topErrorLines(log, 1)).toHaveLength(1)
    expect(topErrorLines('all good\n', 5)).toEqual([])
  })

  it("flags the runbook's risky paths: SQL, migrations/, compose files, .env files", () => {
    expect(
      riskyFiles([
        'src/app.ts',
        'db/schema.sql',
        'alembic/migrations/versions/0042_add.py',
        'docker-compose.yml',
        'deploy/docker-compose.prod.yaml',
        'compose.yaml',
        '.env',
        'config/.env.production',
        'docs/environment.md',
        'src/envelope.ts',
        'db\\seed.SQL',
        'db/schema.sql'
      ])
    ).toEqual([
      'db/schema.sql',
      'alembic/migrations/versions/0042_add.py',
      'docker-compose.yml',
      'deploy/docker-compose.prod.yaml',
      'compose.yaml',
      '.env',
      'config/.env.production',
      'db\\seed.SQL'
    ])
  })

  it('renders errors, config changes and risky files so no content can break out of its block', () => {
    const section = analysisSection({
      topErrors: [{ line: 'ERROR boom ``` `x`', count: 3 }],
      configChanges: [
        {
          file: '/srv/app/compose.yml',
          change: 'modified',
          oldSha256: 'a'.repeat(64),
          newSha256: 'b'.repeat(64)
        }
      ],
      configDiff: '-  image: api:v2.3.9\n+  image: api:v2.4.0\n',
      riskyFiles: ['docker-compose.yml', 'weird`name.sql']
    })
    expect(sections(section)).toEqual([
      'Failure Analysis',
      'Top error lines',
      'Configuration changes (stable → failed)',
      'Risky files changed'
    ])
    expect(section).toContain('````\n     3  ERROR boom ``` `x`\n````')
    expect(section).toContain('| /srv/app/compose.yml | modified | aaaaaaaaaaaa | bbbbbbbbbbbb | — |')
    expect(section).toContain('```diff\n-  image: api:v2.3.9\n+  image: api:v2.4.0\n```')
    expect(section).toContain("- `weird'name.sql`")
    const empty = analysisSection({ topErrors: [], configChanges: [], riskyFiles: [] })
    expect(empty).toContain('No ERROR-level lines found in the logs.')
    expect(empty).toContain('No configuration differences.')
    expect(empty).toContain('None (no SQL, migrations/, compose or .env files changed).')
  })

  it('lists changed config files with hashes and, for .env, the changed keys as *** — never a value', () => {
    const stable = new Map([
      ['/app/.env', Buffer.from('IMAGE_TAG=v1\nDB_PASSWORD=old-pass-1234\nLOG_LEVEL=info\n')],
      ['/app/app.json', Buffer.from('{"a":1}\n')],
      ['/app/same.conf', Buffer.from('x=1\n')]
    ])
    const failed = new Map([
      [
        '/app/.env',
        Buffer.from('IMAGE_TAG=v2\nDB_PASSWORD=hunter2-new-secret\nLOG_LEVEL=info\nAPI_KEY=k-987\n')
      ],
      ['/app/app.json', Buffer.from('{"a":2}\n')],
      ['/app/same.conf', Buffer.from('x=1\n')]
    ])
    const changes = configChanges(stable, failed)
    expect(changes.map(c => [c.file, c.change])).toEqual([
      ['/app/.env', 'modified'],
      ['/app/app.json', 'modified']
    ])
    expect(changes[0]!.keys).toEqual([
      { key: 'API_KEY', change: 'added' },
      { key: 'DB_PASSWORD', change: 'modified' },
      { key: 'IMAGE_TAG', change: 'modified' }
    ])
    expect(changes[1]!.keys).toBeUndefined()
    const body = incidentBody(level1(), {
      analysis: analysisSection({ topErrors: [], configChanges: changes, riskyFiles: ['.env'] })
    })
    expect(body).toContain('DB_PASSWORD=*** (modified)')
    for (const secret of ['old-pass-1234', 'hunter2-new-secret', 'k-987']) expect(body).not.toContain(secret)
  })

  it('measures downtime from the 502/503/504 answers in nginx access log lines within the window', () => {
    const log = [
      '127.0.0.1 - - [02/Jan/2025:14:29:59 +0000] "GET / HTTP/1.1" 200 10 "-" "x"',
      '127.0.0.1 - - [02/Jan/2025:15:30:01 +0100] "GET / HTTP/1.1" 502 10 "-" "x"',
      '127.0.0.1 - - [02/Jan/2025:14:30:20 +0000] "GET /health HTTP/1.1" 504 10 "-" "x"',
      '127.0.0.1 - - [02/Jan/2025:14:40:00 +0000] "GET / HTTP/1.1" 502 10 "-" "x"'
    ].join('\n')
    expect(nginxDowntime(log, '2025-01-02T14:30:00Z', '2025-01-02T14:35:00Z')).toEqual({
      seconds: 20,
      badResponses: 2,
      from: '2025-01-02T14:30:01.000Z',
      to: '2025-01-02T14:30:20.999Z'
    })
    expect(nginxDowntime(log, '2025-01-02T14:31:00Z', '2025-01-02T14:35:00Z')).toBeUndefined()
  })
})
