import { mkdtempSync, rmSync, chmodSync } from 'node:fs'
import http from 'node:http'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { runCommand, type CommandResult } from '../../src/drivers/exec'

/** The built CLI, run as users run it. `npm test` builds dist/ first. */
export const CLI = path.resolve(__dirname, '../../dist/cli/index.js')

export function runCli(
  args: readonly string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string } = {}
): Promise<CommandResult> {
  return runCommand([process.execPath, CLI, ...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    input: options.input
  })
}

export interface TestSandbox {
  dir: string
  config: string
  nginxUrl: string
  down(): Promise<void>
}

/** A real sandbox (nginx, PostgreSQL or SQLite, blue and green) in a temp dir, started through the CLI. */
export async function startSandbox(extra: string[] = []): Promise<TestSandbox> {
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-sandbox-'))
  chmodSync(dir, 0o755)
  const res = await runCli(['--json', 'sandbox', 'up', '--dir', dir, ...extra])
  if (res.code !== 0) {
    // What came up before the failure (PostgreSQL, the apps) is stopped, not left running.
    await runCli(['sandbox', 'down', '--dir', dir])
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`sandbox up failed (${res.code}): ${res.stderr}`)
  }
  const state = JSON.parse(res.stdout) as { config: string; nginxPort: number }
  return {
    dir,
    config: state.config,
    nginxUrl: `http://127.0.0.1:${state.nginxPort}`,
    async down() {
      await runCli(['sandbox', 'down', '--dir', dir])
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** GET url on a fresh connection (no pooled keep-alive socket that a finished sandbox's nginx closed). */
function getOnce(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent: false }, res => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') })
        )
      })
      .on('error', reject)
  })
}

/** Sends n requests through nginx; returns which environment answered each (or the HTTP status). */
export async function whoServes(url: string, n: number): Promise<string[]> {
  const answers: string[] = []
  for (let i = 0; i < n; i++) {
    const res = await getOnce(`${url}/health`)
    const ok = res.status >= 200 && res.status < 300
    answers.push(
      ok
        ? ((JSON.parse(res.body) as { environment?: string }).environment ?? 'unknown')
        : `HTTP ${res.status}`
    )
  }
  return answers
}
