import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { pgQuery } from '../../src/drivers/database'
import { runCommand } from '../../src/drivers/exec'
import { runAction } from '../support/action'
import { runCli, startSandbox, type TestSandbox } from '../support/cli'

/**
 * Secrets never leak: the database password (in database.url through ${DB_PASSWORD}), the key that seals manifests
 * (backups.sealKey through ${BACKOUT_SEAL_KEY}) and a GitHub token in the environment must not appear in any command's stdout or stderr, an action's job summary and outputs, the history
 * log, the run records, the state directory, or any file of any backup (compressed archives are read decompressed).
 * The sandbox's PostgreSQL trusts local connections, so the password is carried but not needed.
 */
const PASSWORD = 'S3cr3t-pw-9f2kQ7xZ'
const TOKEN = 'ghp_' + 'T0k3nL00k1ngV4lu3' + 'abcdefghij0123456789'
const SEAL_KEY = 'seal-' + 'K3yF0rM4n1f3sts' + '-0123456789abcdef'
const SECRETS = [PASSWORD, TOKEN, SEAL_KEY]

let sb: TestSandbox | undefined
afterAll(async () => {
  await sb?.down()
})

interface Leak {
  where: string
  /** The text around the first occurrence, the secret masked. */
  context: string
}

function leaksIn(where: string, text: string | Buffer): Leak[] {
  const s = typeof text === 'string' ? text : text.toString('latin1')
  return SECRETS.filter(secret => s.includes(secret)).map(secret => {
    const at = s.indexOf(secret)
    const around = s.slice(Math.max(0, at - 120), at + secret.length + 60).replace(secret, '<SECRET>')
    return { where, context: around }
  })
}

/** Every file under dir, compressed archives decompressed, searched for the secrets. */
async function leaksInFiles(dir: string, skip: (rel: string) => boolean = () => false): Promise<Leak[]> {
  const out: Leak[] = []
  const walk = async (d: string): Promise<void> => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name)
      const rel = path.relative(dir, full)
      if (skip(rel)) continue
      if (e.isDirectory()) await walk(full)
      else if (e.isFile()) {
        out.push(...leaksIn(rel, readFileSync(full)))
        if (full.endsWith('.zst')) {
          const res = await runCommand(['zstd', '-dc', full])
          expect(res.code).toBe(0)
          out.push(...leaksIn(`${rel} (decompressed)`, res.stdout))
        }
      }
    }
  }
  await walk(dir)
  return out
}

