import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { parse as parseYaml } from 'yaml'
import { parseConfig } from '../../src/core/config'
import { runCommand } from '../../src/drivers/exec'
import { CLI, runCli } from '../support/cli'

const dir = mkdtempSync(path.join(tmpdir(), 'backout-init-'))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

test('init on a compose app: nginx from the host, the compose service, DATABASE_URL without its password, alembic, data', async () => {
  const app = path.join(dir, 'spacetime')
  const etc = path.join(dir, 'etc-nginx')
  mkdirSync(path.join(etc, 'conf.d'), { recursive: true })
  mkdirSync(path.join(app, 'data/godot'), { recursive: true })
  mkdirSync(path.join(app, 'monitoring'))
  writeFileSync(
    path.join(etc, 'conf.d/spacetime-upstream.conf'),
    'upstream spacetime_backend {\n    server 127.0.0.1:8081;\n}\nserver { listen 80; location / { proxy_pass http://spacetime_backend; } }\n'
  )
  writeFileSync(
    path.join(app, 'docker-compose.yml'),
    'services:\n  db:\n    image: postgres:15\n  godot:\n    image: registry.example/spacetime:${IMAGE_TAG}\n    ports: ["8080:8080"]\n'
  )
  writeFileSync(
    path.join(app, '.env'),
    'IMAGE_TAG=v2.5.0\nDATABASE_URL="postgresql://spacetime:s3cr3t-pw@127.0.0.1:5432/spacetime_db"\n'
  )
  writeFileSync(path.join(app, 'alembic.ini'), '[alembic]\nscript_location = migrations\n')
  writeFileSync(path.join(app, 'monitoring/prometheus.yml'), 'scrape_configs: []\n')
  const out = path.join(dir, 'backout.yml')
  const flags = [
    '--blue-upstream',
    '127.0.0.1:8081',
    '--green-upstream',
    '127.0.0.1:8082',
    '--blue-version',
    'v2.4.9'
  ]
  const base = [
    'init',
    '--dir',
    app,
    '--nginx-etc',
    etc,
    '--output',
    out,
    '--service',
    'spacetime',
    '--prometheus-url',
    'http://127.0.0.1:1'
  ]

  // without a terminal, what is missing is named, with its flag
  const refused = await runCli([...base, ...flags.slice(0, 4)])
  expect(refused.code).toBe(2)
  expect(refused.stderr).toContain('the version blue runs (e.g. v2.4.9) (--blue-version)')
  expect(refused.stderr).toContain('(--green-version)')

  const res = await runCli([...base, ...flags, '--green-version', 'v2.5.0'])
  expect({ code: res.code, stderr: res.stderr }).toEqual({ code: 0, stderr: '' })
  const text = readFileSync(out, 'utf8')
  expect(text).not.toContain('s3cr3t-pw')
  const cfg = parseConfig(parseYaml(text), out)
  expect(cfg.runtime).toBe('compose')
  expect(cfg.targets.green.compose).toEqual({
    project: 'spacetime-green',
    file: 'spacetime/docker-compose.yml',
    service: 'godot'
  })
  expect(cfg.nginx).toMatchObject({
    upstreamFile: 'etc-nginx/conf.d/spacetime-upstream.conf', // relative to backout.yml's dir
    upstreamName: 'spacetime_backend',
    url: 'http://127.0.0.1:80'
  })
  expect(cfg.database).toMatchObject({
    kind: 'postgres',
    url: 'postgresql://spacetime:${DB_PASSWORD}@127.0.0.1:5432/spacetime_db',
    migrations: { kind: 'alembic', ini: 'spacetime/alembic.ini' }
  })
  expect(cfg.data).toEqual([{ name: 'godot-data', path: 'spacetime/data/godot' }])
  expect(cfg.configFiles).toEqual([
    'spacetime/.env',
    'spacetime/docker-compose.yml',
    'spacetime/monitoring/prometheus.yml'
  ])
  expect(text).toMatch(/DATABASE_URL in \.env \(its password replaced by \$\{DB_PASSWORD\}/)

  // a second run keeps the file; --force rewrites it
  const again = await runCli([...base, ...flags, '--green-version', 'v2.5.0'])
  expect(again.code).toBe(0)
  expect(again.stdout).toContain('exists — kept (--force rewrites it)')
  // the database URL loads once DB_PASSWORD is set (the password URL-encoded), and is refused without it
  const dry = await runCli(['--config', out, 'history'], { env: { DB_PASSWORD: 'p@ss' } })
  expect(dry.code).toBe(0)
  const unset = await runCli(['--config', out, 'history'], { env: { DB_PASSWORD: undefined } })
  expect(unset.stderr).toContain('database.url uses ${DB_PASSWORD}, but DB_PASSWORD is not set')
})

test('on a terminal, init asks only what it could not find — a runtime answer raises its own questions', async () => {
  const app = path.join(dir, 'tty-app')
  mkdirSync(path.join(app, 'nginx'), { recursive: true })
  writeFileSync(path.join(app, 'nginx/upstream.conf'), 'upstream backend {\n  server 127.0.0.1:9001;\n}\n')
  const cmd = [
    process.execPath,
    CLI,
    'init',
    '--dir',
    app,
    '--backups-dir',
    path.join(dir, 'b'),
    '--prometheus-url',
    'http://127.0.0.1:1'
  ]
  // typed ahead, as a paste would: service, runtime, nginx URL (default), blue, green, then the units
  const answers = [
    'spacetime',
    'systemd',
    '',
    '127.0.0.1:9001',
    'v1.0.0',
    '127.0.0.1:9002',
    'v1.1.0',
    'st-blue.service',
    'st-green.service'
  ]
  const res = await runCommand(['script', '-qec', cmd.map(a => `'${a}'`).join(' '), '/dev/null'], {
    input: answers.join('\n') + '\n'
  })
  expect(res.code).toBe(0)
  expect(res.stdout).toContain('the service name (letters, digits, . _ -): ')
  expect(res.stdout).toContain('the systemd unit of green: ')
  expect(res.stdout).not.toContain('the nginx file holding the upstream block') // found, not asked
  const cfg = parseConfig(parseYaml(readFileSync(path.join(app, 'backout.yml'), 'utf8')), 'backout.yml')
  expect(cfg.targets.green).toMatchObject({
    version: 'v1.1.0',
    upstream: '127.0.0.1:9002',
    systemd: { unit: 'st-green.service' }
  })
  expect(cfg.nginx.url).toBe('http://127.0.0.1')
})
