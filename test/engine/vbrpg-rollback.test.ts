import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { stringify as toYaml } from 'yaml'
import type { Config } from '../../src/core/config'
import { exitCodeFor } from '../../src/core/errors'
import { MemoryLogger } from '../../src/core/logger'
import type { RunRecord } from '../../src/core/run-record'
import { timelineText } from '../../src/core/timeline'
import { type BackupInfo } from '../../src/drivers/backup-store'
import { createAlembic, type AlembicDriver } from '../../src/drivers/alembic'
import { loadConfig } from '../../src/drivers/config-file'
import { runCommand } from '../../src/drivers/exec'
import { freePort } from '../../src/drivers/net'
import { sqliteExec } from '../../src/drivers/sqlite-cli'
import { foreignKeyCheck, integrityCheck, tableCounts } from '../../src/drivers/sqlite'
import { recordedCommit } from '../../src/engine/level2'
import { rollback } from '../../src/engine/rollback'
import { createService, type Service } from '../../src/engine/service'
import { takeSnapshot } from '../../src/engine/snapshot'
import { sandboxNginxArgs, startSandboxNginx } from '../../src/sandbox/scenario'
import { describeWith } from '../support/real-system'
import { startDockerEngine, type DockerEngine } from '../support/docker-engine'
import {
  hasSystemdContainer,
  imageTarball,
  noSystemdReason,
  PORTS,
  startSystemdContainer,
  type SystemdContainer
} from '../support/systemd-container'

/**
 * The VBRPG runbook's production rollbacks, end to end: a real systemd (PID 1 of a container booted from a
 * Debian rootfs, test/support/systemd-container.ts) runs the backend as vbrpg-backend-blue/green.service from
 * git checkouts tagged v1 and v2; real nginx on this host in front of the units' published ports; SQLite and
 * real alembic (test/fixtures/alembic-app) on this host. backout drives systemctl, journalctl and git through
 * `docker exec`, as it would drive a remote host through ssh.
 */

const R2 = 'b2f0c0de0002'
const R3 = 'c3f0c0de0003'
const R4 = 'd4f0c0de0004'
const UNITS = { blue: 'vbrpg-backend-blue.service', green: 'vbrpg-backend-green.service' } as const
const CHECKOUTS = { blue: '/srv/vbrpg-blue', green: '/srv/vbrpg-green' } as const

const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find(p => existsSync(p))
const ALEMBIC = '/usr/bin/alembic'
const skipReason = !hasSystemdContainer
  ? noSystemdReason
  : !NGINX
    ? 'nginx is not installed'
    : !existsSync(ALEMBIC)
      ? `alembic is not installed (${ALEMBIC})`
      : ''
const maybe = describeWith(skipReason, 'VBRPG systemd rollback tests')

jest.setTimeout(120_000)

/** A migration whose upgrade loses data (the runbook's Scenario 3) and whose downgrade cannot bring it back. */
const DATA_LOSS_MIGRATION = `"""archive finished rooms (buggy: deletes rooms and their hosts)

Revision ID: ${R4}
Revises: ${R3}
"""
from alembic import op

revision = "${R4}"
down_revision = "${R3}"
branch_labels = None
depends_on = None


def upgrade():
    op.execute("DELETE FROM game_rooms WHERE id > 20")
    op.execute("DELETE FROM players WHERE id > 100")


def downgrade():
    raise RuntimeError("${R4} deleted rooms and players: downgrading cannot bring them back — restore a backup")
`

const level2 = (service: Service, extra: Partial<Parameters<typeof rollback>[1]> = {}) =>
  rollback(service, {
    level: 2,
    reason: 'v2 broke the lobby',
    dryRun: false,
    confirm: () => Promise.resolve(true),
    ...extra
  })

const level3 = (service: Service, target: string, extra: Partial<Parameters<typeof rollback>[1]> = {}) =>
  rollback(service, {
    level: 3,
    target,
    reason: 'v2 lost game rooms',
    dryRun: false,
    confirm: () => Promise.resolve(true),
    ...extra
  })

const stepDetail = (record: RunRecord, name: string): string =>
  record.steps.find(s => s.name === name)?.detail ?? ''

