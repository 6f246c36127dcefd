import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { stringify } from 'yaml'
import { loadConfig } from '../../src/drivers/config-file'
import { configWarnings } from '../../src/drivers/config-warnings'
import { runCommand } from '../../src/drivers/exec'
import { minimalConfig } from '../support/minimal-config'

const dir = mkdtempSync(path.join(tmpdir(), 'backout-defaults-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

test('state.dir and history.log default outside any checkout: /var/lib/backout/<service>', () => {
  const file = path.join(dir, 'backout.yml')
  writeFileSync(file, stringify(minimalConfig))
  const cfg = loadConfig(file)
  expect(cfg.state.dir).toBe('/var/lib/backout/spacetime')
  expect(cfg.history.log).toBe('/var/lib/backout/spacetime/rollback_history.log')
  // an explicit state.dir carries the history log with it; relative paths are from the config's dir
  writeFileSync(file, stringify({ ...minimalConfig, state: { dir: 'st' } }))
  expect(loadConfig(file).history.log).toBe(path.join(dir, 'st/rollback_history.log'))
  expect(configWarnings(loadConfig(file))).toEqual([])
})

test('state, history or backups inside a git work tree is a warning naming the key and what to do', async () => {
  const repo = path.join(dir, 'repo')
  mkdirSync(repo)
  expect((await runCommand(['git', 'init', '-q'], { cwd: repo })).code).toBe(0)
  const file = path.join(repo, 'deploy', 'backout.yml')
  mkdirSync(path.dirname(file))
  writeFileSync(
    file,
    stringify({ ...minimalConfig, state: { dir: 'state' }, backups: { dir: '/var/backups/x' } })
  )
  const warnings = configWarnings(loadConfig(file))
  expect(warnings).toHaveLength(2)
  expect(warnings[0]).toBe(
    `state.dir ${path.join(repo, 'deploy/state')} is inside the git work tree ${repo}: a checkout (actions/checkout cleans it) ` +
      'or a fresh clone loses it — set state.dir to an absolute path outside it, e.g. /var/lib/backout/spacetime'
  )
  expect(warnings[1]).toMatch(/^history\.log .* is inside the git work tree/)
})
