import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { MemoryLogger } from '../../src/core/logger'
import { loadConfig } from '../../src/drivers/config-file'
import { pgQuery } from '../../src/drivers/database'
import { findPgBinDir } from '../../src/drivers/postgres-cluster'
import { rollback } from '../../src/engine/rollback'
import { createService, secretsOf } from '../../src/engine/service'
import { takeSnapshot } from '../../src/engine/snapshot'
import { startSandbox, type TestSandbox } from '../support/cli'

/**
 * Issue #18.3: a cluster set up like Debian's (scram-sha-256 on 127.0.0.1, for replication too) with database.url
 * carrying a password that needs URL-encoding. A snapshot (pg_dump, pg_basebackup) and a Level 3 physical restore
 * (pg_ctl, the readiness wait after the recovery) must work — the password reaches every tool and connection — and no
 * process ever has the password, decoded or URL-encoded, in its argv: every PostgreSQL tool runs through a wrapper
 * (database.binDir) that records its argv, and /proc/PID/cmdline of every process is sampled during the run.
 */
const PASSWORD = 'pw@Sc:r/m S3cr3t%9q'
const ENCODED = encodeURIComponent(PASSWORD)

let sb: TestSandbox | undefined
afterAll(async () => {
  await sb?.down()
})

/** Wrappers for every PostgreSQL binary: each appends its argv (NUL-separated, one record per line) to argvLog. */
function wrapBinaries(dir: string, argvLog: string): void {
  const real = findPgBinDir()!
  writeFileSync(argvLog, '')
  chmodSync(argvLog, 0o666) // pg_basebackup and pg_ctl run as the postgres user
  for (const name of readdirSync(real)) {
    const file = path.join(dir, name)
    writeFileSync(
      file,
      `#!/bin/sh\n{ printf '%s\\0' "$0" "$@"; printf '\\n'; } >> '${argvLog}'\nexec '${path.join(real, name)}' "$@"\n`
    )
    chmodSync(file, 0o755)
  }
}

/** Samples every process's argv every few ms; returns a stop function giving the lines that held the password. */
function sampleCmdlines(): { stop(): string[]; samples(): number } {
  const seen: string[] = []
  let n = 0
  const timer = setInterval(() => {
    n++
    for (const pid of readdirSync('/proc').filter(p => /^\d+$/.test(p))) {
      let cmd: string
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ')
      } catch {
        continue
      }
      if (cmd.includes(PASSWORD) || cmd.includes(ENCODED)) seen.push(`${pid}: ${cmd}`)
    }
  }, 5)
  return {
    stop() {
      clearInterval(timer)
      return seen
    },
    samples: () => n
  }
}

test('scram-sha-256 on TCP: snapshot and Level 3 physical restore work, and no argv ever holds the password', async () => {
  sb = await startSandbox()
  const configText = readFileSync(sb.config, 'utf8')
  const url = /^\s*url:\s*(postgresql:\/\/\S+)\s*$/m.exec(configText)?.[1]
  if (!url) throw new Error(`no database.url in ${sb.config}`)
  await pgQuery(
    url,
    `SET log_statement = 'none'; ALTER USER postgres PASSWORD '${PASSWORD.replace(/'/g, "''")}'`
  )
  const dataDir = path.join(sb.dir, 'pg/data')
  writeFileSync(
    path.join(dataDir, 'pg_hba.conf'),
    'local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n'
  )
  await pgQuery(url, 'SELECT pg_reload_conf()')
  // Password authentication is really required now.
  await expect(pgQuery(url, 'SELECT 1')).rejects.toThrow(/password/)
  const withPassword = url.replace('postgresql://postgres@', `postgresql://postgres:${ENCODED}@`)
  const bin = path.join(sb.dir, 'pgbin')
  const argvLog = path.join(sb.dir, 'argv.log')
  mkdirSync(bin, { mode: 0o755 })
  wrapBinaries(bin, argvLog)
  writeFileSync(
    sb.config,
    configText.replace(url, withPassword).replace(/^( {2}dataDir: pg\/data)$/m, `$1\n  binDir: ${bin}`)
  )
  const log = new MemoryLogger()
  const service = createService(loadConfig(sb.config), log)
  // Both forms are masked in every log: as decoded and as written (URL-encoded) in database.url.
  expect(secretsOf(service.config)).toEqual(expect.arrayContaining([PASSWORD, ENCODED]))
  log.info(`connecting with ${withPassword}`)
  expect(log.lines.join('\n')).not.toContain(ENCODED)
  const sampler = sampleCmdlines()
  try {
    const snap = await takeSnapshot(service, { safety: false })
    expect(snap.manifest.database?.base).toBeDefined() // pg_basebackup authenticated
    const [before] = await pgQuery<{ h: string }>(
      withPassword,
      `SELECT md5(string_agg(u::text, '|' ORDER BY id)) AS h FROM users u`
    )
    await pgQuery(withPassword, "UPDATE users SET email = 'bad' || id || '@corrupt.test'")

    const { record, error } = await rollback(service, {
      level: 3,
      reason: 'scram test',
      dryRun: false,
      confirm: () => Promise.resolve(true)
    })
    expect(error).toBeUndefined()
    expect(record.status).toBe('success')
    // Physical: pg_ctl stopped and started the cluster, the readiness wait connected with the password.
    expect(record.steps.find(s => s.name === 'Database restoration')!.detail).toMatch(/physical restore/)
    const [after] = await pgQuery<{ h: string }>(
      withPassword,
      `SELECT md5(string_agg(u::text, '|' ORDER BY id)) AS h FROM users u`
    )
    expect(after!.h).toBe(before!.h)
  } finally {
    const seen = sampler.stop()
    console.log(`argv sampled ${sampler.samples()} times`)
    expect(seen).toEqual([])
  }
  const calls = readFileSync(argvLog, 'latin1').split('\n').filter(Boolean)
  const tools = new Set(calls.map(c => path.basename(c.split('\0')[0] ?? '')))
  for (const t of ['pg_dump', 'pg_basebackup', 'pg_restore', 'pg_ctl']) expect(tools).toContain(t)
  expect(calls.filter(c => c.includes(PASSWORD) || c.includes(ENCODED))).toEqual([])
  // Nor in what backout logged.
  const logged = log.lines.join('\n')
  expect(logged.includes(PASSWORD) || logged.includes(ENCODED)).toBe(false)
})