test('the database password and a GitHub token appear in no output, summary, log, record or backup', async () => {
  sb = await startSandbox()
  const config = readFileSync(sb.config, 'utf8')
  const url = /^\s*url:\s*(postgresql:\/\/\S+)\s*$/m.exec(config)?.[1]
  if (!url) throw new Error(`no database.url in ${sb.config}`)
  // The password is set without the statement reaching the server log.
  await pgQuery(url, `SET log_statement = 'none'; ALTER USER postgres PASSWORD '${PASSWORD}'`)
  const withPassword = url.replace('postgresql://postgres@', 'postgresql://postgres:${DB_PASSWORD}@')
  expect(withPassword).not.toBe(url)
  if (!/^ {2}dir: backups$/m.test(config)) throw new Error(`backups.dir not found in ${sb.config}`)
  const withSecrets = config
    .replace(url, withPassword)
    .replace(/^ {2}dir: backups$/m, '  dir: backups\n  sealKey: ${BACKOUT_SEAL_KEY}')
  writeFileSync(sb.config, withSecrets)
  // The same service with the database unreachable: the error paths print the URL's host, never its password.
  const badConfig = path.join(sb.dir, 'unreachable.yml')
  writeFileSync(badConfig, withSecrets.replace(withPassword, withPassword.replace(/:(\d+)\/app$/, ':1/app')))
  const env = { DB_PASSWORD: PASSWORD, GITHUB_TOKEN: TOKEN, GH_TOKEN: TOKEN, BACKOUT_SEAL_KEY: SEAL_KEY }

  const leaks: Leak[] = []
  const ran: string[] = []
  const cli = async (label: string, args: string[], configFile = sb!.config): Promise<string> => {
    const res = await runCli(['--config', configFile, ...args], { env })
    ran.push(`${label}: exit ${res.code}`)
    leaks.push(...leaksIn(`${label} stdout`, res.stdout), ...leaksIn(`${label} stderr`, res.stderr))
    return res.stdout
  }
  await cli('assess', ['--json', 'assess'])
  await cli('snapshot', ['--json', 'snapshot'])
  const rollback = JSON.parse(
    await cli('rollback --level 1', ['--json', 'rollback', '--level', '1', '--auto-confirm'])
  ) as {
    status: string
    safetyBackupId?: string
  }
  expect(rollback.status).toBe('success')
  expect(rollback.safetyBackupId).toBeDefined()
  await cli('history', ['history'])
  await cli('history --report', ['history', '--report', '--format', 'markdown'])
  await cli('incident', ['incident'])
  await cli('validate', ['--json', 'validate'])
  await cli('verify', ['verify', rollback.safetyBackupId!])
  await cli('assess (database unreachable)', ['assess'], badConfig)
  await cli('validate (database unreachable)', ['validate'], badConfig)
  await cli('snapshot (database unreachable)', ['snapshot'], badConfig)

  // `::add-mask::<value>` is the workflow command that registers a secret with the runner, which consumes the line
  // (it never reaches the log) and masks the value everywhere after: the one place the value must appear.
  const logged = (stdout: string): string =>
    stdout
      .split('\n')
      .filter(l => !l.startsWith('::add-mask::'))
      .join('\n')
  // The action, as the runner runs it (after the CLI rollback: whatever it decides, nothing may leak).
  const action = await runAction('rollback-level-1', { config: sb.config, reason: 'secrets test' }, env)
  ran.push(`action rollback-level-1: exit ${action.code}, decision ${action.outputs.decision ?? '?'}`)
  expect(action.summary.length).toBeGreaterThan(0)
  expect(action.stdout).toContain(`::add-mask::${PASSWORD}`)
  expect(action.stdout).toContain(`::add-mask::${SEAL_KEY}`)
  leaks.push(
    ...leaksIn('action stdout', logged(action.stdout)),
    ...leaksIn('action stderr', action.stderr),
    ...leaksIn('action job summary', action.summary),
    ...leaksIn('action outputs', JSON.stringify(action.outputs))
  )
  // The same secrets handed over as the `env` input (from a secret) instead of the runner's environment.
  const viaInput = await runAction(
    'rollback-level-1',
    {
      config: sb.config,
      'dry-run': 'true',
      env: `# from secrets.BACKOUT_ENV\nDB_PASSWORD=${PASSWORD}\nBACKOUT_SEAL_KEY=${SEAL_KEY}\n`
    },
    { GITHUB_TOKEN: TOKEN }
  )
  ran.push(
    `action rollback-level-1 (secrets from the env input, dry run): exit ${viaInput.code}, ${viaInput.outputs.reason_code ?? '?'}`
  )
  expect(viaInput.outputs.reason_code).not.toBe('bad_config')
  expect(viaInput.stdout).toContain(`::add-mask::${PASSWORD}`)
  expect(viaInput.stdout).toContain(`::add-mask::${SEAL_KEY}`)
  leaks.push(
    ...leaksIn('action (env input) stdout', logged(viaInput.stdout)),
    ...leaksIn('action (env input) stderr', viaInput.stderr),
    ...leaksIn('action (env input) job summary', viaInput.summary),
    ...leaksIn('action (env input) outputs', JSON.stringify(viaInput.outputs))
  )
  const dryRun = await runAction('rollback-level-1', { config: badConfig, 'dry-run': 'true' }, env)
  ran.push(`action rollback-level-1 (database unreachable, dry run): exit ${dryRun.code}`)
  leaks.push(
    ...leaksIn('action (unreachable) stdout', logged(dryRun.stdout)),
    ...leaksIn('action (unreachable) stderr', dryRun.stderr),
    ...leaksIn('action (unreachable) job summary', dryRun.summary),
    ...leaksIn('action (unreachable) outputs', JSON.stringify(dryRun.outputs))
  )

  // Files: the history log, the run records and everything else in state/, every backup, the app logs.
  expect(existsSync(path.join(sb.dir, 'rollback_history.log'))).toBe(true)
  expect(readdirSync(path.join(sb.dir, 'state/runs')).length).toBeGreaterThan(0)
  leaks.push(...leaksIn('rollback_history.log', readFileSync(path.join(sb.dir, 'rollback_history.log'))))
  leaks.push(
    ...(await leaksInFiles(path.join(sb.dir, 'state'))).map(l => ({ ...l, where: `state/${l.where}` }))
  )
  leaks.push(
    ...(await leaksInFiles(path.join(sb.dir, 'backups'))).map(l => ({ ...l, where: `backups/${l.where}` }))
  )
  leaks.push(
    ...(await leaksInFiles(path.join(sb.dir, 'logs'))).map(l => ({ ...l, where: `logs/${l.where}` }))
  )
  // backout.yml keeps the placeholder, not the secret.
  expect(readFileSync(sb.config, 'utf8')).toContain('${DB_PASSWORD}')
  expect(readFileSync(sb.config, 'utf8')).toContain('${BACKOUT_SEAL_KEY}')
  const files = readdirSync(path.join(sb.dir, 'backups')).length
  process.stdout.write(
    `secrets checked: ${SECRETS.length} secrets, ${ran.length} commands (${ran.join('; ')}), ${files} backups: ${leaks.length} leaks\n`
  )
  expect(leaks).toEqual([])
  expect(statSync(path.join(sb.dir, 'backups')).isDirectory()).toBe(true)
})
