import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { UserError } from '../../src/core/errors'
import { expandEnv, loadConfig } from '../../src/drivers/config-file'

test('${VAR} in database.url comes from the environment; a missing one is a clear error', () => {
  expect(expandEnv('postgresql://app:${DB_PASS}@h/db', 'database.url', { DB_PASS: 'p@ss w' })).toBe(
    'postgresql://app:p%40ss%20w@h/db'
  )
  expect(() => expandEnv('postgresql://app:${NOPE}@h/db', 'database.url', {})).toThrow(
    'database.url uses ${NOPE}, but NOPE is not set — export it'
  )
})

test('a missing file and broken YAML are UserErrors that say what to do', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-cfg-'))
  expect(() => loadConfig(path.join(dir, 'nope.yml'))).toThrow(
    /does not exist — create it .* pass --config FILE/
  )
  writeFileSync(path.join(dir, 'bad.yml'), 'service: [unclosed\n')
  expect(() => loadConfig(path.join(dir, 'bad.yml'))).toThrow(UserError)
  expect(() => loadConfig(path.join(dir, 'bad.yml'))).toThrow(/not valid YAML at line \d/)
})
