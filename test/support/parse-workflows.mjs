// Parses workflow files with GitHub's own parser (@actions/workflow-parser) and prints, per file, the errors
// and every `uses:` (job-level reusable workflows and step actions). Run with tsx: the package imports JSON
// without import attributes, which plain Node 20 refuses.
import { readFileSync } from 'node:fs'
import { NoOperationTraceWriter, convertWorkflowTemplate, parseWorkflow } from '@actions/workflow-parser'

const out = {}
for (const file of process.argv.slice(2)) {
  const parsed = parseWorkflow(
    { name: file, content: readFileSync(file, 'utf8') },
    new NoOperationTraceWriter()
  )
  const template = await convertWorkflowTemplate(parsed.context, parsed.value)
  const errors = [...parsed.context.errors.getErrors(), ...(template.errors ?? [])].map(
    e => e.message ?? String(e)
  )
  const uses = []
  for (const job of template.jobs ?? []) {
    if (job.ref?.value) uses.push(job.ref.value)
    for (const step of job.steps ?? []) if (step.uses?.value) uses.push(step.uses.value)
  }
  out[file] = { errors, uses, jobs: (template.jobs ?? []).length }
}
process.stdout.write(JSON.stringify(out))
