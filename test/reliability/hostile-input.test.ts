import { LINE_BREAKS, sanitizeLine } from '../../src/core/sanitize'
import path from 'node:path'
import { parseEnvInput } from '../../src/actions/action-runner'
import fc from 'fast-check'
import { parseComment, authorize } from '../../src/core/chatops'
import { parseConfig } from '../../src/core/config'
import { UserError } from '../../src/core/errors'
import { formatHistoryLine, parseHistoryLine } from '../../src/core/history'
import { BackupStore } from '../../src/drivers/backup-store'
import { expandEnv } from '../../src/drivers/config-file'

/**
 * Hostile input, fuzzed: ChatOps comments, config files, backup ids and targets, history reasons.
 * No crash, no path outside the backup dir, and every refusal a UserError with a message.
 */
const RUNS = 10_000
const counts: Record<string, number> = {}
const count = (name: string): void => {
  counts[name] = (counts[name] ?? 0) + 1
}
afterAll(() => {
  process.stdout.write(`fuzz cases: ${JSON.stringify(counts)}\n`)
})

const hostileToken = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme' }),
  fc.constantFrom(
    '$(rm -rf /)',
    '`reboot`',
    '; cat /etc/passwd',
    '../../../../etc/passwd',
    '..%2f..%2fetc',
    'level=1;id',
    'target=20250101-000000/../../x',
    'env=prod\nlevel=3',
    '\u202e3=level',
    'level=１',
    'x'.repeat(5000),
    '\u0000',
    '--dry-run --dry-run'
  )
)

test('ChatOps: any comment parses without throwing; a command it accepts is strictly well-formed', () => {
  fc.assert(
    fc.property(fc.array(hostileToken, { maxLength: 6 }), fc.boolean(), (tokens, prefix) => {
      count('chatops')
      const body = (prefix ? '/rollback ' : '') + tokens.join(' ')
      const parsed = parseComment(body)
      if (parsed.status === 'invalid') expect(parsed.error.length).toBeGreaterThan(0)
      if (parsed.status === 'command' && parsed.command.kind === 'rollback') {
        const c = parsed.command
        if (c.level !== undefined) expect([1, 2, 3]).toContain(c.level)
        if (c.target !== undefined) expect(c.target).toMatch(/^(rollback-safety-)?\d{8}-\d{6}$/)
        if (c.env !== undefined) expect(c.env).toMatch(/^[A-Za-z0-9_.-]{1,64}$/)
      }
    }),
    { numRuns: RUNS }
  )
})

test('ChatOps authorization: only created comments by write/maintain/admin, never from forks', () => {
  fc.assert(
    fc.property(
      fc.string(),
      fc.boolean(),
      fc.oneof(fc.constant('created'), fc.string()),
      (role, isFork, action) => {
        count('authorize')
        const ok = authorize({ role_name: role, isFork, action }).allowed
        expect(ok).toBe(action === 'created' && !isFork && ['write', 'maintain', 'admin'].includes(role))
      }
    ),
    { numRuns: RUNS }
  )
})

test('backup ids and targets: anything that is not an id is refused; an id never leaves the backup dir', () => {
  const store = new BackupStore('/srv/backups')
  fc.assert(
    fc.property(fc.oneof(hostileToken, fc.stringMatching(/^(rollback-safety-)?\d{8}-\d{6}$/)), id => {
      count('backup-id')
      try {
        const p = store.pathOf(id)
        expect(path.dirname(p)).toBe('/srv/backups')
        expect(path.basename(p)).toBe(id)
      } catch (e) {
        expect(e).toBeInstanceOf(UserError)
        expect((e as Error).message).toContain('backout list')
      }
    }),
    { numRuns: RUNS }
  )
})

test('config files: any YAML value is a valid config or a UserError naming keys — never a crash', () => {
  const anyValue = fc.anything({ maxDepth: 4, withObjectString: true, withNullPrototype: true })
  const nearlyValid = fc.record({
    service: hostileToken,
    runtime: fc.constantFrom('process', 'compose', 'systemd', 'k8s'),
    targets: anyValue,
    nginx: fc.record({ upstreamFile: hostileToken, url: hostileToken }),
    backups: fc.record({ dir: hostileToken, keep: fc.integer() })
  })
  fc.assert(
    fc.property(fc.oneof(anyValue, nearlyValid), input => {
      count('config')
      try {
        parseConfig(input, 'backout.yml')
      } catch (e) {
        expect(e).toBeInstanceOf(UserError)
        expect((e as Error).message).toMatch(/backout\.yml is not a valid backout config:\n {2}\S/)
      }
    }),
    { numRuns: RUNS }
  )
})

test('${VAR} expansion only reads the named variable and never evaluates anything', () => {
  fc.assert(
    fc.property(hostileToken, fc.string(), (value, secret) => {
      count('env-expansion')
      try {
        const out = expandEnv(value, 'database.url', { SECRET: secret })
        expect(out).not.toMatch(/\$\{[A-Za-z_][A-Za-z0-9_]*\}/)
      } catch (e) {
        expect(e).toBeInstanceOf(UserError)
      }
    }),
    { numRuns: RUNS }
  )
})

test('history reasons: any text round-trips (sanitized) through one line of the runbook format', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme' }), reason => {
      count('history')
      const line = formatHistoryLine({
        at: new Date(0),
        level: 2,
        from: 'v2',
        to: 'v1',
        durationSeconds: 1,
        status: 'success',
        reason
      })
      expect(line.split(LINE_BREAKS)).toHaveLength(1)
      const back = parseHistoryLine(line)
      // What comes back is the reason as printed: control characters and escapes stripped, line breaks flattened.
      expect(back?.reason).toBe(sanitizeLine(reason))
    }),
    { numRuns: RUNS }
  )
})

test('the env input: any text parses to well-formed, unreserved names or a UserError that never echoes a line', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof(hostileToken, fc.constantFrom('A=1', 'PATH=/x', 'NODE_OPTIONS=-r x')), {
        maxLength: 6
      }),
      lines => {
        count('env-input')
        const text = lines.join('\n')
        let parsed: Record<string, string> | undefined
        try {
          parsed = parseEnvInput(text)
        } catch (e) {
          expect(e).toBeInstanceOf(UserError)
          const message = (e as Error).message
          expect(message).toMatch(/^input env, line \d+: /)
          // Only the line number and, for a reserved name, the name itself: never a value.
          for (const line of lines) {
            const value = line.includes('=') ? line.slice(line.indexOf('=') + 1) : line
            if (value.length > 8) expect(message).not.toContain(value)
          }
          return
        }
        for (const [name] of Object.entries(parsed)) {
          expect(name).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/)
          expect(name).not.toMatch(
            /^(PATH|HOME|NODE_.*|LD_.*|GITHUB_.*|RUNNER_.*|ACTIONS_.*|INPUT_.*|BACKOUT_CONFIG)$/
          )
        }
      }
    ),
    { numRuns: RUNS }
  )
})
