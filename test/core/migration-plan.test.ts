import { UserError } from '../../src/core/errors'
import {
  type MigrationScript,
  type SchemaModel,
  compareSchemas,
  describeDownPlan,
  parseDownScriptName,
  parseUpScriptName,
  planDown,
  prepareMigrationScript,
  splitSqlStatements
} from '../../src/core/migration-plan'

const script = (version: number, name = `m${version}`): MigrationScript => ({
  version,
  name,
  file: `migrations/rollback/${version}_${name}_down.sql`
})

describe('script names', () => {
  test('down and up names parse; other files do not', () => {
    expect(parseDownScriptName('105_add_user_preferences_down.sql')).toEqual({
      version: 105,
      name: 'add_user_preferences'
    })
    expect(parseDownScriptName('105_add_user_preferences.sql')).toBeUndefined()
    expect(parseDownScriptName('README.md')).toBeUndefined()
    expect(parseUpScriptName('105_add_user_preferences.sql')).toEqual({
      version: 105,
      name: 'add_user_preferences'
    })
    expect(parseUpScriptName('105_add_user_preferences_down.sql')).toBeUndefined()
  })
})

describe('planDown', () => {
  test('runbook case: 105 → 104 runs the 105 down script only', () => {
    const plan = planDown(105, 104, [script(103), script(104), script(105, 'add_user_preferences')])
    expect(plan.steps.map(s => s.version)).toEqual([105])
    expect(plan.missing).toEqual([])
    expect(describeDownPlan(plan)).toBe('roll schema back 105 → 104: 105')
  })

  test('several versions run newest first, and missing scripts are reported newest first', () => {
    const plan = planDown(106, 102, [script(103), script(105)])
    expect(plan.steps.map(s => s.version)).toEqual([105, 103])
    expect(plan.missing).toEqual([106, 104])
    expect(describeDownPlan(plan)).toMatch(/no down script for 106, 104 — restore .* \(Method 2\)/)
  })

  test('the applied list names the versions (gaps and timestamps), and scripts outside the range are ignored', () => {
    const applied = [20240101120000, 20240301090000, 20240515170000]
    const scripts = applied.map(v => script(v))
    const plan = planDown(20240515170000, 20240101120000, scripts, applied)
    expect(plan.steps.map(s => s.version)).toEqual([20240515170000, 20240301090000])
    expect(plan.missing).toEqual([])
  })

  test('nothing to do when target equals current', () => {
    const plan = planDown(104, 104, [script(104)])
    expect(plan.steps).toEqual([])
    expect(describeDownPlan(plan)).toMatch(/nothing to roll back/)
  })

  test('refuses upgrades, bad versions, huge consecutive spans and duplicate scripts', () => {
    expect(() => planDown(104, 105, [])).toThrow(/newer than the current 104/)
    expect(() => planDown(104, -1, [])).toThrow(UserError)
    expect(() => planDown(20240515170000, 0, [])).toThrow(/pass the applied versions/)
    expect(() => planDown(105, 104, [script(105, 'a'), script(105, 'b')])).toThrow(
      /two down scripts for version 105/
    )
  })
})

describe('splitSqlStatements', () => {
  test('semicolons in comments, strings, identifiers and dollar quotes do not split', () => {
    const sql = [
      '-- a comment; with a semicolon',
      "COMMENT ON COLUMN users.preferences IS 'a '';'' inside';",
      'SELECT "odd;name" FROM t; /* block; /* nested; */ still; */',
      'DO $body$ BEGIN PERFORM 1; END $body$;',
      "SELECT E'it\\'s; fine';"
    ].join('\n')
    expect(splitSqlStatements(sql).map(s => s.text)).toEqual([
      "COMMENT ON COLUMN users.preferences IS 'a '';'' inside';",
      'SELECT "odd;name" FROM t;',
      'DO $body$ BEGIN PERFORM 1; END $body$;',
      "SELECT E'it\\'s; fine';"
    ])
  })
})

