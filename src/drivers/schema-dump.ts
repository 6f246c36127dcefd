import { Client } from 'pg'
import type { SchemaModel, SchemaTable } from '../core/migration-plan'
import { runChecked } from './exec'

/**
 * A database's schema, to compare before and after a migration round trip: SQLite's from its pragmas (with the
 * `.schema` text for people), PostgreSQL's from its catalogs.
 */

async function sqliteJson<T>(file: string, sql: string): Promise<T[]> {
  const res = await runChecked(['sqlite3', '-readonly', '-json', file, sql])
  const text = res.stdout.trim()
  return text ? (JSON.parse(text) as T[]) : []
}

/** A SQLite file's schema: `.schema` text for people, and a model (from the pragmas) to compare. */
export async function dumpSqliteSchema(file: string): Promise<{ model: SchemaModel; text: string }> {
  const text = (await runChecked(['sqlite3', '-readonly', file, '.schema'])).stdout
  const tables = new Map<string, SchemaTable>()
  const table = (name: string): SchemaTable => {
    let t = tables.get(name)
    if (!t) tables.set(name, (t = { name, columns: [], indexes: [], constraints: [] }))
    return t
  }
  const userTables = `FROM sqlite_master m WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`
  const cols = await sqliteJson<{
    tbl: string
    name: string
    type: string
    nn: number
    dflt: string | null
    pk: number
  }>(
    file,
    `SELECT m.name AS tbl, p.name, p.type, p."notnull" AS nn, p.dflt_value AS dflt, p.pk
       FROM sqlite_master m JOIN pragma_table_info(m.name) p
      WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, p.cid`
  )
  for (const c of cols)
    table(c.tbl).columns.push({
      name: c.name,
      type: c.type.toUpperCase(),
      notNull: c.nn === 1,
      default: c.dflt,
      primaryKey: c.pk > 0
    })
  const idx = await sqliteJson<{
    tbl: string
    name: string
    uniq: number
    origin: string
    cols: string | null
  }>(
    file,
    `SELECT m.name AS tbl, il.name, il."unique" AS uniq, il.origin,
            (SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_index_info(il.name) ORDER BY seqno)) AS cols
       FROM sqlite_master m JOIN pragma_index_list(m.name) il
      WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%'`
  )
  for (const i of idx)
    table(i.tbl).indexes.push({
      name: i.name.startsWith('sqlite_autoindex_') ? '' : i.name,
      definition: `${i.uniq ? 'UNIQUE ' : ''}(${i.cols ?? ''})${i.origin === 'c' ? '' : ` from ${i.origin === 'pk' ? 'PRIMARY KEY' : 'UNIQUE constraint'}`}`
    })
  const fks = await sqliteJson<{
    tbl: string
    id: number
    ref: string
    src: string
    dst: string | null
    upd: string
    del: string
  }>(
    file,
    `SELECT m.name AS tbl, f.id, f."table" AS ref, f."from" AS src, f."to" AS dst, f.on_update AS upd, f.on_delete AS del
       FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f
      WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY m.name, f.id, f.seq`
  )
  const grouped = new Map<
    string,
    { tbl: string; ref: string; src: string[]; dst: string[]; upd: string; del: string }
  >()
  for (const f of fks) {
    const key = `${f.tbl}\u0000${f.id}`
    const g = grouped.get(key) ?? { tbl: f.tbl, ref: f.ref, src: [], dst: [], upd: f.upd, del: f.del }
    g.src.push(f.src)
    g.dst.push(f.dst ?? '')
    grouped.set(key, g)
  }
  for (const g of grouped.values())
    table(g.tbl).constraints.push(
      `FOREIGN KEY (${g.src.join(', ')}) REFERENCES ${g.ref} (${g.dst.join(', ')}) ON UPDATE ${g.upd} ON DELETE ${g.del}`
    )
  for (const { name } of await sqliteJson<{ name: string }>(file, `SELECT m.name ${userTables}`)) table(name)
  return { model: { tables: [...tables.values()] }, text }
}

/** A PostgreSQL schema from the catalogs: columns, indexes and constraints of its tables. */
export async function dumpPostgresSchema(
  url: string,
  schema = 'public'
): Promise<{ model: SchemaModel; text: string }> {
  const client = new Client({ connectionString: url })
  await client.connect()
  try {
    const tables = new Map<string, SchemaTable>()
    const table = (name: string): SchemaTable => {
      let t = tables.get(name)
      if (!t) tables.set(name, (t = { name, columns: [], indexes: [], constraints: [] }))
      return t
    }
    const cols = await client.query<{
      tbl: string
      name: string
      type: string
      nn: boolean
      dflt: string | null
    }>(
      `SELECT cl.relname AS tbl, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS nn,
              pg_get_expr(d.adbin, d.adrelid) AS dflt
         FROM pg_class cl
         JOIN pg_namespace n ON n.oid = cl.relnamespace
         JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum > 0 AND NOT a.attisdropped
         LEFT JOIN pg_attrdef d ON d.adrelid = cl.oid AND d.adnum = a.attnum
        WHERE n.nspname = $1 AND cl.relkind IN ('r', 'p')
        ORDER BY cl.relname, a.attnum`,
      [schema]
    )
    const pk = await client.query<{ tbl: string; name: string }>(
      `SELECT cl.relname AS tbl, a.attname AS name
         FROM pg_index i JOIN pg_class cl ON cl.oid = i.indrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
         JOIN pg_attribute a ON a.attrelid = cl.oid AND a.attnum = ANY (i.indkey)
        WHERE i.indisprimary AND n.nspname = $1`,
      [schema]
    )
    const pkSet = new Set(pk.rows.map(r => `${r.tbl}.${r.name}`))
    for (const c of cols.rows)
      table(c.tbl).columns.push({
        name: c.name,
        type: c.type,
        notNull: c.nn,
        default: c.dflt,
        primaryKey: pkSet.has(`${c.tbl}.${c.name}`)
      })
    const idx = await client.query<{ tbl: string; name: string; def: string }>(
      `SELECT tablename AS tbl, indexname AS name, indexdef AS def FROM pg_indexes WHERE schemaname = $1`,
      [schema]
    )
    for (const i of idx.rows) table(i.tbl).indexes.push({ name: i.name, definition: i.def })
    const cons = await client.query<{ tbl: string; name: string; def: string }>(
      `SELECT cl.relname AS tbl, c.conname AS name, pg_get_constraintdef(c.oid) AS def
         FROM pg_constraint c JOIN pg_class cl ON cl.oid = c.conrelid JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = $1`,
      [schema]
    )
    for (const c of cons.rows) table(c.tbl).constraints.push(`${c.name} ${c.def}`)
    const model = { tables: [...tables.values()].sort((a, b) => a.name.localeCompare(b.name)) }
    return { model, text: renderSchema(model) }
  } finally {
    await client.end().catch(() => undefined)
  }
}

function renderSchema(model: SchemaModel): string {
  return model.tables
    .map(t =>
      [
        `TABLE ${t.name}`,
        ...t.columns.map(
          c =>
            `  ${c.name} ${c.type}${c.notNull ? ' NOT NULL' : ''}${c.default !== null ? ` DEFAULT ${c.default}` : ''}${c.primaryKey ? ' PRIMARY KEY' : ''}`
        ),
        ...t.constraints.map(c => `  CONSTRAINT ${c}`),
        ...t.indexes.map(i => `  ${i.definition}`)
      ].join('\n')
    )
    .join('\n')
}
