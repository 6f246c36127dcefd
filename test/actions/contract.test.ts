import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parse } from 'yaml'
import { ACTIONS, type ActionName } from '../../src/actions/contract'

const root = path.resolve(__dirname, '../..')
interface ActionYml {
  inputs?: Record<string, { required?: boolean; default?: string }>
  outputs?: Record<string, unknown>
  runs: { using: string; main: string }
}
const load = (name: ActionName): ActionYml =>
  parse(
    readFileSync(path.join(root, name === 'backout' ? 'action.yml' : `actions/${name}/action.yml`), 'utf8')
  ) as ActionYml

describe.each(Object.keys(ACTIONS) as ActionName[])('%s action.yml', name => {
  const yml = load(name)
  test('declares exactly the inputs and outputs the code uses', () => {
    expect(Object.keys(yml.inputs ?? {}).sort()).toEqual([...ACTIONS[name].inputs].sort())
    expect(Object.keys(yml.outputs ?? {}).sort()).toEqual([...ACTIONS[name].outputs].sort())
  })
  test('runs its own bundle on node24', () => {
    expect(yml.runs.using).toBe('node24')
    const main = path.resolve(root, name === 'backout' ? '.' : `actions/${name}`, yml.runs.main)
    expect(main).toBe(path.join(root, 'dist', name, 'index.js'))
    expect(readFileSync(path.join(root, 'src/actions', `${name}-action.ts`), 'utf8')).toContain(`'${name}'`)
  })
  test('every optional input has its default in action.yml; boolean defaults are strict', () => {
    for (const [key, input] of Object.entries(yml.inputs ?? {})) {
      if (!input.required) expect(input.default).toBeDefined()
      if (['dry-run', 'safety', 'thorough'].includes(key)) expect(['true', 'false']).toContain(input.default)
    }
  })
})
