import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { sealManifest, type Manifest } from '../../src/core/manifest'
import { configEntryPath } from '../../src/engine/snapshot'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/**
 * The seal covers what is restored (#18.5): a config file planted in a sealed backup after a `configFiles` change is
 * not installed by Level 3; a sealed backup copied over another id, sealed by an older backout (id, service and host
 * not in the seal) or made for another service is refused — and `backout seal ID` accepts it.
 */
let sb: TestSandbox
let releaseId = ''
beforeAll(async () => {
  sb = await startSandbox(['--db', 'sqlite'])
  releaseId = release()
}, 120_000)
afterAll(async () => {
  await sb?.down()
})

const backups = (): string => path.join(sb.dir, 'backups')
const key = (): string => readFileSync(path.join(sb.dir, 'state/seal.key'), 'utf8').trim()
const manifestOf = (id: string): Manifest =>
  JSON.parse(readFileSync(path.join(backups(), id, 'manifest.json'), 'utf8')) as Manifest
function writeManifest(id: string, m: Manifest, sealKey?: string): void {
  const rest = { ...m }
  delete rest.seal
  const out = sealKey ? { ...rest, seal: sealManifest(rest, sealKey) } : rest
  writeFileSync(path.join(backups(), id, 'manifest.json'), JSON.stringify(out, null, 2) + '\n')
}
/** The release snapshot the sandbox took. */
function release(): string {
  if (releaseId) return releaseId
  const id = readdirSync(backups())
    .filter(n => /^\d{8}-\d{6}$/.test(n))
    .sort()[0]
  if (!id) throw new Error('no release snapshot')
  return id
}
const cli = (...args: string[]): ReturnType<typeof runCli> => runCli(['--config', sb.config, ...args])

test('a backup copied over another id: verify, list and Level 3 refuse it; `backout seal` accepts it under its new id', async () => {
  const copy = '20000101-000001'
  cpSync(path.join(backups(), release()), path.join(backups(), copy), { recursive: true })
  const verify = await cli('verify', '--quick', copy)
  expect(verify.code).toBe(1)
  expect(verify.stdout).toMatch(
    new RegExp(`says it is backup ${release()}, but it is in .*${copy} — a backup copied under another id`)
  )
  expect(verify.stdout).toContain(`backout seal ${copy}`)
  const list = await cli('--json', 'list')
  expect((JSON.parse(list.stdout) as { id: string }[]).map(b => b.id)).not.toContain(copy)
  expect(list.stderr).toContain(`${copy} is not listed`)
  const l3 = await cli('rollback', '--level', '3', '--target', copy, '--auto-confirm', '--reason', 'copy')
  expect(l3.code).toBe(2)
  expect(l3.stdout + l3.stderr).toContain('a backup copied under another id')
  // Accepted by the operator: resealed as what it now is.
  expect((await cli('seal', copy)).code).toBe(0)
  expect(manifestOf(copy).id).toBe(copy)
  expect((await cli('verify', '--quick', copy)).code).toBe(0)
  rmSync(path.join(backups(), copy), { recursive: true })
}, 120_000)

test('a seal from an older backout (no id/service/host in it) and a backup of another service are refused', async () => {
  const legacy = '20000101-000002'
  cpSync(path.join(backups(), release()), path.join(backups(), legacy), { recursive: true })
  const m = manifestOf(legacy)
  expect(m.host).toEqual(expect.any(String))
  delete m.host
  writeManifest(legacy, { ...m, id: legacy }, key())
  const verify = await cli('verify', '--quick', legacy)
  expect(verify.code).toBe(1)
  expect(verify.stdout).toMatch(
    /sealed by an older backout whose seal does not cover the backup's id, service and host/
  )
  expect(verify.stdout).toContain(`\`backout seal ${legacy}\``)
  expect((await cli('seal', legacy)).code).toBe(0)
  expect(manifestOf(legacy).host).toEqual(expect.any(String))
  expect((await cli('verify', '--quick', legacy)).code).toBe(0)

  writeManifest(legacy, { ...manifestOf(legacy), service: 'another-service' }, key())
  const other = await cli('verify', '--quick', legacy)
  expect(other.code).toBe(1)
  expect(other.stdout).toContain('a backup of service another-service, not spacetime')
  rmSync(path.join(backups(), legacy), { recursive: true })
}, 120_000)

test('Level 3 installs only the config files its sealed manifest lists, never one planted in the backup', async () => {
  // configFiles gains a file the release snapshot never captured; a copy of it is planted in the backup folder.
  const extra = path.join(sb.dir, 'config/extra.conf')
  writeFileSync(extra, 'mine = true\n')
  const config = readFileSync(sb.config, 'utf8')
  writeFileSync(sb.config, config.replace(/^configFiles:\n/m, 'configFiles:\n  - config/extra.conf\n'))
  const id = release()
  const planted = path.join(backups(), id, configEntryPath(extra))
  mkdirSync(path.dirname(planted), { recursive: true })
  writeFileSync(planted, 'planted = true\n')
  // The seal and every listed checksum still hold: the backup is good, the planted file is simply not part of it.
  expect((await cli('verify', '--quick', id)).code).toBe(0)
  const l3 = await cli('rollback', '--level', '3', '--target', id, '--auto-confirm', '--reason', 'plant')
  expect({ code: l3.code, out: (l3.stdout + l3.stderr).slice(-1500) }).toMatchObject({ code: 0 })
  expect(readFileSync(extra, 'utf8')).toBe('mine = true\n')
  // The files the manifest does list were restored as before.
  expect(existsSync(path.join(sb.dir, 'config/app.json'))).toBe(true)
}, 180_000)
