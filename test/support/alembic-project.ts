import { readFileSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { runChecked } from '../../src/drivers/exec'
import { psql } from '../../src/drivers/postgres-cluster'
import { startTestCluster, type TestCluster } from './pg-test-cluster'

/**
 * An Alembic project made the way a user makes one: `alembic init`, sqlalchemy.url edited in alembic.ini, and
 * revisions from `alembic revision -m` whose upgrade()/downgrade() are filled in. Its env.py is alembic's stock one:
 * it reads sqlalchemy.url from alembic.ini and ignores DATABASE_URL.
 */

export const ALEMBIC = '/usr/bin/alembic'

export async function alembicInit(projectDir: string, url: string): Promise<void> {
  await runChecked([ALEMBIC, 'init', 'migrations'], { cwd: projectDir })
  const ini = path.join(projectDir, 'alembic.ini')
  const text = readFileSync(ini, 'utf8')
  if (!/^sqlalchemy\.url = .*$/m.test(text)) throw new Error('alembic init wrote no sqlalchemy.url')
  writeFileSync(
    ini,
    text.replace(/^sqlalchemy\.url = .*$/m, () => `sqlalchemy.url = ${url}`)
  )
}

/** `alembic revision -m message`, then the generated file's upgrade() and downgrade() bodies; returns its id. */
export async function addRevision(
  projectDir: string,
  message: string,
  upgrade: string[],
  downgrade: string[]
): Promise<string> {
  const res = await runChecked([ALEMBIC, 'revision', '-m', message], { cwd: projectDir })
  const file = /Generating (\S+\.py)/.exec(res.stdout)?.[1]
  if (!file) throw new Error(`alembic revision printed no file: ${res.stdout}`)
  const body = (lines: string[]): string => lines.map(l => `    ${l}`).join('\n')
  const text = readFileSync(file, 'utf8')
    .replace(/def upgrade\(\) -> None:\n {4}pass/, () => `def upgrade() -> None:\n${body(upgrade)}`)
    .replace(/def downgrade\(\) -> None:\n {4}pass/, () => `def downgrade() -> None:\n${body(downgrade)}`)
  writeFileSync(file, text)
  const id = /^revision = '([0-9a-f]+)'/m.exec(text)?.[1]
  if (!id) throw new Error(`no revision id in ${file}`)
  return id
}

/** Two revisions a user would write: a table, then a column (dropped in batch mode, which SQLite needs). */
export async function addUsersRevisions(projectDir: string): Promise<[string, string]> {
  const first = await addRevision(
    projectDir,
    'create users',
    [
      "op.create_table('users', sa.Column('id', sa.Integer, primary_key=True), sa.Column('name', sa.String(50), nullable=False))"
    ],
    ["op.drop_table('users')"]
  )
  const second = await addRevision(
    projectDir,
    'add users email',
    ["op.add_column('users', sa.Column('email', sa.String(100)))"],
    ["with op.batch_alter_table('users') as batch:", "    batch.drop_column('email')"]
  )
  return [first, second]
}

/** `alembic <args>` in the project, as the user runs it; returns stdout. */
export async function alembic(projectDir: string, ...args: string[]): Promise<string> {
  return (await runChecked([ALEMBIC, ...args], { cwd: projectDir })).stdout
}

/**
 * A cluster as production has one: password (scram-sha-256) authentication on TCP for the application's role
 * `app` (password `s3cret`, CREATEDB), which owns database `app`; another database beside it. The superuser keeps
 * trust on TCP so that tests can look inside.
 */
export async function startScramCluster(): Promise<TestCluster & { appUrl(database?: string): string }> {
  const cluster = await startTestCluster()
  await psql(
    cluster,
    'postgres',
    "SET password_encryption = 'scram-sha-256'; CREATE ROLE app LOGIN CREATEDB PASSWORD 's3cret'; " +
      'CREATE DATABASE app OWNER app; CREATE DATABASE other_app;'
  )
  writeFileSync(
    path.join(cluster.dataDir, 'pg_hba.conf'),
    [
      'local all all trust',
      'host all postgres 127.0.0.1/32 trust',
      'host all all 127.0.0.1/32 scram-sha-256',
      'host all all ::1/128 scram-sha-256',
      ''
    ].join('\n')
  )
  await psql(cluster, 'postgres', 'SELECT pg_reload_conf();')
  return {
    ...cluster,
    appUrl: (database = 'app') => `postgresql://app:s3cret@127.0.0.1:${cluster.port}/${database}`
  }
}
