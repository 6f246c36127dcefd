/** The upstream block backout writes: one server, and a comment saying which target is live and why. */
export function renderUpstream(name: string, address: string, comment: string): string {
  const safeComment = comment.replace(/[\r\n]+/g, ' ')
  return `# managed by backout — ${safeComment}\nupstream ${name} {\n    server ${address};\n    keepalive 16;\n}\n`
}

/** The first server address of the named upstream block, or undefined when there is none. */
export function parseUpstream(text: string, name: string): string | undefined {
  const block = new RegExp(`upstream\\s+${name}\\s*\\{([^}]*)\\}`).exec(text)
  if (!block?.[1]) return undefined
  const server = /^\s*server\s+([^\s;]+)[^;]*;/m.exec(block[1])
  return server?.[1]
}
