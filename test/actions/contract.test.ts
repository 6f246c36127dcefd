import { readFileSync } from 'node:fs'
import path from 'node:path'
import { parse } from 'yaml'
import { ACTIONS, type ActionName } from '../../src/actions/contract'
import { parseEnvInput } from '../../src/actions/action-runner'
import { UserError } from '../../src/core/errors'

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

describe('the env input: NAME=value lines for the ${VAR}s of backout.yml', () => {
  test('parsed line by line; blank lines and comments skipped; = in values kept', () => {
    expect(parseEnvInput('# secrets\nDB_PASSWORD=p=w d\n\n  BACKOUT_SEAL_KEY=k\r\nEMPTY=\n')).toEqual({
      DB_PASSWORD: 'p=w d',
      BACKOUT_SEAL_KEY: 'k',
      EMPTY: ''
    })
    expect(parseEnvInput('')).toEqual({})
  })
  test('anything else is refused with the line number, never the content', () => {
    for (const [text, line] of [
      ['A=1\nnot a pair', 2],
      ['1X=secret-value', 1],
      ['A=1\n\nexport B=2', 3],
      ['NODE_OPTIONS=--require /tmp/x.js', 1],
      ['PATH=/tmp', 1],
      ['GITHUB_TOKEN=x', 1]
    ] as const) {
      let message = ''
      try {
        parseEnvInput(text)
      } catch (e) {
        expect(e).toBeInstanceOf(UserError)
        message = (e as Error).message
      }
      expect(message).toMatch(new RegExp(`^input env, line ${line}: `))
      expect(message).not.toContain('secret-value')
      expect(message).not.toContain('/tmp')
    }
  })
})
