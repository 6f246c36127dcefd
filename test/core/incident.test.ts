import {
  GITHUB_BODY_MAX,
  analysisSection,
  escalationComment,
  fingerprintMarker,
  incidentBody,
  incidentFingerprint,
  incidentTitle,
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
        "Downtime: at most 2 min 20 s (the rollback's duration)",
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
        '- All services healthy',
        '- Error rate normal',
        '- Response time normal',
        '',
        'Next Steps:',
        '- Continued monitoring for 4 hours',
        '- Root cause analysis',
        '- Fix in development',
        '',
        'Contact: @oncall-alice'
      ].join('\n')
    )
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
      'Post-Mortem: Production Rollback: error rate 34% after deploy',
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
      { line: '<time> FATAL panic at <hex>', count: 1 },
      { line: '<time> error db timeout after <n>ms conn=<n>', count: 1 }
    ])
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

  it('renders errors, diff and risky files so no content can break out of its block', () => {
    const section = analysisSection({
      topErrors: [{ line: 'ERROR boom ``` `x`', count: 3 }],
      configDiff: '-  image: api:v2.3.9\n+  image: api:v2.4.0\n',
      riskyFiles: ['docker-compose.yml', 'weird`name.sql']
    })
    expect(sections(section)).toEqual([
      'Failure Analysis',
      'Top error lines',
      'Configuration diff (failed → stable)',
      'Risky files changed'
    ])
    expect(section).toContain('````\n     3  ERROR boom ``` `x`\n````')
    expect(section).toContain('```diff\n-  image: api:v2.3.9\n+  image: api:v2.4.0\n```')
    expect(section).toContain("- `weird'name.sql`")
    const empty = analysisSection({ topErrors: [], configDiff: '  \n', riskyFiles: [] })
    expect(empty).toContain('No error lines found in the logs.')
    expect(empty).toContain('No configuration differences.')
    expect(empty).toContain('None (no SQL, migrations/, compose or .env files changed).')
  })
})
