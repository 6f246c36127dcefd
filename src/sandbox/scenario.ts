import { writeFileSync } from 'node:fs'
import path from 'node:path'
import type { Config } from '../core/config'
import type { Logger } from '../core/logger'
import { renderUpstream } from '../core/upstream'
import { runChecked } from '../drivers/exec'
import { probe } from '../drivers/http'

/**
 * The sandbox's scenario, shared by both runtimes: the SpaceTime database (schema 104, seeded), migration
 * 105 (the bad deployment's), nginx in front of blue and green.
 */

export const SCHEMA_PG = `
CREATE TABLE schema_migrations (version bigint PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL, email text NOT NULL UNIQUE, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE sessions (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users(id), started_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE game_state (id serial PRIMARY KEY, session_id int NOT NULL REFERENCES sessions(id), state jsonb NOT NULL);
INSERT INTO schema_migrations (version) VALUES (101), (102), (103), (104);
INSERT INTO users (name, email) SELECT 'user ' || g, 'user' || g || '@example.test' FROM generate_series(1, 1000) g;
INSERT INTO sessions (user_id) SELECT 1 + (g % 1000) FROM generate_series(1, 2000) g;
INSERT INTO game_state (session_id, state) SELECT g, jsonb_build_object('level', g % 50, 'score', g * 7) FROM generate_series(1, 2000) g;
`

export const SCHEMA_SQLITE = `
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE sessions (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL REFERENCES users(id), started_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE game_state (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL REFERENCES sessions(id), state TEXT NOT NULL);
INSERT INTO schema_migrations (version) VALUES (101), (102), (103), (104);
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 2000)
  INSERT INTO users (name, email) SELECT 'user ' || n, 'user' || n || '@example.test' FROM g WHERE n <= 1000;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 2000)
  INSERT INTO sessions (user_id) SELECT 1 + (n % 1000) FROM g;
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 2000)
  INSERT INTO game_state (session_id, state) SELECT n, json_object('level', n % 50, 'score', n * 7) FROM g;
`

export const MIGRATION_105_UP = `BEGIN;
ALTER TABLE users ADD COLUMN preferences TEXT;
INSERT INTO schema_migrations (version) VALUES (105);
COMMIT;
`

export const MIGRATION_105_DOWN = `-- Migration 105 -> 104 rollback script
BEGIN;
ALTER TABLE users DROP COLUMN preferences;
DELETE FROM schema_migrations WHERE version = 105;
COMMIT;
`

export function nginxConf(dir: string, port: number): string {
  const n = path.join(dir, 'nginx')
  const isRoot = process.getuid?.() === 0
  return `# backout sandbox — nginx in front of blue and green
${isRoot ? 'user root root;\n' : ''}worker_processes 1;
pid ${path.join(dir, 'run', 'nginx.pid')};
error_log ${path.join(dir, 'logs', 'nginx-error.log')} warn;
events { worker_connections 1024; }
http {
  access_log ${path.join(dir, 'logs', 'nginx-access.log')};
  client_body_temp_path ${n}/tmp/body;
  proxy_temp_path ${n}/tmp/proxy;
  fastcgi_temp_path ${n}/tmp/fastcgi;
  uwsgi_temp_path ${n}/tmp/uwsgi;
  scgi_temp_path ${n}/tmp/scgi;
  include ${n}/upstream.conf;
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout;
      add_header X-Served-By $upstream_addr always;
    }
  }
}
`
}

export async function waitForHttp(url: string, seconds: number): Promise<void> {
  const deadline = Date.now() + seconds * 1000
  while (Date.now() < deadline) {
    const res = await probe(url, 1000)
    if (res.ok) return
    await new Promise(r => setTimeout(r, 50))
  }
  throw new Error(`${url} did not answer within ${seconds}s`)
}

/** How the sandbox runs nginx: its own prefix and config under DIR/nginx. */
export function sandboxNginxArgs(dir: string): string[] {
  return ['-p', path.join(dir, 'nginx'), '-c', path.join(dir, 'nginx', 'nginx.conf')]
}

/** Writes the sandbox's nginx config with blue live and starts nginx (it daemonizes; its PID is in DIR/run). */
export async function startSandboxNginx(dir: string, cfg: Config, port: number, log: Logger): Promise<void> {
  await log.group('nginx', async () => {
    writeFileSync(path.join(dir, 'nginx', 'nginx.conf'), nginxConf(dir, port))
    writeFileSync(
      cfg.nginx.upstreamFile,
      renderUpstream(
        cfg.nginx.upstreamName,
        cfg.targets.blue.upstream,
        `active=blue version=${cfg.targets.blue.version} (sandbox up)`
      )
    )
    await runChecked(['nginx', ...sandboxNginxArgs(dir)])
    await waitForHttp(`${cfg.nginx.url}/health`, 10)
    log.info(`nginx on ${cfg.nginx.url} → blue`)
  })
}
