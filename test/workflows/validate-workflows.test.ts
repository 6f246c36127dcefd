import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCommand } from '../../src/drivers/exec'

/**
 * scripts/validate-workflows.mjs — GitHub's workflow parser and language service, actionlint, and the
 * repository's rules — passes on the workflows as they are, and catches each way they could go wrong.
 */
const root = path.resolve(__dirname, '../..')
const script = path.join(root, 'scripts/validate-workflows.mjs')
let copy: string
beforeAll(() => {
  copy = mkdtempSync(path.join(tmpdir(), 'backout-wf-'))
  for (const p of ['action.yml', 'actions', '.github'])
    cpSync(path.join(root, p), path.join(copy, p), { recursive: true })
})
afterAll(() => rmSync(copy, { recursive: true, force: true }))

const edit = (rel: string, from: string | RegExp, to: string): void => {
  const file = path.join(copy, rel)
  const text = readFileSync(file, 'utf8')
  const next = text.replace(from, to)
  if (next === text) throw new Error(`${rel}: ${String(from)} not found`)
  writeFileSync(file, next)
}

test('the workflows and actions as they are: valid by every check', async () => {
  const res = await runCommand([process.execPath, script])
  expect(res.stderr).toBe('')
  expect(res.code).toBe(0)
  expect(res.stdout).toMatch(/workflow-parser, languageservice, actionlint, rules\): all valid/)
})

test('each broken rule or contract is reported, naming the file and what to do', async () => {
  const wf = '.github/workflows'
  // an action input renamed on the action's side: the workflow's with: no longer matches
  edit('actions/preflight/action.yml', /^  allow-unprotected:/m, '  allow-unprotect:')
  // a reusable-workflow input that rollback.yml does not declare
  edit(
    `${wf}/rollback-dispatch.yml`,
    '      reason: ${{ inputs.reason }}',
    '      reason: ${{ inputs.reason }}\n      levle: 2'
  )
  edit(
    `${wf}/rollback-dispatch.yml`,
    /secrets:\n {6}BACKOUT_ENV: \$\{\{ secrets.BACKOUT_ENV \}\}/,
    'secrets: inherit'
  )
  edit(
    `${wf}/rollback-chatops.yml`,
    /contains\(fromJSON\('\["OWNER","MEMBER","COLLABORATOR"\]'\), github.event.comment.author_association\) &&\n/,
    ''
  )
  edit(`${wf}/rollback-on-failed-deploy.yml`, "github.event.workflow_run.event == 'push' &&", '')
  edit(
    `${wf}/rollback.yml`,
    'if: ${{ !cancelled() && inputs.open-incident',
    'if: ${{ always() && inputs.open-incident'
  )
  edit(`${wf}/rollback.yml`, " && needs.level-1.outputs.escalatable == 'true'", '')
  edit(`${wf}/record-release.yml`, /\n {8}with:\n {10}persist-credentials: false/, '')
  edit(`${wf}/rollback-fleet.yml`, '    timeout-minutes: 10\n', '')
  edit(`${wf}/rollback-fleet.yml`, 'fail-fast: false', 'fail-fast: true')
  const res = await runCommand([process.execPath, script, '--root', copy])
  expect(res.code).toBe(1)
  const out = res.stderr
  expect(out).toMatch(/rollback\.yml: languageservice .*allow-unprotected/)
  expect(out).toMatch(/rollback-dispatch\.yml: (languageservice|workflow-parser).*levle/)
  expect(out).toMatch(/rollback-dispatch\.yml: job rollback: secrets: inherit/)
  expect(out).toMatch(/rollback-chatops\.yml: job command: gate it with if: on author_association/)
  expect(out).toMatch(/rollback-on-failed-deploy\.yml: job rollback: filter to push events/)
  expect(out).toMatch(/rollback\.yml: job open-incident: always\(\) — use !cancelled\(\)/)
  expect(out).toMatch(/rollback\.yml: job level-2: escalate only when level 1 says escalatable/)
  expect(out).toMatch(
    /record-release\.yml: job snapshot: actions\/checkout needs with: persist-credentials: false/
  )
  expect(out).toMatch(/rollback-fleet\.yml: job summary: set timeout-minutes/)
  expect(out).toMatch(/rollback-fleet\.yml: job rollback: strategy\.fail-fast: false/)
})
