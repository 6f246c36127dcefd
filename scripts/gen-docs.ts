// Generates what must not drift from the code: docs/config.schema.json and the key reference in
// docs/config.md from the zod schema, and each action's README inputs/outputs table from its action.yml.
// Run: npx tsx scripts/gen-docs.ts   (CI fails when the result differs from what is committed)
import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs'
import path from 'node:path'
import { z } from 'zod'
import { parse } from 'yaml'
import { configSchema } from '../src/core/config'

const root = path.resolve(__dirname, '..')
mkdirSync(path.join(root, 'docs'), { recursive: true })

const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Node &
  Record<string, unknown>
schema.$id = 'https://backout.invalid/config.schema.json'
schema.title = 'backout.yml'
writeFileSync(path.join(root, 'docs/config.schema.json'), JSON.stringify(schema, null, 2) + '\n')

interface Node {
  type?: string | string[]
  description?: string
  default?: unknown
  enum?: unknown[]
  const?: unknown
  pattern?: string
  properties?: Record<string, Node>
  required?: string[]
  items?: Node
  anyOf?: Node[]
  oneOf?: Node[]
  additionalProperties?: Node | boolean
}

const rows: string[] = []
function typeOf(n: Node): string {
  if (n.enum) return n.enum.map(v => `\`${String(v)}\``).join(' \\| ')
  if (n.const !== undefined) return `\`${JSON.stringify(n.const)}\``
  if (n.type === 'array') return `list of ${n.items ? typeOf(n.items) : 'values'}`
  if (n.anyOf || n.oneOf) return 'one of the forms below'
  return Array.isArray(n.type) ? n.type.join(' or ') : (n.type ?? 'any')
}
function walk(n: Node, prefix: string, required: boolean): void {
  if (prefix) {
    const def = n.default === undefined ? '' : `\`${JSON.stringify(n.default)}\``
    rows.push(
      `| \`${prefix}\` | ${typeOf(n)} | ${required ? 'yes' : ''} | ${def.length > 60 ? 'see schema' : def} | ${(n.description ?? '').replace(/\|/g, '\\|')} |`
    )
  }
  for (const [k, child] of Object.entries(n.properties ?? {}))
    walk(child, prefix ? `${prefix}.${k}` : k, (n.required ?? []).includes(k))
  for (const [i, alt] of (n.anyOf ?? n.oneOf ?? []).entries()) {
    const kind = alt.properties?.kind?.const
    walk(
      { ...alt, description: undefined },
      `${prefix}${typeof kind === 'string' ? `[kind=${kind}]` : `[${i}]`}`,
      false
    )
  }
  if (n.type === 'array' && n.items?.properties)
    walk({ ...n.items, description: undefined }, `${prefix}[]`, false)
}
walk(schema, '', true)

const md = path.join(root, 'docs/config.md')
const start = '<!-- keys:start -->'
const end = '<!-- keys:end -->'
const table = [
  start,
  '| Key | Type | Required | Default | Meaning |',
  '|---|---|---|---|---|',
  ...rows,
  end
].join('\n')
const text = existsSync(md) ? readFileSync(md, 'utf8') : `# backout.yml\n\n${start}\n${end}\n`
writeFileSync(md, text.replace(new RegExp(`${start}[\\s\\S]*${end}`), table))

// Each action's README: inputs and outputs from its action.yml.
interface ActionYml {
  name: string
  description: string
  inputs?: Record<string, { description: string; required?: boolean; default?: string }>
  outputs?: Record<string, { description: string }>
}
for (const dir of readdirSync(path.join(root, 'actions'))) {
  const yml = parse(readFileSync(path.join(root, 'actions', dir, 'action.yml'), 'utf8')) as ActionYml
  const inputs = Object.entries(yml.inputs ?? {}).map(
    ([k, v]) =>
      `| \`${k}\` | ${v.required ? 'yes' : 'no'} | ${v.default === undefined ? '' : `\`${v.default}\``} | ${v.description} |`
  )
  const outputs = Object.entries(yml.outputs ?? {}).map(([k, v]) => `| \`${k}\` | ${v.description} |`)
  writeFileSync(
    path.join(root, 'actions', dir, 'README.md'),
    [
      `# ${yml.name}`,
      '',
      yml.description,
      '',
      '```yaml',
      `- uses: backout/backout/actions/${dir}@v1`,
      '  with:',
      '    config: backout.yml',
      '```',
      '',
      '<!-- generated from action.yml by scripts/gen-docs.ts: do not edit -->',
      '## Inputs',
      '',
      '| Input | Required | Default | Description |',
      '|---|---|---|---|',
      ...inputs,
      '',
      '## Outputs',
      '',
      '| Output | Description |',
      '|---|---|',
      ...outputs,
      ''
    ].join('\n')
  )
}
console.log(
  `docs: ${rows.length} config keys, ${readdirSync(path.join(root, 'actions')).length} action READMEs`
)
