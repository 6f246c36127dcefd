import { runChecked } from './exec'

/** Runs SQL on a SQLite file through the sqlite3 CLI (argument arrays; SQL on standard input). */
export async function sqliteExec(dbPath: string, sql: string): Promise<string> {
  const res = await runChecked(['sqlite3', '-batch', '-bail', dbPath], { input: sql })
  return res.stdout
}
