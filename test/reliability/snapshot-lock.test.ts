import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/**
 * Snapshots take the service lock (#18.6) and what is planted in the backup folder is ignored (#18.7): five
 * snapshots at once get distinct ids or exit 3, none deletes another's work; a snapshot during a Level 3 exits 3;
 * an unsealed or malformed manifest dated 2099 is listed as such and never becomes a default target; a manifest
 * beyond the size limit is refused unread.
 */
let sb: TestSandbox
beforeAll(async () => {
  sb = await startSandbox(['--db', 'sqlite'])
}, 120_000)
afterAll(async () => {
  await sb?.down()
})

const backups = (): string => path.join(sb.dir, 'backups')
const cli = (...args: string[]): ReturnType<typeof runCli> => runCli(['--config', sb.config, ...args])
const ids = (): string[] => readdirSync(backups()).sort()

test('five snapshots at once: each either gets its own verified backup or exits 3; nothing partial is left', async () => {
  const before = ids()
  const runs = await Promise.all([1, 2, 3, 4, 5].map(() => cli('--json', 'snapshot')))
  const codes = runs.map(r => r.code)
  expect(codes.every(c => c === 0 || c === 3)).toBe(true)
  const won = runs.filter(r => r.code === 0).map(r => (JSON.parse(r.stdout) as { id: string }).id)
  expect(won.length).toBeGreaterThanOrEqual(1)
  expect(new Set(won).size).toBe(won.length)
  for (const r of runs.filter(x => x.code === 3))
    expect(r.stderr).toMatch(/another operation holds the lock for spacetime: snapshot by PID \d+/)
  const made = ids().filter(n => !before.includes(n))
  expect(made.sort()).toEqual([...won].sort()) // every new directory is a finished backup, no .partial
  for (const id of won) expect((await cli('verify', '--quick', id)).code).toBe(0)
}, 180_000)

test('a snapshot while a Level 3 runs exits 3 and writes nothing', async () => {
  const lockFile = path.join(sb.dir, 'state/spacetime.lock')
  const l3 = cli('rollback', '--level', '3', '--auto-confirm', '--reason', 'lock test')
  const deadline = Date.now() + 60_000
  while (!existsSync(lockFile) && Date.now() < deadline) await new Promise(r => setTimeout(r, 20))
  expect(readFileSync(lockFile, 'utf8')).toContain('rollback level 3')
  const before = ids()
  const snap = await cli('snapshot')
  expect(snap.code).toBe(3)
  expect(snap.stderr).toContain('holds the lock for spacetime: rollback level 3')
  const after = ids().filter(n => !before.includes(n) && !n.startsWith('rollback-safety-'))
  expect(after).toEqual([])
  expect((await l3).code).toBe(0)
}, 180_000)

test('an unsealed manifest dated 2099 and a malformed one: listed as such, never a default target', async () => {
  const newest = (JSON.parse((await cli('--json', 'list')).stdout) as { id: string; kind: string }[]).find(
    b => b.kind === 'snapshot'
  )!.id
  const plant = (id: string, manifest: unknown): void => {
    mkdirSync(path.join(backups(), id), { recursive: true })
    writeFileSync(path.join(backups(), id, 'manifest.json'), JSON.stringify(manifest))
  }
  plant('20991231-235959', {
    schema: 'backout.manifest/v1',
    id: '20991231-235959',
    service: 'spacetime',
    host: 'elsewhere',
    kind: 'snapshot',
    createdAt: '2099-12-31T23:59:59.000Z',
    versions: { live: 'v0.0.1', blue: 'v0.0.1', green: 'v0.0.1' },
    files: []
  })
  plant('20991231-235958', {
    schema: 'backout.manifest/v1',
    createdAt: '2099-12-31T23:59:58.000Z',
    kind: 'snapshot'
  })

  const list = await cli('--json', 'list')
  expect({ code: list.code, err: list.stderr }).toMatchObject({ code: 0 })
  const listed = (JSON.parse(list.stdout) as { id: string }[]).map(b => b.id)
  expect(listed).not.toContain('20991231-235959')
  expect(listed).not.toContain('20991231-235958')
  expect(list.stderr).toMatch(/20991231-235959 is not listed: .*manifest\.json: not sealed/)
  expect(list.stderr).toMatch(/20991231-235958 is not listed: .*manifest\.json has no backup id/)

  for (const level of ['2', '3']) {
    const plan = await cli('rollback', '--level', level, '--dry-run', '--reason', 'planted')
    expect({ level, code: plan.code, out: plan.stdout + plan.stderr }).toMatchObject({ code: 0 })
    expect(plan.stdout).not.toContain('20991231-')
    if (level === '3') expect(plan.stdout).toContain(newest)
  }
  // Retention never counts them: a snapshot still works, and they are left where they are.
  expect((await cli('snapshot')).code).toBe(0)
  expect(existsSync(path.join(backups(), '20991231-235959/manifest.json'))).toBe(true)
}, 180_000)

test('a manifest beyond 16 MiB is not read: named in list, refused by verify', async () => {
  const id = '20000101-000009'
  mkdirSync(path.join(backups(), id), { recursive: true })
  writeFileSync(
    path.join(backups(), id, 'manifest.json'),
    `{"schema":"backout.manifest/v1"${' '.repeat(17 << 20)}}`
  )
  const list = await cli('list')
  expect(list.code).toBe(0)
  expect(list.stderr).toMatch(
    /20000101-000009 is not listed: its manifest\.json is 17\.0 MiB, more than the 16 MiB/
  )
  const verify = await cli('verify', '--quick', id)
  expect(verify.code).toBe(2)
  expect(verify.stderr).toMatch(/backup 20000101-000009 is damaged: .*more than the 16 MiB a manifest may be/)
}, 60_000)
