/** The smallest valid backout.yml, as an object: two process targets, nginx, a backup dir. */
export const minimalConfig = {
  service: 'spacetime',
  runtime: 'process',
  targets: {
    blue: {
      version: 'v2.4.9',
      upstream: '127.0.0.1:8081',
      process: { command: ['app'], pidFile: 'blue.pid' }
    },
    green: {
      version: 'v2.5.0',
      upstream: '127.0.0.1:8082',
      process: { command: ['app'], pidFile: 'green.pid' }
    }
  },
  nginx: { upstreamFile: 'upstream.conf', url: 'http://127.0.0.1:8080' },
  backups: { dir: 'backups' }
}
