// Validates every action.yml and workflow with @action-validator, and checks every action runs on node24.
// @action-validator 0.6's schema predates `runs.using: node24`, so each action.yml is validated as a copy
// with node20 in its place; the node24 requirement itself is checked here.
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'

const root = path.dirname(path.dirname(new URL(import.meta.url).pathname))
const validator = path.join(root, 'node_modules/.bin/action-validator')
const tmp = mkdtempSync(path.join(tmpdir(), 'backout-validate-'))
const files = ['action.yml', ...readdirSync(path.join(root, 'actions')).map(d => `actions/${d}/action.yml`)]
const workflows = existsSync(path.join(root, '.github/workflows'))
  ? readdirSync(path.join(root, '.github/workflows'))
      .filter(f => /\.ya?ml$/.test(f))
      .map(f => `.github/workflows/${f}`)
  : []
let failed = 0
for (const rel of files) {
  const text = readFileSync(path.join(root, rel), 'utf8')
  if (!/^\s+using: node24\s*$/m.test(text)) {
    console.error(`${rel}: runs.using must be node24`)
    failed++
  }
  const copy = path.join(tmp, rel.replace(/\//g, '_'))
  writeFileSync(copy, text.replace(/using: node24/, 'using: node20'))
  try {
    execFileSync(validator, [copy], { stdio: 'pipe' })
  } catch (e) {
    console.error(`${rel}: ${e.stdout}`)
    failed++
  }
}
for (const rel of workflows) {
  try {
    execFileSync(validator, [path.join(root, rel)], { stdio: 'pipe' })
  } catch (e) {
    console.error(`${rel}: ${e.stdout}`)
    failed++
  }
}
console.log(
  `validated ${files.length} actions and ${workflows.length} workflows: ${failed ? `${failed} failed` : 'all valid'}`
)
rmSync(tmp, { recursive: true, force: true })
process.exit(failed ? 1 : 0)
