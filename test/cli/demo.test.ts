import { existsSync, rmSync } from 'node:fs'
import path from 'node:path'
import { runCommand } from '../../src/drivers/exec'
import { CLI, runCli } from '../support/cli'

const root = path.resolve(__dirname, '../..')
const gitStatus = async (): Promise<string> =>
  (await runCommand(['git', 'status', '--porcelain', '--untracked-files=no'], { cwd: root })).stdout

test('demo --level 3: WAL replay to a time, the timeline explained, its temp dir removed, no tracked file changed', async () => {
  const before = await gitStatus()
  const res = await runCli(['demo', '--level', '3'], { cwd: root })
  expect(res.code).toBe(0)
  expect(res.stdout).toContain('why Level 3:')
  expect(res.stdout).toMatch(/took\/deadline: each step's measured time \/ the time it is allowed/)
  expect(res.stdout).toMatch(/T = \d{4}-\d\d-\d\dT[\d:.]+Z/)
  expect(res.stdout).toContain('WAL replay to T: 5 of the 5 users written after the backup are back')
  expect(res.stdout).toMatch(/Transaction log replay .* WAL replayed to/)
  const dir = /config: (\S+)\/backout\.yml/.exec(res.stdout)?.[1]
  expect(dir).toBeDefined()
  expect(existsSync(dir!)).toBe(false)
  expect(await gitStatus()).toBe(before)
  // setup's node-modules check reads, never writes: the lock is what is installed
  const deps = await runCommand([process.execPath, 'scripts/deps-current.mjs'], { cwd: root })
  expect(deps.code).toBe(0)
  expect(await gitStatus()).toBe(before)
}, 180_000)

test('demo --keep prints commands that work as printed', async () => {
  // backout is not installed here (no dir on PATH has it): the printed commands must say how to run it
  const PATH = [path.dirname(process.execPath), ...(process.env.PATH ?? '').split(':')]
    .filter(d => d && !existsSync(path.join(d, 'backout')))
    .join(':')
  const res = await runCli(['demo', '--keep'], { cwd: root, env: { PATH } })
  const down = /stop it with: (.+) sandbox down --dir (\S+)/.exec(res.stdout)
  expect(down).not.toBeNull()
  expect(down![1]).toBe(`node ${CLI}`)
  try {
    const tryIt = /try: node (.+)$/m.exec(res.stdout)![1]!.split(' ')
    const list = await runCommand([process.execPath, ...tryIt])
    expect({ code: list.code, stderr: list.stderr }).toEqual({ code: 0, stderr: '' })
    expect(list.stdout).toMatch(/rollback-safety-\d{8}-\d{6}/)
  } finally {
    const stop = await runCommand([process.execPath, CLI, 'sandbox', 'down', '--dir', down![2]!])
    expect(stop.code).toBe(0)
    rmSync(down![2]!, { recursive: true, force: true })
  }
}, 180_000)
