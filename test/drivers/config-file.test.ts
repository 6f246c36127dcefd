import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { UserError } from '../../src/core/errors'
import { stringify } from 'yaml'
import { expandEnv, loadConfig } from '../../src/drivers/config-file'
import { minimalConfig } from '../support/minimal-config'

const dirs: string[] = []
function tempDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-cfg-'))
  dirs.push(dir)
  return dir
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
})

test('${VAR} in database.url comes from the environment; a missing one is a clear error', () => {
  expect(expandEnv('postgresql://app:${DB_PASS}@h/db', 'database.url', { DB_PASS: 'p@ss w' })).toBe(
    'postgresql://app:p%40ss%20w@h/db'
  )
  expect(() => expandEnv('postgresql://app:${NOPE}@h/db', 'database.url', {})).toThrow(
    'database.url uses ${NOPE}, but NOPE is not set — export it'
  )
})

test('a missing file and broken YAML are UserErrors that say what to do', () => {
  const dir = tempDir()
  expect(() => loadConfig(path.join(dir, 'nope.yml'))).toThrow(
    /does not exist — create it .* pass --config FILE/
  )
  writeFileSync(path.join(dir, 'bad.yml'), 'service: [unclosed\n')
  expect(() => loadConfig(path.join(dir, 'bad.yml'))).toThrow(UserError)
  expect(() => loadConfig(path.join(dir, 'bad.yml'))).toThrow(/not valid YAML at line \d/)
})

test('backups.sealKey: ${VAR} expanded as is (not URL-encoded); shorter than 32 characters is a clear error', () => {
  const dir = tempDir()
  const file = path.join(dir, 'backout.yml')
  const write = (sealKey: string): void =>
    writeFileSync(file, stringify({ ...minimalConfig, backups: { dir: 'backups', sealKey } }))
  const key = 'k/+= '.repeat(8)
  process.env.BACKOUT_TEST_SEAL = key
  try {
    write('${BACKOUT_TEST_SEAL}')
    expect(loadConfig(file).backups.sealKey).toBe(key)
    write('short-key')
    expect(() => loadConfig(file)).toThrow(UserError)
    expect(() => loadConfig(file)).toThrow(
      /backups\.sealKey is 9 characters long, expected at least 32 — generate one with `openssl rand -hex 32`/
    )
  } finally {
    delete process.env.BACKOUT_TEST_SEAL
  }
})
