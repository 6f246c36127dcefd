import { spawn } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import path from 'node:path'
import { isAlive } from '../../src/drivers/process'
import { CLI, runCli, startSandbox, type TestSandbox } from '../support/cli'

/**
 * A snapshot killed while pg_basebackup runs (#18.7): its `<id>.partial` directory stays behind and pg_basebackup,
 * orphaned, keeps writing into it (here it is also stopped with SIGSTOP, as a slow one would still be running). The
 * next snapshot stops it and removes the directory, then succeeds.
 */
let sb: TestSandbox
beforeAll(async () => {
  sb = await startSandbox()
}, 180_000)
afterAll(async () => {
  await sb?.down()
})

/** The PIDs of pg_basebackup processes writing into a `.partial` directory under dir. */
function basebackupsInto(dir: string): number[] {
  const out: number[] = []
  for (const name of readdirSync('/proc').filter(n => /^\d+$/.test(n))) {
    try {
      const args = readFileSync(`/proc/${name}/cmdline`, 'utf8').split('\0')
      if (
        path.basename(args[0] ?? '') === 'pg_basebackup' &&
        args.some(a => a.startsWith(dir) && a.includes('.partial/'))
      )
        out.push(Number(name))
    } catch {
      /* gone */
    }
  }
  return out
}

test('the next snapshot stops the orphan pg_basebackup and removes the .partial it left', async () => {
  const backups = path.join(sb.dir, 'backups')
  const child = spawn(process.execPath, [CLI, '--config', sb.config, 'snapshot'], { stdio: 'ignore' })
  let orphans: number[] = []
  const deadline = Date.now() + 90_000
  while (orphans.length === 0 && Date.now() < deadline && child.exitCode === null) {
    orphans = basebackupsInto(backups)
    if (!orphans.length) await new Promise(r => setTimeout(r, 5))
  }
  expect(orphans.length).toBeGreaterThan(0)
  for (const pid of orphans) process.kill(pid, 'SIGSTOP')
  child.kill('SIGKILL')
  await new Promise(r => child.once('exit', r))
  const partials = readdirSync(backups).filter(n => n.endsWith('.partial'))
  expect(partials).toHaveLength(1)
  expect(orphans.every(isAlive)).toBe(true)

  const next = await runCli(['--config', sb.config, '--json', 'snapshot'])
  expect({ code: next.code, err: next.stderr.slice(-600) }).toMatchObject({ code: 0 })
  expect(next.stderr).toContain(`still writing into ${path.join(backups, partials[0]!)}`)
  expect(next.stderr).toContain('left by a snapshot that did not finish')
  expect(orphans.filter(isAlive)).toEqual([])
  expect(readdirSync(backups).filter(n => n.endsWith('.partial'))).toEqual([])
  const id = (JSON.parse(next.stdout) as { id: string }).id
  expect((await runCli(['--config', sb.config, 'verify', '--quick', id])).code).toBe(0)
}, 240_000)