test('recordedCommit reads the commit snapshot records for a colour, and nothing from a bare line', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'backout-recorded-commit-'))
  try {
    const config = loadConfigFor(dir, { blue: 1, green: 2 }, [])
    const backup = { dir, id: 'x' } as BackupInfo
    const v1 = 'a'.repeat(40)
    writeFileSync(
      path.join(dir, 'images.txt'),
      `vbrpg-blue:v1 other.service /srv/other ${'b'.repeat(40)}\n` +
        `vbrpg-blue:v1 ${UNITS.blue} ${CHECKOUTS.blue} ${v1}\n` +
        'vbrpg-green:v2\n'
    )
    expect(recordedCommit(backup, config, 'blue')).toBe(v1)
    expect(recordedCommit(backup, config, 'green')).toBeUndefined()
    rmSync(path.join(dir, 'images.txt'))
    expect(recordedCommit(backup, config, 'blue')).toBeUndefined()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

/** Writes DIR/backout.yml for the VBRPG service on the container's units and loads it. */
function loadConfigFor(
  dir: string,
  ports: { blue: number; green: number },
  exec: string[],
  nginxPort = 1,
  options: { waitSeconds?: number; gitDir?: boolean; file?: string } = {}
) {
  const nginxArgs = sandboxNginxArgs(dir)
  const target = (color: 'blue' | 'green', version: string) => ({
    version,
    upstream: `127.0.0.1:${ports[color]}`,
    systemd: {
      unit: UNITS[color],
      ...(options.gitDir === false ? {} : { gitDir: CHECKOUTS[color] }),
      ...(exec.length ? { exec } : {})
    }
  })
  const file = path.join(dir, options.file ?? 'backout.yml')
  writeFileSync(
    file,
    toYaml({
      service: 'vbrpg',
      environment: 'test',
      runtime: 'systemd',
      targets: { blue: target('blue', 'v1'), green: target('green', 'v2') },
      nginx: {
        upstreamFile: 'nginx/upstream.conf',
        upstreamName: 'backend',
        url: `http://127.0.0.1:${nginxPort}`,
        test: [NGINX ?? 'nginx', '-t', '-q', ...nginxArgs],
        reload: [NGINX ?? 'nginx', ...nginxArgs, '-s', 'reload']
      },
      health: { confirmRequests: 5, waitSeconds: options.waitSeconds ?? 30, intervalSeconds: 1 },
      stop: { timeoutSeconds: 10 },
      // Level 2 and 3 end with the thorough validation: monitor briefly here, not the runbook's 2 minutes.
      validate: { durationSeconds: 4, intervalSeconds: 2 },
      database: {
        kind: 'sqlite',
        path: 'vbrpg/data/vbrpg.db',
        criticalTables: ['players', 'game_rooms'],
        migrations: { kind: 'alembic', ini: 'vbrpg/alembic.ini', command: [ALEMBIC] }
      },
      configFiles: ['config/.env'],
      backups: { dir: 'backups', keep: 10, keepDays: 7 },
      state: { dir: 'state' },
      history: { log: 'rollback_history.log' }
    })
  )
  return loadConfig(file)
}

maybe('VBRPG rollbacks on a real systemd + git, nginx, SQLite and alembic', () => {
  let engine: DockerEngine | undefined
  let ctr: SystemdContainer | undefined
  const commits = { v1: '', v2: '' }
  const dirs: string[] = []
  let current: { dir: string } | undefined

  const inCtr = async (...argv: string[]): Promise<string> => {
    if (!ctr) throw new Error('no container')
    const r = await ctr.run(argv)
    if (r.code !== 0) throw new Error(`${argv.join(' ')} exited ${r.code}: ${r.stderr}`)
    return r.stdout.trim()
  }
  const unitState = (color: 'blue' | 'green'): Promise<string> =>
    ctr!.run(['systemctl', 'is-active', UNITS[color]]).then(r => r.stdout.trim())
  const headOf = (color: 'blue' | 'green'): Promise<string> =>
    inCtr('git', '-C', CHECKOUTS[color], 'rev-parse', 'HEAD')
  /** What nginx serves at /health: the version of the code the live unit runs. */
  async function served(url: string): Promise<string> {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(3000) })
    return String((JSON.parse(await res.text()) as { version?: unknown }).version)
  }
  /**
   * Waits (up to 10 s) until nginx serves `version`: a connection kept alive to a worker from before the
   * reload still answers from the old upstream until it closes.
   */
  async function servesSoon(url: string, version: string): Promise<string> {
    const deadline = Date.now() + 10_000
    let got = await served(url)
    while (got !== version && Date.now() < deadline) {
      await new Promise(r => setTimeout(r, 200))
      got = await served(url)
    }
    return got
  }

  beforeAll(async () => {
    const t0 = Date.now()
    const cached = existsSync(imageTarball)
    engine = await startDockerEngine()
    const hostPorts = { blue: await freePort(), green: await freePort() }
    ctr = await startSystemdContainer(engine, hostPorts, line => console.log(line), {
      files: version => ({ status: JSON.stringify({ overall_ready: true, version }) + '\n' })
    })
    commits.v1 = await inCtr('git', '-C', CHECKOUTS.blue, 'rev-parse', 'v1^{commit}')
    commits.v2 = await inCtr('git', '-C', CHECKOUTS.blue, 'rev-parse', 'v2^{commit}')
    const t = ctr.timings
    console.log(
      `systemd container ready in ${((Date.now() - t0) / 1000).toFixed(1)}s (${cached ? 'rootfs from cache' : `rootfs built in ${((t.buildMs ?? 0) / 1000).toFixed(0)}s`}, ` +
        `import ${(t.importMs / 1000).toFixed(1)}s, boot ${(t.bootMs / 1000).toFixed(1)}s, setup ${(t.setupMs / 1000).toFixed(1)}s)`
    )
  }, 15 * 60_000)

  afterEach(async () => {
    if (current) await stopNginx(current.dir)
    current = undefined
  })

  afterAll(async () => {
    for (const dir of dirs) {
      await stopNginx(dir)
      rmSync(dir, { recursive: true, force: true })
    }
    await ctr?.stop()
    await engine?.stop()
  }, 120_000)

  async function stopNginx(dir: string): Promise<void> {
    if (existsSync(path.join(dir, 'run', 'nginx.pid')))
      await runCommand([NGINX!, ...sandboxNginxArgs(dir), '-s', 'quit'], { timeoutMs: 10_000 })
  }

  /**
   * The release record and the deployment, as VBRPG's deploy.sh leaves them: blue ran v1 at revision b2 with data
   * when the snapshot was taken; then green started on v2, alembic upgraded to head and nginx moved to green.
   */
  /** The same service with targets.*.systemd.gitDir left out of its config (no-gitdir.yml). */
  function withoutGitDir(dir: string, config: Config, log: MemoryLogger): Service {
    return createService(
      loadConfigFor(dir, ctr!.hostPorts, ctr!.exec, Number(new URL(config.nginx.url).port), {
        gitDir: false,
        file: 'no-gitdir.yml'
      }),
      log
    )
  }

  async function released(options: { dataLossMigration?: boolean; waitSeconds?: number } = {}) {
    const t0 = Date.now()
    const dir = mkdtempSync(path.join(tmpdir(), 'backout-vbrpg-'))
    dirs.push(dir)
    current = { dir }
    for (const sub of ['nginx/tmp', 'run', 'logs', 'config', 'backups', 'state'])
      mkdirSync(path.join(dir, sub), { recursive: true })
    const project = path.join(dir, 'vbrpg')
    cpSync(path.join(__dirname, '../fixtures/alembic-app'), project, { recursive: true })
    mkdirSync(path.join(project, 'data'), { recursive: true })
    if (options.dataLossMigration)
      writeFileSync(
        path.join(project, `alembic/versions/${R4}_archive_finished_rooms.py`),
        DATA_LOSS_MIGRATION
      )
    const nginxPort = await freePort()
    const config = loadConfigFor(dir, ctr!.hostPorts, ctr!.exec, nginxPort, {
      waitSeconds: options.waitSeconds
    })
    const log = new MemoryLogger()
    const service = createService(config, log)
    const db = path.join(project, 'data/vbrpg.db')
    const alembic = createAlembic({ projectDir: project, env: { DATABASE_URL: `sqlite:///${db}` } })

    // The units as a fresh test needs them: blue on v1 and running, green on v2 and stopped.
    for (const color of ['blue', 'green'] as const) await inCtr('systemctl', 'stop', UNITS[color])
    await inCtr('git', '-C', CHECKOUTS.blue, 'checkout', '--quiet', '--force', '--detach', 'v1')
    await inCtr('git', '-C', CHECKOUTS.green, 'checkout', '--quiet', '--force', '--detach', 'v2')
    await inCtr('systemctl', 'start', UNITS.blue)
    writeFileSync(path.join(dir, 'config/.env'), 'VBRPG_VERSION=v1\nLOG_LEVEL=info\n')
    await startSandboxNginx(dir, config, nginxPort, log)

    await alembic.upgrade(R2)
    await sqliteExec(
      db,
      `WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 200)
         INSERT INTO players (name) SELECT 'player ' || n FROM g;
       INSERT INTO game_rooms (code, host_player_id) SELECT printf('R%05d', id), id FROM players WHERE id <= 50;`
    )
    const rows = (): Promise<string> =>
      sqliteExec(
        db,
        `SELECT (SELECT count(*) FROM players) || ' ' || (SELECT count(*) FROM game_rooms) || ' ' ||
                (SELECT group_concat(id || code || host_player_id, ',') FROM (SELECT * FROM game_rooms ORDER BY id));`
      )
    const before = await rows()
    const release = await takeSnapshot(service, { safety: false })
    expect(release.manifest.versions.live).toBe('v1')
    expect(recordedCommit(release, config, 'blue')).toBe(commits.v1)
    expect(recordedCommit(release, config, 'green')).toBe(commits.v2)

    // The deployment of v2: green starts, the migrations run, nginx moves.
    await inCtr('systemctl', 'start', UNITS.green)
    await alembic.upgrade('head')
    writeFileSync(path.join(dir, 'config/.env'), 'VBRPG_VERSION=v2\nLOG_LEVEL=info\n')
    await service.nginx.switchUpstream(config.targets.green.upstream, 'active=green (test: v2 deployment)')
    expect(await servesSoon(config.nginx.url, 'v2')).toBe('v2')
    console.log(`release record + deployment of v2: ${Date.now() - t0} ms`)
    return { dir, config, service, log, db, alembic, release, before, rows }
  }

  /** After a rollback to the release: blue runs v1 from commit v1 and serves it through nginx, green is stopped. */
  async function expectBlueOnV1(config: ReturnType<typeof loadConfig>): Promise<void> {
    expect(await headOf('blue')).toBe(commits.v1)
    expect(await unitState('blue')).toBe('active')
    expect(await unitState('green')).not.toBe('active')
    expect(await servesSoon(config.nginx.url, 'v1')).toBe('v1')
    for (let i = 0; i < 5; i++) expect(await served(config.nginx.url)).toBe('v1')
  }

  const alembicCurrent = (alembic: AlembicDriver): Promise<string[]> => alembic.current()

  it('Level 2 from green (v2, head) to the release (blue on commit v1, revision b2): dry run, refusal, the real thing', async () => {
    const { config, service, alembic, release, before, rows, db } = await released()
    // The deployment moved blue's checkout to v2 too and restarted it: blue runs, but not the recorded commit.
    await inCtr('systemctl', 'stop', UNITS.blue)
    await inCtr('git', '-C', CHECKOUTS.blue, 'checkout', '--quiet', '--detach', 'v2')
    await inCtr('systemctl', 'start', UNITS.blue)
    expect(await alembicCurrent(alembic)).toEqual([R3])

    // --dry-run: the git checkout it would run, the downgrade SQL; nothing changes.
    let t = Date.now()
    const dry = await level2(service, { dryRun: true })
    expect(dry.error).toBeUndefined()
    const deploy = stepDetail(dry.record, 'Deploy previous version')
    expect(deploy).toContain(`git -C ${CHECKOUTS.blue} checkout --detach ${commits.v1}`)
    expect(stepDetail(dry.record, 'Preparation')).toContain(
      `blue's checkout ${CHECKOUTS.blue} is at ${commits.v2.slice(0, 12)}, the backup recorded ${commits.v1.slice(0, 12)}`
    )
    expect(stepDetail(dry.record, 'Roll back database migrations')).toMatch(
      new RegExp(`alembic downgrade ${R3} → ${R2}`)
    )
    expect(await headOf('blue')).toBe(commits.v2)
    expect(await unitState('green')).toBe('active')
    expect(await alembicCurrent(alembic)).toEqual([R3])
    console.log(`dry run: ${Date.now() - t} ms`)

    // A checkout with uncommitted changes: refused in pre-flight (exit 2), nothing changed.
    await inCtr('sh', '-c', `echo hotfix >> ${CHECKOUTS.blue}/VERSION`)
    const refused = await level2(service)
    expect(refused.record.status).toBe('refused')
    expect(refused.record.reasonCode).toBe('dirty_worktree')
    expect(exitCodeFor(refused.error)).toBe(2)
    expect(refused.record.steps.filter(s => s.status === 'ok' || s.status === 'failed')).toEqual([
      expect.objectContaining({ name: 'Preparation', status: 'failed' })
    ])
    expect(service.store.list().map(b => b.id)).toEqual([release.id])
    expect(await unitState('green')).toBe('active')
    expect(await alembicCurrent(alembic)).toEqual([R3])
    await inCtr('git', '-C', CHECKOUTS.blue, 'checkout', '--', 'VERSION')

    t = Date.now()
    const { record, error } = await level2(service)
    expect(error).toBeUndefined()
    expect(record.status).toBe('success')
    expect(record.backupId).toBe(release.id)
    console.log(`Level 2: ${Date.now() - t} ms\n${timelineText(record)}`)
    expect(stepDetail(record, 'Roll back database migrations')).toMatch(
      new RegExp(`alembic downgrade ${R2}: \`alembic current\` is ${R2}`)
    )
    expect(stepDetail(record, 'Deploy previous version')).toMatch(
      new RegExp(`ran commit ${commits.v2.slice(0, 12)}, not the recorded ${commits.v1.slice(0, 12)}`)
    )
    expect(stepDetail(record, 'Report')).toContain(`blue on commit ${commits.v1.slice(0, 12)}`)
    expect(await alembicCurrent(alembic)).toEqual([R2])
    expect(await rows()).toBe(before)
    expect((await integrityCheck(db)).ok).toBe(true)
    await expectBlueOnV1(config)
  })

  it('Scenario 1: a foreign-key violation after the migration → Level 2 → foreign_key_check still reports → Level 3 restore → clean', async () => {
    const { config, service, alembic, release, db, rows, before } = await released()
    // v2 deleted players that rooms still point at (SQLite does not enforce foreign keys unless asked).
    await sqliteExec(db, 'DELETE FROM players WHERE id <= 10;')
    expect(await foreignKeyCheck(db)).toHaveLength(10)

    // Step 1: roll the migration back (Level 2: downgrade, blue on its recorded commit).
    let t = Date.now()
    // The VBRPG checklist's integrity check after the downgrade finds them: Level 2 fails (exit 1, escalatable)
    // rather than report a success on a database with dangling rows.
    const l2 = await level2(service)
    expect(l2.record.status).toBe('failed')
    expect(l2.record.reasonCode).toBe('integrity_failed')
    expect(stepDetail(l2.record, 'Database integrity check')).toMatch(/foreign_key_check: 10 violations/)
    console.log(`Level 2: ${Date.now() - t} ms`)
    expect(await alembicCurrent(alembic)).toEqual([R2])

    // Step 2: PRAGMA foreign_key_check — the downgrade kept the dangling rooms.
    const dangling = await foreignKeyCheck(db)
    expect(dangling).toHaveLength(10)
    expect(JSON.stringify(dangling)).toContain('game_rooms')

    // Step 3: inconsistencies found — restore from the backup (Level 3's SQLite restore of the release).
    t = Date.now()
    const l3 = await rollback(service, {
      level: 3,
      target: release.id,
      reason: 'foreign_key_check reports dangling game_rooms after the downgrade',
      dryRun: false,
      confirm: () => Promise.resolve(true)
    })
    expect(l3.error).toBeUndefined()
    expect(l3.record.status).toBe('success')
    console.log(`Level 3: ${Date.now() - t} ms\n${timelineText(l3.record)}`)
    expect(stepDetail(l3.record, 'Data integrity verification')).toMatch(/no foreign key violations/)
    expect(await foreignKeyCheck(db)).toEqual([])
    expect(await integrityCheck(db)).toMatchObject({ ok: true })
    expect(await rows()).toBe(before)
    expect(await alembicCurrent(alembic)).toEqual([R2])
    await expectBlueOnV1(config)
  })

  it('Scenario 3: data loss after a migration → stop → restore (Method 2) → counts equal the backup’s → v1 pinned and running', async () => {
    const { dir, config, service, alembic, release, db, rows, before } = await released({
      dataLossMigration: true
    })
    expect(await alembicCurrent(alembic)).toEqual([R4])
    const recorded = release.manifest.database?.rowCounts ?? {}
    expect(recorded).toMatchObject({ players: 200, game_rooms: 50 })
    expect(await tableCounts(db)).toMatchObject({ players: 100, game_rooms: 20 })
    // Blue was stopped and its checkout moved to v2 by the deployment: the old version must be checked out again.
    await inCtr('systemctl', 'stop', UNITS.blue)
    await inCtr('git', '-C', CHECKOUTS.blue, 'checkout', '--quiet', '--detach', 'v2')

    const t = Date.now()
    const { record, error } = await level2(service)
    if (error) console.log(timelineText(record), readFileSync(path.join(dir, 'logs/nginx-error.log'), 'utf8'))
    expect(error).toBeUndefined()
    expect(record.status).toBe('success')
    console.log(`Level 2 (Method 2): ${Date.now() - t} ms\n${timelineText(record)}`)
    // Stop first (green), then the restore: the downgrade cannot bring the rows back.
    const names = record.steps.map(s => s.name)
    expect(names.indexOf('Stop current deployment')).toBeLessThan(
      names.indexOf('Roll back database migrations')
    )
    expect(stepDetail(record, 'Stop current deployment')).toMatch(/green v2: stopped/)
    expect(stepDetail(record, 'Roll back database migrations')).toMatch(
      new RegExp(
        `fell back to restoring backup ${release.id} \\(Method 2\\) because alembic downgrade ${R2} failed`
      )
    )
    expect(record.dataLoss?.note).toMatch(/Method 2/)
    // Counts verified: equal to what the backup recorded; the rows themselves too.
    const counts = await tableCounts(db)
    for (const [table, n] of Object.entries(recorded)) expect([table, counts[table]]).toEqual([table, n])
    expect(await rows()).toBe(before)
    expect(await alembicCurrent(alembic)).toEqual([R2])
    // The old version pinned: blue checked out at the recorded commit, started, serving v1.
    expect(stepDetail(record, 'Deploy previous version')).toContain(
      `${CHECKOUTS.blue}: ${commits.v2.slice(0, 12)} → ${commits.v1.slice(0, 12)}`
    )
    await expectBlueOnV1(config)
  })
  it('refuses without a checkout to pin (exit 2, nothing changed); a unit that never gets ready fails with its last 50 journal lines', async () => {
    const { dir, config, alembic, log } = await released({ waitSeconds: 2 })
    // Without targets.blue.systemd.gitDir there is no checkout to move to the recorded commit.
    const noGitDir = withoutGitDir(dir, config, log)
    const refused = await level2(noGitDir)
    expect(refused.record.status).toBe('refused')
    expect(refused.record.reasonCode).toBe('no_recorded_commit')
    expect(exitCodeFor(refused.error)).toBe(2)
    expect(refused.record.error).toMatch(/set targets\.blue\.systemd\.gitDir/)
    expect(await unitState('green')).toBe('active')
    expect(await alembicCurrent(alembic)).toEqual([R3])

    // blue (stopped) starts but serves nothing at /status: Wait for health fails and shows the unit's journal.
    const dropIn = `/etc/systemd/system/${UNITS.blue}.d`
    await inCtr('mkdir', '-p', dropIn, '/srv/empty')
    await inCtr(
      'sh',
      '-c',
      `printf '[Service]\\nExecStart=\\nExecStart=/usr/bin/python3 -u -m http.server ${PORTS.blue} --directory /srv/empty\\n' > ${dropIn}/broken.conf`
    )
    await inCtr('systemctl', 'daemon-reload')
    await inCtr('systemctl', 'stop', UNITS.blue)
    try {
      const { record, error } = await level2(createService(config, log))
      expect(error).toBeDefined()
      expect(record.status).toBe('failed')
      const failed = record.steps.find(s => s.status === 'failed')
      expect(failed?.name).toBe('Wait for health')
      expect(record.error).toMatch(
        new RegExp(`journal lines of ${UNITS.blue} \\(journalctl -u ${UNITS.blue} -n 50\\)`)
      )
      expect(record.error).toMatch(/"GET \/status HTTP\/1\.1" 404/)
    } finally {
      await inCtr('rm', '-rf', dropIn)
      await inCtr('systemctl', 'daemon-reload')
    }
  })

  it('Level 3 from green (v2, head, rooms lost) to the release: dry run, refusal of a dirty checkout before anything stops, data and blue’s commit restored', async () => {
    const { dir, config, service, alembic, release, before, rows, db } = await released()
    // The bad deploy: v2 lost rooms, and moved blue's checkout to v2 too (blue restarted on it).
    await sqliteExec(db, 'DELETE FROM game_rooms WHERE id > 20;')
    const damaged = await rows()
    expect(damaged).not.toBe(before)
    await inCtr('systemctl', 'stop', UNITS.blue)
    await inCtr('git', '-C', CHECKOUTS.blue, 'checkout', '--quiet', '--detach', 'v2')
    await inCtr('systemctl', 'start', UNITS.blue)
    const v1 = commits.v1.slice(0, 12)
    const v2 = commits.v2.slice(0, 12)

    // --dry-run: pre-flight reads the checkout, the plan shows the git checkout; nothing changes.
    let t = Date.now()
    const dry = await level3(service, release.id, { dryRun: true })
    expect(dry.error).toBeUndefined()
    expect(stepDetail(dry.record, 'Pre-flight checks')).toContain(
      `blue's checkout ${CHECKOUTS.blue} is at ${v2}, the backup recorded ${v1} (checked out before blue starts)`
    )
    expect(stepDetail(dry.record, 'Configuration restoration')).toContain(
      `git -C ${CHECKOUTS.blue} checkout --detach ${commits.v1}`
    )
    expect(await headOf('blue')).toBe(commits.v2)
    expect(await unitState('green')).toBe('active')
    expect(await rows()).toBe(damaged)
    console.log(`Level 3 dry run: ${Date.now() - t} ms`)

    // A checkout with uncommitted changes: refused in pre-flight (exit 2) before anything stops or is snapshotted.
    await inCtr('sh', '-c', `echo hotfix >> ${CHECKOUTS.blue}/VERSION`)
    try {
      const refused = await level3(service, release.id)
      expect(refused.record.status).toBe('refused')
      expect(refused.record.reasonCode).toBe('dirty_worktree')
      expect(exitCodeFor(refused.error)).toBe(2)
      expect(refused.record.error).toContain(CHECKOUTS.blue)
      expect(refused.record.steps.filter(s => s.status === 'ok' || s.status === 'failed')).toEqual([
        expect.objectContaining({ name: 'Emergency assessment', status: 'ok' }),
        expect.objectContaining({ name: 'Pre-flight checks', status: 'failed' })
      ])
      expect(service.store.list().map(b => b.id)).toEqual([release.id])
      expect(await unitState('blue')).toBe('active')
      expect(await unitState('green')).toBe('active')
      expect(await headOf('blue')).toBe(commits.v2)
      expect(await rows()).toBe(damaged)
      expect(await alembicCurrent(alembic)).toEqual([R3])
      expect(readFileSync(path.join(dir, 'config/.env'), 'utf8')).toContain('VBRPG_VERSION=v2')
    } finally {
      await inCtr('git', '-C', CHECKOUTS.blue, 'checkout', '--', 'VERSION')
    }

    t = Date.now()
    const { record, error } = await level3(service, release.id)
    if (error) console.log(timelineText(record))
    expect(error).toBeUndefined()
    expect(record.status).toBe('success')
    expect(record.backupId).toBe(release.id)
    console.log(`Level 3: ${Date.now() - t} ms\n${timelineText(record)}`)
    expect(stepDetail(record, 'Pre-flight checks')).toContain(
      `blue's checkout ${CHECKOUTS.blue} is at ${v2}, the backup recorded ${v1}`
    )
    expect(stepDetail(record, 'Complete shutdown')).toMatch(/blue: stopped/)
    expect(stepDetail(record, 'Configuration restoration')).toContain(
      `checkout ${CHECKOUTS.blue}: ${v2} → ${v1}`
    )
    expect(stepDetail(record, 'Service startup')).toContain(`on commit ${v1} (the backup's)`)
    expect(await rows()).toBe(before)
    expect((await integrityCheck(db)).ok).toBe(true)
    expect(await alembicCurrent(alembic)).toEqual([R2])
    expect(readFileSync(path.join(dir, 'config/.env'), 'utf8')).toContain('VBRPG_VERSION=v1')
    await expectBlueOnV1(config)
  })

  it('Level 3 without targets.blue.systemd.gitDir warns and restores the data, leaving the checkout as it is', async () => {
    // Only the data is damaged; blue's checkout was never moved (still v1). Without gitDir, Level 3 cannot check a
    // commit out and does not try: it warns and restores the data. (Had the checkout moved to v2, blue would come
    // back announcing v2 and Service startup would fail, nginx never seeing blue answer.)
    const { dir, config, release, before, rows, db, log } = await released()
    await sqliteExec(db, 'DELETE FROM game_rooms WHERE id > 20;')
    const noGitDir = withoutGitDir(dir, config, log)
    const t = Date.now()
    const { record, error } = await level3(noGitDir, release.id)
    expect(error).toBeUndefined()
    expect(record.status).toBe('success')
    console.log(`Level 3 without gitDir: ${Date.now() - t} ms`)
    expect(stepDetail(record, 'Pre-flight checks')).toMatch(
      /blue's checkout stays as it is \(.*so Level 3 cannot tell which code to check out .*set targets\.blue\.systemd\.gitDir/
    )
    expect(log.lines.some(l => l.startsWith('warn: ') && l.includes("leaves blue's checkout as it is"))).toBe(
      true
    )
    expect(stepDetail(record, 'Configuration restoration')).not.toContain('checkout')
    expect(await rows()).toBe(before)
    await expectBlueOnV1(config)
  })

  it('Level 3 without gitDir after a deploy moved blue to v2: the data comes back, and Service startup says at once that blue runs other code', async () => {
    const { dir, config, release, before, rows, db, log } = await released()
    await sqliteExec(db, 'DELETE FROM game_rooms WHERE id > 20;')
    await inCtr('git', '-C', CHECKOUTS.blue, 'checkout', '--quiet', '--detach', 'v2')
    await inCtr('systemctl', 'restart', UNITS.blue)
    const noGitDir = withoutGitDir(dir, config, log)
    const t = Date.now()
    const { record, error } = await level3(noGitDir, release.id)
    const ms = Date.now() - t
    console.log(`Level 3 without gitDir, blue on v2: failed in ${ms} ms`)
    expect(record.status).toBe('failed')
    expect(exitCodeFor(error)).toBe(1)
    expect(record.error).toMatch(
      /nginx routes to blue .*, but \d+ answers in a row report version v2, not v1: blue runs other code — roll its code back/
    )
    expect(record.steps.find(s => s.status === 'failed')?.name).toBe('Service startup')
    // Failed fast: well inside the step's budget (it used to wait for the deadline).
    expect(ms).toBeLessThan(60_000)
    expect(await rows()).toBe(before) // the data did come back
  })
})
