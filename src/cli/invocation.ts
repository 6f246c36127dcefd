import { existsSync, realpathSync } from 'node:fs'
import path from 'node:path'

function which(name: string, env: NodeJS.ProcessEnv): string | undefined {
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const file = path.join(dir, name)
    if (existsSync(file)) return file
  }
  return undefined
}

const real = (p: string): string => {
  try {
    return realpathSync(p)
  } catch {
    return path.resolve(p)
  }
}

/**
 * How to run this CLI again, as the user can type it: `backout` when that name on PATH is this very
 * script (npm install -g), else `node /abs/path/dist/cli/index.js` — so that a command the CLI prints
 * works as printed, installed or not.
 */
export function cliInvocation(
  script: string | undefined = process.argv[1],
  env: NodeJS.ProcessEnv = process.env
): string {
  if (!script) return 'backout'
  const onPath = which('backout', env)
  if (onPath && real(onPath) === real(script)) return 'backout'
  const node = which('node', env)
  const nodeCmd = node && real(node) === real(process.execPath) ? 'node' : process.execPath
  return `${nodeCmd} ${path.resolve(script)}`
}
