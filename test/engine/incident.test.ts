import { appendFileSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { MemoryLogger } from '../../src/core/logger'
import { incidentBody, stakeholderNotification } from '../../src/core/incident'
import { loadConfig } from '../../src/drivers/config-file'
import { isAlive, readPid } from '../../src/drivers/process'
import { assess } from '../../src/engine/assess'
import { analyse, incidentFacts } from '../../src/engine/incident'
import { rollback } from '../../src/engine/rollback'
import { createService, type Service } from '../../src/engine/service'
import { validate } from '../../src/engine/validate'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/**
 * The incident from facts, on a real sandbox: green dies (nginx answers 502), assess measures CRITICAL, Level 1
 * switches back to blue, validate passes — and the incident states exactly that: the measured severity, the first
 * failing assess as the detection time, the downtime seen in nginx's access log, "verified healthy" from validate.
 * A password added to .env by the failed deployment never reaches the body, not even with the full diff.
 */

jest.setTimeout(120_000)

const PASSWORD = 'hunter2-sandbox-Secret-9731'

let sb: TestSandbox
let service: Service
beforeAll(async () => {
  sb = await startSandbox()
  service = createService(loadConfig(sb.config), new MemoryLogger())
})
afterAll(async () => {
  await sb?.down()
})

test('severity, detection, downtime, validation and a config diff without secrets, stable → failed', async () => {
  // The failed deployment's config: a new password in .env and a flipped feature flag.
  appendFileSync(path.join(sb.dir, 'config/.env'), `DB_PASSWORD=${PASSWORD}\n`)
  const appJson = path.join(sb.dir, 'config/app.json')
  writeFileSync(appJson, readFileSync(appJson, 'utf8').replace('"newLobby": false', '"newLobby": true'))

  const green = readPid(path.join(sb.dir, 'run/green.pid'))!
  process.kill(green, 'SIGKILL')
  for (let i = 0; i < 200 && isAlive(green); i++) await new Promise(r => setTimeout(r, 10))
  const before = Date.now()
  const a = await assess(service, { rounds: 1, failureLimit: 1, recommend: false })
  expect(a.assessment.severity).toBe('CRITICAL')

  const { record, error } = await rollback(service, {
    level: 1,
    reason: 'green down',
    dryRun: false,
    confirm: () => Promise.resolve(true)
  })
  expect(error).toBeUndefined()
  expect(record.severity).toBeUndefined() // the record does not carry it: the facts do
  const v = await validate(service, { thorough: false })
  expect(v.passed).toBe(true)

  const facts = await incidentFacts(service, record)
  expect(facts.severity).toBe('CRITICAL')
  expect(facts.detectedBy).toMatch(/^the first failing assess/)
  expect(Date.parse(facts.detectedAt)).toBeGreaterThanOrEqual(before - 1000)
  expect(Date.parse(facts.detectedAt)).toBeLessThan(Date.parse(record.startedAt))
  expect(facts.downtime!.badResponses).toBeGreaterThan(0)
  expect(facts.validation!.passed).toBe(true)

  const analysis = await analyse(service, record, { fullDiff: true })
  const body = incidentBody(record, { analysis, ...facts })
  expect(body).not.toContain(PASSWORD)
  expect(body).toContain('- **Severity:** CRITICAL')
  expect(body).toMatch(/Issue detected \(the first failing assess \(CRITICAL\)\)/)
  expect(body).toMatch(/Services verified healthy/)
  expect(body).toMatch(/Downtime \(through nginx\):\*\* \d+ s \(\d+ 502\/503\/504 answers through nginx/)
  expect(body).toMatch(
    /\.env \| modified \| [0-9a-f]{12} \| [0-9a-f]{12} \| DB_PASSWORD=\*\*\* \(added\), IMAGE_TAG=\*\*\* \(modified\)/
  )
  // The full diff runs stable → failed, as labelled, and leaves .env out.
  expect(body).toContain('### Configuration changes (stable → failed)')
  expect(body).toMatch(/--- stable\/\S+app\.json\n\+\+\+ failed\/\S+app\.json/)
  expect(body).toContain('-    "newLobby": false')
  expect(body).toContain('+    "newLobby": true')
  expect(body).not.toMatch(/--- stable\/\S*\.env/)

  const note = stakeholderNotification(record, facts)
  expect(note).toContain('Severity: CRITICAL')
  expect(note).toMatch(/- Error rate normal \(0\.0% over \d+ requests\)/)
  expect(note).toMatch(/We experienced a brief service disruption between .* UTC and .* UTC\./)
  expect(note).not.toContain(PASSWORD)

  const cli = await runCli(['--config', sb.config, 'incident', '--full-diff'])
  expect(cli.code).toBe(0)
  expect(cli.stdout).toMatch(/^# Sandbox Rollback: spacetime v2\.5\.0 → v2\.4\.9: green down/)
  expect(cli.stdout + cli.stderr).not.toContain(PASSWORD)
})