describe('prepareMigrationScript', () => {
  const runbookScript = `-- Example: Migration 105 -> 104 rollback script
BEGIN;

-- Remove new columns
ALTER TABLE users DROP COLUMN IF EXISTS preferences;

DELETE FROM schema_migrations WHERE version = 105;

COMMIT;
`
  test("strips the runbook script's own BEGIN;/COMMIT; and keeps the rest as written", () => {
    const p = prepareMigrationScript(runbookScript, '105_down.sql')
    expect(p.strippedTransaction).toBe(true)
    expect(p.body).not.toMatch(/\bBEGIN\b|\bCOMMIT\b/)
    expect(p.body).toContain('ALTER TABLE users DROP COLUMN IF EXISTS preferences;')
    expect(p.body).toContain('DELETE FROM schema_migrations WHERE version = 105;')
  })

  test('a script without its own transaction runs as written', () => {
    const sql = 'DROP TABLE user_sessions;\nDELETE FROM schema_migrations WHERE version = 104;'
    expect(prepareMigrationScript(sql, 'x')).toEqual({ body: sql, strippedTransaction: false })
  })

  test('a DO block with BEGIN/END inside is not transaction control', () => {
    const sql = 'DO $$ BEGIN RAISE NOTICE $m$x$m$; END $$;\nDELETE FROM schema_migrations WHERE version = 1;'
    expect(prepareMigrationScript(sql, 'x').strippedTransaction).toBe(false)
  })

  test('refuses transaction control in the middle, an unclosed BEGIN and an empty script', () => {
    expect(() => prepareMigrationScript('BEGIN;\nDROP TABLE a;\nCOMMIT;\nDROP TABLE b;\n', 'f.sql')).toThrow(
      /f\.sql: starts with BEGIN but does not end with COMMIT/
    )
    expect(() => prepareMigrationScript('DROP TABLE a;\nCOMMIT;\nDROP TABLE b;', 'f.sql')).toThrow(
      /must not control its transaction/
    )
    expect(() => prepareMigrationScript('BEGIN;\nDROP TABLE a;\nROLLBACK;\nCOMMIT;', 'f.sql')).toThrow(
      /ROLLBACK/
    )
    expect(() => prepareMigrationScript('SAVEPOINT s; DROP TABLE a; ROLLBACK TO s;', 'f.sql')).not.toThrow()
    expect(() => prepareMigrationScript('-- nothing\n', 'f.sql')).toThrow(/no SQL statements/)
  })
})

describe('compareSchemas', () => {
  const base = (): SchemaModel => ({
    tables: [
      {
        name: 'game_rooms',
        columns: [
          { name: 'id', type: 'INTEGER', notNull: true, default: null, primaryKey: true },
          { name: 'status', type: 'VARCHAR(20)', notNull: true, default: "'waiting'", primaryKey: false }
        ],
        indexes: [
          { name: 'ix_game_rooms_host_player_id', definition: '(host_player_id)' },
          { name: '', definition: 'UNIQUE (code)' }
        ],
        constraints: ['FOREIGN KEY (host_player_id) REFERENCES players (id)']
      }
    ]
  })

  test('equal schemas, even with columns in another order, have no differences', () => {
    const b = base()
    b.tables[0]?.columns.reverse()
    expect(compareSchemas(base(), b)).toEqual([])
  })

  test('names each difference', () => {
    const b = base()
    const t = b.tables[0]
    if (!t) throw new Error('fixture')
    t.indexes = t.indexes.filter(i => i.name === '')
    t.columns[1] = { ...t.columns[1]!, default: null }
    t.constraints = []
    b.tables.push({ name: 'extra', columns: [], indexes: [], constraints: [] })
    expect(compareSchemas(base(), b)).toEqual([
      'table extra is new after',
      `game_rooms.status: default was "'waiting'", is null after`,
      'game_rooms: index ix_game_rooms_host_player_id is missing after',
      'game_rooms: constraint FOREIGN KEY (host_player_id) REFERENCES players (id) is missing after'
    ])
    expect(compareSchemas(b, base())).toContain('table extra is missing after')
  })
})
