/**
 * Credentials for PostgreSQL's command-line tools. A connection URL may carry a password (postgresql://u:pw@h/db
 * or ?password=pw); on a command line that password is visible to every user of the machine (ps, /proc/PID/cmdline).
 * The tools get the URL without it and the password through PGPASSWORD in their environment, which only the same
 * user (and root) can read.
 */

export interface PgCommandConnection {
  /** The URL without any password: safe in argv. */
  url: string
  /** The environment for the tool: PGPASSWORD set when the URL had a password. */
  env: NodeJS.ProcessEnv
}

/** Splits a postgresql:// URL into a password-free URL and an environment carrying the password. */
export function pgCommandConnection(url: string, base: NodeJS.ProcessEnv = process.env): PgCommandConnection {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return { url, env: { ...base } }
  }
  let password = u.password ? decodeURIComponent(u.password) : undefined
  u.password = ''
  const inQuery = u.searchParams.get('password')
  if (inQuery !== null) {
    password = inQuery
    u.searchParams.delete('password')
  }
  const env: NodeJS.ProcessEnv = { ...base }
  if (password !== undefined && password !== '') env.PGPASSWORD = password
  return { url: u.toString(), env }
}

/** Every form the URL's password may take in text: as given (URL-encoded) and decoded. For log masking. */
export function passwordForms(url: string): string[] {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    return []
  }
  const forms = new Set<string>()
  if (u.password) {
    forms.add(u.password)
    try {
      forms.add(decodeURIComponent(u.password))
    } catch {
      // not valid percent-encoding: the raw form is all there is
    }
  }
  const q = u.searchParams.get('password')
  if (q) {
    forms.add(q)
    forms.add(encodeURIComponent(q))
  }
  return [...forms].filter(f => f.length > 0)
}
