import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parse } from 'yaml'
import { runCommand, type CommandResult } from '../../src/drivers/exec'

export interface ActionRun extends CommandResult {
  outputs: Record<string, string>
  summary: string
  /** The full result JSON the action wrote to its result_file (in RUNNER_TEMP), parsed; undefined if none. */
  full?: { schema: string; decision: string; reasonCode: string; error?: string; record?: unknown }
  /** Every value the action asked the runner to mask (::add-mask::). */
  masked: string[]
}

/** Parses a GITHUB_OUTPUT file (name<<delimiter blocks). */
export function parseOutputFile(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<=]+)<<(.+)$/.exec(lines[i]!)
    if (!m) continue
    const [, key, delim] = m
    const value: string[] = []
    while (++i < lines.length && lines[i] !== delim) value.push(lines[i]!)
    out[key!] = value.join('\n')
  }
  return out
}

/**
 * Runs an action as the runner does: node dist/<name>/index.js with INPUT_* from its action.yml defaults
 * plus the given inputs, and GITHUB_OUTPUT / GITHUB_STEP_SUMMARY files.
 */
export async function runAction(
  name: string,
  inputs: Record<string, string>,
  env: NodeJS.ProcessEnv = {}
): Promise<ActionRun> {
  const root = path.resolve(__dirname, '../..')
  const yml = parse(
    readFileSync(path.join(root, name === 'backout' ? 'action.yml' : `actions/${name}/action.yml`), 'utf8')
  ) as {
    inputs?: Record<string, { default?: string }>
  }
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-action-'))
  const outputFile = path.join(dir, 'output')
  const summaryFile = path.join(dir, 'summary')
  writeFileSync(outputFile, '')
  writeFileSync(summaryFile, '')
  const inputEnv: Record<string, string> = {}
  for (const [key, def] of Object.entries(yml.inputs ?? {}))
    if (def.default !== undefined && !def.default.includes('${{'))
      inputEnv[`INPUT_${key.toUpperCase()}`] = def.default
  for (const [key, value] of Object.entries(inputs)) inputEnv[`INPUT_${key.toUpperCase()}`] = value
  try {
    const res = await runCommand([process.execPath, path.join(root, 'dist', name, 'index.js')], {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        GITHUB_OUTPUT: outputFile,
        GITHUB_STEP_SUMMARY: summaryFile,
        GITHUB_WORKSPACE: dir,
        RUNNER_TEMP: dir,
        ...inputEnv,
        ...env
      }
    })
    const outputs = parseOutputFile(readFileSync(outputFile, 'utf8'))
    const resultFile = outputs.result_file
    return {
      ...res,
      outputs,
      summary: readFileSync(summaryFile, 'utf8'),
      full:
        resultFile && existsSync(resultFile)
          ? (JSON.parse(readFileSync(resultFile, 'utf8')) as ActionRun['full'])
          : undefined,
      masked: [...res.stdout.matchAll(/^::add-mask::(.*)$/gm)].map(m => m[1]!)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}
