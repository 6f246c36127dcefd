import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml'
import { parseConfig } from '../../src/core/config'
import { runCommand } from '../../src/drivers/exec'

/**
 * The path a platform team walks, from a fresh clone: install (npm pack → npm install -g, offline), backout
 * on PATH, `backout init` on the host (the sandbox stands in for it), the caller workflows in a scratch
 * repository accepted by GitHub's workflow parser with every `uses:` resolving to a file of this repository,
 * `backout doctor`, and the getting-started guide's commands checked against the CLI.
 */
const root = path.resolve(__dirname, '../..')
const work = mkdtempSync(path.join(tmpdir(), 'backout-adopt-'))
chmodSync(work, 0o755) // PostgreSQL, running as postgres, keeps its data under it
const prefix = path.join(work, 'global')
const bin = path.join(prefix, 'bin')
const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}` }
const sandboxDir = path.join(work, 'host')
const repo = path.join(work, 'app-repo')
const run = (argv: string[], cwd = work) => runCommand(argv, { cwd, env })
const backout = (...args: string[]) => run(['backout', ...args])

afterAll(async () => {
  if (existsSync(path.join(sandboxDir, 'sandbox.json'))) await backout('sandbox', 'down', '--dir', sandboxDir)
  rmSync(work, { recursive: true, force: true })
})

test('clone → npm install -g → init → workflows → doctor: the guide, walked', async () => {
  const started = performance.now()
  // 1. A fresh clone. dist/ is what `npm test` built from these sources (the committed one is regenerated
  //    for each release), so it is copied over the clone's.
  const clone = path.join(work, 'backout')
  expect((await run(['git', 'clone', '-q', root, clone])).code).toBe(0)
  rmSync(path.join(clone, 'dist'), { recursive: true, force: true })
  cpSync(path.join(root, 'dist/cli'), path.join(clone, 'dist/cli'), { recursive: true })

  // The documented install for a host without GitHub: a tarball of dist/cli only, installed offline.
  const pack = await run(['npm', 'pack', '--silent'], clone)
  expect(pack.code).toBe(0)
  const tarball = path.join(clone, pack.stdout.trim().split('\n').pop()!)
  const files = (await run(['tar', 'tzf', tarball])).stdout.split('\n').filter(Boolean)
  expect(files.filter(f => !/^package\/(dist\/cli\/|package\.json$|README\.md$|LICENSE)/.test(f))).toEqual([])
  const install = await run([
    'npm',
    'install',
    '-g',
    '--prefix',
    prefix,
    '--offline',
    '--no-audit',
    '--no-fund',
    tarball
  ])
  expect({ code: install.code, stderr: install.stderr }).toMatchObject({ code: 0 })
  // The documented install on a host with the clone: npm install -g <clone> links it, offline, no build.
  const linked = path.join(work, 'global-link')
  const link = await run([
    'npm',
    'install',
    '-g',
    '--prefix',
    linked,
    '--offline',
    '--no-audit',
    '--no-fund',
    clone
  ])
  expect(link.code).toBe(0)
  expect((await run([path.join(linked, 'bin/backout'), '--help'])).stdout).toMatch(/\binit\b/)
  const which = await run(['sh', '-c', 'command -v backout'])
  expect(which.stdout.trim()).toBe(path.join(bin, 'backout'))
  const help = await backout('--help')
  expect(help.stdout).toMatch(/\binit\b/)
  expect(help.stdout).toMatch(/\bdoctor\b/)

  // The host: the sandbox (nginx, PostgreSQL, blue and green processes), started by the installed CLI.
  expect((await backout('sandbox', 'up', '--dir', sandboxDir)).code).toBe(0)

  // 2. init, without a terminal: what it cannot find is an error naming the flags, and nothing is written.
  mkdirSync(repo)
  expect((await run(['git', 'init', '-q'], repo)).code).toBe(0)
  const empty = path.join(work, 'empty')
  mkdirSync(empty)
  const refused = await run(['backout', 'init', '--dir', empty, '--nginx-etc', empty], repo)
  expect(refused.code).toBe(2)
  expect(refused.stderr).toContain('--service')
  expect(refused.stderr).toContain('--nginx-upstream-file')
  expect(refused.stderr).toContain('--blue-upstream')
  expect(existsSync(path.join(empty, 'backout.yml'))).toBe(false)

  const config = path.join(repo, 'backout.yml')
  const init = await run(
    [
      'backout',
      'init',
      '--dir',
      sandboxDir,
      '--output',
      config,
      '--service',
      'spacetime',
      '--state-dir',
      path.join(work, 'var-lib-backout'),
      '--backups-dir',
      path.join(work, 'var-backups'),
      '--workflows',
      '.github/workflows',
      '--repo',
      'backout/backout',
      '--ref',
      'v1',
      '--runner-labels',
      'self-hosted,spacetime-prod'
    ],
    repo
  )
  expect({ code: init.code, stderr: init.stderr }).toEqual({ code: 0, stderr: '' })
  const cfg = parseConfig(parseYaml(readFileSync(config, 'utf8')), config)
  expect(cfg.runtime).toBe('process')
  expect(cfg.targets.blue.version).toBe('v2.4.9')
  expect(cfg.targets.green.version).toBe('v2.5.0')
  expect(cfg.database?.kind).toBe('postgres')
  expect(cfg.database?.migrations).toMatchObject({ kind: 'sql' })
  expect(cfg.data.map(d => d.name)).toEqual(['godot-data'])
  expect(readFileSync(config, 'utf8')).toMatch(/^# Detected:/m)
  const dry = await backout('--config', config, 'rollback', '--level', '1', '--dry-run')
  expect({ code: dry.code, stderr: dry.stderr }).toMatchObject({ code: 0 })
  expect(dry.stdout).toContain('Switch traffic')
  const elapsed = (performance.now() - started) / 1000

  // 7. The workflows: GitHub's parser accepts them; every uses: is a file of this repository at its path;
  //    every with:/secrets: key is an input/secret the called workflow declares; permissions are set.
  const wfDir = path.join(repo, '.github/workflows')
  const wfFiles = readdirSync(wfDir).map(f => path.join(wfDir, f))
  expect(wfFiles.map(f => path.basename(f)).sort()).toEqual([
    'backout-chatops.yml',
    'backout-on-failed-deploy.yml',
    'backout-record-release.yml',
    'backout-rollback.yml'
  ])
  const parsed = await runCommand(
    [path.join(root, 'node_modules/.bin/tsx'), 'test/support/parse-workflows.mjs', ...wfFiles],
    {
      cwd: root
    }
  )
  expect(parsed.code).toBe(0)
  const result = JSON.parse(parsed.stdout) as Record<
    string,
    { errors: string[]; uses: string[]; jobs: number }
  >
  for (const file of wfFiles) {
    expect({ file, errors: result[file]!.errors }).toEqual({ file, errors: [] })
    expect(result[file]!.jobs).toBeGreaterThan(0)
    const doc = parseYaml(readFileSync(file, 'utf8')) as {
      permissions?: unknown
      jobs: Record<string, { uses?: string; with?: Record<string, unknown>; secrets?: unknown }>
    }
    expect(doc.permissions).toBeDefined()
    for (const uses of result[file]!.uses) {
      if (uses === 'actions/checkout@v4') continue
      const m = /^backout\/backout\/(.+)@v1$/.exec(uses)
      expect({ file, uses, ok: Boolean(m) }).toEqual({ file, uses, ok: true })
      const target = path.join(root, m![1]!)
      const exists = existsSync(target.endsWith('.yml') ? target : path.join(target, 'action.yml'))
      expect({ uses, exists }).toEqual({ uses, exists: true })
    }
    for (const job of Object.values(doc.jobs)) {
      if (!job.uses) continue
      expect(job.secrets).toEqual({ BACKOUT_ENV: '${{ secrets.BACKOUT_ENV }}' })
      const called = parseYaml(
        readFileSync(path.join(root, /^backout\/backout\/(.+)@/.exec(job.uses)![1]!), 'utf8')
      ) as {
        on: { workflow_call: { inputs?: Record<string, unknown>; secrets?: Record<string, unknown> } }
      }
      const declared = Object.keys(called.on.workflow_call.inputs ?? {})
      for (const key of Object.keys(job.with ?? {}))
        expect({ uses: job.uses, key, declared: declared.includes(key) }).toEqual({
          uses: job.uses,
          key,
          declared: true
        })
      expect(Object.keys(called.on.workflow_call.secrets ?? {})).toContain('BACKOUT_ENV')
    }
    for (const job of Object.values(doc.jobs)) {
      for (const step of (job as { steps?: { uses?: string; with?: Record<string, unknown> }[] }).steps ??
        []) {
        const m = /^backout\/backout\/(actions\/[^@]+)@/.exec(step.uses ?? '')
        if (!m) continue
        const action = parseYaml(readFileSync(path.join(root, m[1]!, 'action.yml'), 'utf8')) as {
          inputs?: Record<string, unknown>
        }
        for (const key of Object.keys(step.with ?? {}))
          expect({ uses: step.uses, key, declared: key in (action.inputs ?? {}) }).toEqual({
            uses: step.uses,
            key,
            declared: true
          })
      }
    }
  }

  // 3. doctor on the host: exit 0, each check named; a state.dir inside the repository is a warning.
  const doc = await backout('--config', config, '--json', 'doctor')
  const report = JSON.parse(doc.stdout) as {
    ok: boolean
    checks: { name: string; status: string; fix?: string }[]
  }
  expect({ code: doc.code, failed: report.checks.filter(c => c.status === 'fail') }).toEqual({
    code: 0,
    failed: []
  })
  expect(report.checks.map(c => c.name)).toEqual(
    expect.arrayContaining([
      'state.dir',
      'seal key',
      'nginx test',
      'nginx reload',
      'pg_dump version',
      'WAL archiving',
      'zstd',
      'disk under backups',
      'newest backup'
    ])
  )
  expect(report.checks.find(c => c.name === 'WAL archiving')).toMatchObject({ status: 'warn' })
  expect(report.checks.find(c => c.name === 'WAL archiving')!.fix).toContain('walArchiveDir')
  const snap = await backout('--config', config, 'snapshot')
  expect(snap.code).toBe(0)
  const drilled = JSON.parse(
    (await backout('--config', config, '--json', 'doctor', '--drill')).stdout
  ) as typeof report
  expect(drilled.checks.find(c => c.name === 'restore drill')).toMatchObject({ status: 'ok' })
  expect(drilled.checks.find(c => c.name === 'seal key')).toMatchObject({ status: 'ok' })

  const inRepo = path.join(repo, 'backout-inside.yml')
  const again = await run(
    [
      'backout',
      'init',
      '--dir',
      sandboxDir,
      '--output',
      inRepo,
      '--service',
      'spacetime',
      '--state-dir',
      'state',
      '--backups-dir',
      path.join(work, 'var-backups')
    ],
    repo
  )
  expect(again.code).toBe(0)
  const warned = await backout('--config', inRepo, 'rollback', '--level', '1', '--dry-run')
  expect(warned.stderr).toMatch(
    /state\.dir .* is inside the git work tree .*set state\.dir to an absolute path outside it/
  )
  const broken = await run(['backout', '--config', inRepo, 'doctor'], repo)
  expect(broken.stdout).toMatch(/! state\.dir .*inside the git work tree/)

  // doctor's failures, each with its fix and exit 1: nginx -t failing, a pg_dump older than the server
  const oldPg = path.join(work, 'pg13/bin')
  mkdirSync(oldPg, { recursive: true })
  writeFileSync(path.join(oldPg, 'pg_dump'), '#!/bin/sh\necho "pg_dump (PostgreSQL) 13.16"\n', {
    mode: 0o755
  })
  const sick = path.join(repo, 'backout-sick.yml')
  const sickCfg = parseYaml(readFileSync(config, 'utf8')) as Record<string, Record<string, unknown>>
  sickCfg.nginx!.test = ['nginx', '-t', '-c', path.join(work, 'missing-nginx.conf')]
  sickCfg.database!.binDir = oldPg
  writeFileSync(sick, stringifyYaml(sickCfg))
  const sickRun = await backout('--config', sick, '--json', 'doctor')
  expect(sickRun.code).toBe(1)
  const sickReport = JSON.parse(sickRun.stdout) as typeof report
  expect(sickReport.checks.find(c => c.name === 'nginx test')).toMatchObject({
    status: 'fail',
    fix: expect.stringContaining('nginx')
  })
  expect(sickReport.checks.find(c => c.name === 'pg_dump version')).toMatchObject({
    status: 'fail',
    detail: expect.stringMatching(/pg_dump 13 .* vs server 1[0-9]/),
    fix: expect.stringMatching(/install postgresql-client-1\d and set database\.binDir/)
  })

  // The guide: every `backout ...` command in docs/getting-started.md names a command and flags the CLI has.
  const guide = readFileSync(path.join(root, 'docs/getting-started.md'), 'utf8')
  const commands = [...guide.matchAll(/```bash\n([\s\S]*?)```/g)]
    .flatMap(m => m[1]!.split('\n'))
    .map(l => l.replace(/#.*$/, '').trim())
    .filter(l => /^(sudo )?backout /.test(l))
  expect(commands.length).toBeGreaterThan(3)
  for (const line of commands) {
    const words = line
      .replace(/^sudo /, '')
      .split(/\s+/)
      .slice(1)
    const sub = words.find((w, i) => !w.startsWith('-') && !(words[i - 1] ?? '').match(/^(-c|--config)$/))!
    const subHelp = await backout(sub, '--help')
    expect({ line, code: subHelp.code }).toEqual({ line, code: 0 })
    for (const flag of words.filter(w => w.startsWith('--')).map(w => w.split('=')[0]!))
      if (!['--config', '--json', '--help'].includes(flag))
        expect({ line, flag, known: subHelp.stdout.includes(flag) }).toEqual({ line, flag, known: true })
  }
  console.log(
    `clone → installed → validated backout.yml + workflows on the sandbox host: ${elapsed.toFixed(1)} s (machine time)`
  )
}, 240_000)
