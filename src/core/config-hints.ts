/**
 * "Did you mean …?" for an unknown key of backout.yml: the known keys at that place in the schema, the
 * nearest by edit distance (a typo, a different case, a dash for camelCase).
 */

interface ZodLike {
  def?: {
    type?: string
    innerType?: ZodLike
    in?: ZodLike
    options?: ZodLike[]
    element?: ZodLike
    shape?: Record<string, ZodLike>
  }
  shape?: Record<string, ZodLike>
}

/** The object schemas reachable at `path` (a union gives several). */
function objectsAt(schema: ZodLike, path: readonly PropertyKey[]): Record<string, ZodLike>[] {
  const def = schema.def
  if (!def) return []
  if (def.innerType) return objectsAt(def.innerType, path)
  if (def.in) return objectsAt(def.in, path)
  if (def.options) return def.options.flatMap(o => objectsAt(o, path))
  if (def.type === 'array' && def.element)
    return objectsAt(def.element, typeof path[0] === 'number' ? path.slice(1) : path)
  if (def.type === 'object') {
    const shape = schema.shape ?? def.shape ?? {}
    if (!path.length) return [shape]
    const next = shape[String(path[0])]
    return next ? objectsAt(next, path.slice(1)) : []
  }
  return []
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1)
      )
  return d[a.length]![b.length]!
}

const norm = (s: string): string => s.toLowerCase().replace(/[-_]/g, '')

/** The known key nearest to `key` at `path`, when one is close enough to be the one meant. */
export function didYouMean(schema: unknown, path: readonly PropertyKey[], key: string): string | undefined {
  const known = [...new Set(objectsAt(schema as ZodLike, path).flatMap(s => Object.keys(s)))]
  let best: { key: string; d: number } | undefined
  for (const k of known) {
    const d = norm(k) === norm(key) ? 0 : distance(k.toLowerCase(), key.toLowerCase())
    if (!best || d < best.d) best = { key: k, d }
  }
  return best && best.d <= Math.max(2, Math.floor(key.length / 4)) ? best.key : undefined
}

/** The hint for the unknown keys of one issue: ` — did you mean x?` (or nothing), and the keys known there. */
export function unknownKeysHint(
  schema: unknown,
  path: readonly PropertyKey[],
  keys: readonly string[]
): string {
  const hints = keys
    .map(k => [k, didYouMean(schema, path, k)] as const)
    .filter((h): h is readonly [string, string] => h[1] !== undefined)
    .map(([k, m]) => `"${k}" → did you mean "${m}"?`)
  const known = [...new Set(objectsAt(schema as ZodLike, path).flatMap(s => Object.keys(s)))]
  return (
    (hints.length ? ` — ${hints.join(', ')}` : '') +
    (known.length ? ` (known here: ${known.join(', ')})` : '')
  )
}
